"""Bounded batches of parsed records, written to staging Parquet so memory stays flat."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from carelake.sources.fhir._records import Problem, ResourceRow
from carelake.sources.fhir._tables import (
    STAGED_IDENTIFIERS,
    STAGED_QUARANTINE,
    STAGED_REFERENCES,
    STAGED_RESOURCES,
)

BATCH_ROWS = 20_000
BATCH_BYTES = 48 * 1024 * 1024


class _Buffer:
    def __init__(self, schema: pa.Schema, folder: Path, stem: str) -> None:
        self.schema = schema
        self.folder = folder
        self.stem = stem
        self.columns: list[list[object]] = [[] for _ in schema]
        self.parts = 0
        self.rows = 0

    def add(self, values: tuple[object, ...]) -> None:
        for column, value in zip(self.columns, values, strict=True):
            column.append(value)

    def __len__(self) -> int:
        return len(self.columns[0])

    def flush(self, *, force: bool = False) -> None:
        if not len(self) and not (force and self.parts == 0):
            return
        table = pa.Table.from_arrays(
            [pa.array(col, type=field.type) for col, field in zip(self.columns, self.schema, strict=True)],
            schema=self.schema,
        )
        pq.write_table(table, self.folder / f"{self.stem}-{self.parts:05d}.parquet", compression="lz4")
        self.parts += 1
        self.rows += table.num_rows
        self.columns = [[] for _ in self.schema]


class StagingWriter:
    """Collects resources, their references and identifiers, and quarantined records, in batches."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.resources = _Buffer(STAGED_RESOURCES, folder, "resources")
        self.references = _Buffer(STAGED_REFERENCES, folder, "references")
        self.identifiers = _Buffer(STAGED_IDENTIFIERS, folder, "identifiers")
        self.quarantine = _Buffer(STAGED_QUARANTINE, folder, "quarantine")
        self._pending_bytes = 0
        self.read = 0

    def add_resource(self, seq: int, row: ResourceRow, locator: tuple[object, ...]) -> None:
        self.read += 1
        self.resources.add(
            (
                seq,
                row.resource_type,
                row.id,
                row.meta_version_id,
                row.patient_id,
                row.clinical_time_raw,
                row.clinical_time,
                row.last_updated,
                row.content_hash,
                row.resource,
                *locator,
            )
        )
        for reference in row.references:
            self.references.add((seq, *reference))
        for system, value in row.identifiers:
            self.identifiers.add((seq, system, value))
        self._pending_bytes += len(row.resource)
        if len(self.resources) >= BATCH_ROWS or self._pending_bytes >= BATCH_BYTES:
            self.flush()

    def add_problem(self, seq: int, problem: Problem, locator: tuple[object, ...], record: str | None) -> None:
        self.read += 1
        self.quarantine.add((seq, *locator, problem.rule, problem.message, record))
        if len(self.quarantine) >= BATCH_ROWS:
            self.quarantine.flush()

    def flush(self) -> None:
        for buffer in (self.resources, self.references, self.identifiers, self.quarantine):
            buffer.flush()
        self._pending_bytes = 0

    def close(self) -> None:
        """Flush everything; every stem gets at least one (maybe empty) file so engines can scan it."""
        for buffer in (self.resources, self.references, self.identifiers, self.quarantine):
            buffer.flush(force=True)

    def files(self, stem: str) -> list[Path]:
        return sorted(self.folder.glob(f"{stem}-*.parquet"))
