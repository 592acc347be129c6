"""The catalog: which Parquet files and views make up the committed lake.

A JSON file rather than a database, so that DuckDB, Spark and a plain file
listing all read the same truth. Replacing it (write, fsync, rename) is the one
atomic step of every commit.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from carelake.errors import LakeError

CATALOG_FILE = "catalog.json"
FORMAT_VERSION = 1


@dataclass
class TableEntry:
    """A table: its layer, its Parquet files (relative to the lake) and its row count."""

    layer: str
    files: list[str] = field(default_factory=list)
    rows: int = 0


@dataclass
class ViewEntry:
    """A view: SQL over tables (and earlier views), in carelake's DuckDB dialect."""

    layer: str
    sql: str


@dataclass
class Catalog:
    """The committed state of a lake."""

    version: int = 0
    tables: dict[str, TableEntry] = field(default_factory=dict)
    views: dict[str, ViewEntry] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, root: Path) -> Catalog:
        path = root / CATALOG_FILE
        if not path.exists():
            return cls()
        try:
            data = orjson.loads(path.read_bytes())
            return cls(
                version=int(data["version"]),
                tables={k: TableEntry(**v) for k, v in data["tables"].items()},
                views={k: ViewEntry(**v) for k, v in data["views"].items()},
                runs=list(data["runs"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LakeError(
                f"the lake catalog {path} is damaged: {exc}",
                hint="restore catalog.json from a backup; data files are untouched",
            ) from exc

    def save(self, root: Path) -> None:
        """Atomically replace the catalog: readers see the old or the new one, never half."""
        payload = {
            "format": FORMAT_VERSION,
            "version": self.version,
            "tables": {k: asdict(v) for k, v in sorted(self.tables.items())},
            "views": {k: asdict(v) for k, v in self.views.items()},
            "runs": self.runs,
        }
        tmp = root / f".{CATALOG_FILE}.tmp"
        with tmp.open("wb") as handle:  # orjson: the catalog is written at every commit and grows with the runs
            handle.write(orjson.dumps(payload, option=orjson.OPT_INDENT_2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, root / CATALOG_FILE)
        fsync_dir(root)

    def referenced_files(self) -> set[str]:
        return {f for entry in self.tables.values() for f in entry.files}


def fsync_dir(path: Path) -> None:
    """Make a rename or new file in ``path`` durable: fsync the directory itself."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
