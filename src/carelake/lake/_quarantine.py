"""Quarantine: records a stage refused, with where they came from and why.

Bad records are data, not exceptions. A quarantine row names the record by
locator (file, line, bundle entry, byte offset), the rule it broke and a
message that never quotes its content; the record itself is kept, in the
lake only, so it can be repaired and re-ingested.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

QUARANTINE_TABLE = "quarantine"

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("stage", pa.string(), nullable=False),
        pa.field("source_file", pa.string()),
        pa.field("source_sha256", pa.string()),
        pa.field("line", pa.int64()),
        pa.field("entry_index", pa.int64()),
        pa.field("byte_offset", pa.int64()),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("message", pa.string(), nullable=False),
        pa.field("record", pa.string()),
    ]
)


@dataclass(frozen=True)
class QuarantineRecord:
    """One refused record. ``message`` must not contain the record's content."""

    source_file: str | None
    rule: str
    message: str
    line: int | None = None
    entry_index: int | None = None
    byte_offset: int | None = None
    record: str | None = None
    source_sha256: str | None = None

    @property
    def locator(self) -> str:
        """Where the record is, for people: ``file:line`` and bundle entry when known."""
        where = self.source_file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
        if self.entry_index is not None:
            where += f" entry[{self.entry_index}]"
        return where
