"""Staging: records as JSON text with their locators, and problems found while reading, in bounded batches.

Reading files is the only Python loop over input; checking and keying records is SQL
(see ``_sql.py``), so staging holds text, not parsed objects.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from carelake.sources.fhir._records import Problem
from carelake.sources.fhir._tables import STAGED_FILES, STAGED_LINES, STAGED_QUARANTINE

BATCH_ROWS = 20_000
BATCH_BYTES = 32 * 1024 * 1024
MAX_RECORD_BYTES = 1 << 20
# Small row groups keep the engine's read buffers small when it scans staging (memory stays bounded).
STAGING_ROW_GROUP = 8192


class StagingWriter:
    """Streams record text and problems to staging Parquet; memory holds at most one batch."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self._lines = pq.ParquetWriter(folder / "lines.parquet", STAGED_LINES, compression="lz4")
        self._rows: list[tuple[object, ...]] = []
        self._row_bytes = 0
        self._problems: list[tuple[object, ...]] = []
        self._files: list[tuple[object, ...]] = []
        self.records = 0
        self.problems = 0
        self.next_seq = 0  # read order across the whole run: files, then lines, then bundle entries

    def add_file(self, file_index: int, path: str, sha256: str | None) -> None:
        self._files.append((file_index, path, sha256))

    def add_lines(self, file_index: int, lines: pa.Array, byte_offsets: pa.Array, texts: pa.Array) -> None:
        """A block of NDJSON lines as Arrow arrays (the fast path: no Python object per line)."""
        self._flush_rows()
        count = len(texts)
        seq = pa.array(range(self.next_seq, self.next_seq + count), type=pa.int64())
        self.next_seq += count
        batch = pa.record_batch(
            [
                seq,
                pa.array([file_index] * count, type=pa.int64()),
                lines,
                pa.nulls(count, pa.int64()),
                byte_offsets,
                texts,
                pa.nulls(count, pa.string()),
            ],
            schema=STAGED_LINES,
        )
        self._lines.write_batch(batch, row_group_size=STAGING_ROW_GROUP)
        self.records += count

    def add_record(
        self,
        file_index: int,
        line: int | None,
        entry_index: int | None,
        byte_offset: int | None,
        text: str,
        assigned_id: str | None = None,
    ) -> None:
        seq = self.next_seq
        self.next_seq += 1
        self._rows.append((seq, file_index, line, entry_index, byte_offset, text, assigned_id))
        self._row_bytes += len(text)
        self.records += 1
        if len(self._rows) >= BATCH_ROWS or self._row_bytes >= BATCH_BYTES:
            self._flush_rows()

    def add_problem(
        self,
        file_index: int,
        line: int | None,
        entry_index: int | None,
        byte_offset: int | None,
        problem: Problem,
        record: str | bytes | None,
    ) -> None:
        seq = self.next_seq
        self.next_seq += 1
        self._problems.append(
            (seq, file_index, line, entry_index, byte_offset, problem.rule, problem.message, clip_record(record))
        )
        self.problems += 1

    def _flush_rows(self) -> None:
        if self._rows:
            columns = list(zip(*self._rows, strict=True))
            self._lines.write_batch(
                pa.record_batch(
                    [pa.array(col, type=field.type) for col, field in zip(columns, STAGED_LINES, strict=True)],
                    schema=STAGED_LINES,
                )
            )
            self._rows, self._row_bytes = [], 0

    def close(self) -> None:
        self._flush_rows()
        self._lines.close()
        self.write_problems(self._problems, "quarantine-read")
        _write(self.folder / "files.parquet", self._files, STAGED_FILES)

    def write_problems(self, rows: list[tuple[object, ...]], name: str) -> None:
        _write(self.folder / f"{name}.parquet", rows, STAGED_QUARANTINE)

    @property
    def lines_file(self) -> Path:
        return self.folder / "lines.parquet"

    def quarantine_files(self) -> list[Path]:
        return sorted(self.folder.glob("quarantine-*.parquet"))


def clip_record(record: str | bytes | None) -> str | None:
    """A refused record as kept in quarantine: text up to MAX_RECORD_BYTES, else None (raw/ keeps the file)."""
    if record is None or len(record) > MAX_RECORD_BYTES:
        return None
    return record.decode("utf-8", errors="replace") if isinstance(record, bytes) else record


def _write(path: Path, rows: list[tuple[object, ...]], schema: pa.Schema) -> None:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    table = pa.table([pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)], schema=schema)
    pq.write_table(table, path, compression="lz4")
