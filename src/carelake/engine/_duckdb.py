"""DuckDB, the embedded default: in-process, all cores, out-of-core, Parquet native."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from carelake.engine._base import first_line
from carelake.engine._functions import duckdb_macros
from carelake.errors import QueryError

T = TypeVar("T")

if TYPE_CHECKING:
    import pyarrow as pa


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


log = logging.getLogger(__name__)

DEFAULT_MEMORY_LIMIT = "1GB"
# Row groups capped in bytes: text-heavy row groups of 122,880 rows are what exhausts a bounded memory.
WRITE_OPTIONS = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, ROW_GROUP_SIZE_BYTES '16MB'"


class DuckDBEngine:
    """Run carelake SQL in an in-memory DuckDB connection over the lake's Parquet files."""

    name = "duckdb"

    def __init__(self, *, threads: int | None = None, memory_limit: str | None = None) -> None:
        import duckdb

        config: dict[str, str | int] = {
            # Bounded memory whatever the input size: DuckDB spills joins and sorts to disk beyond this.
            "memory_limit": memory_limit or os.environ.get("CARELAKE_DUCKDB_MEMORY", DEFAULT_MEMORY_LIMIT),
            "temp_directory": os.environ.get("CARELAKE_DUCKDB_TEMP", tempfile.gettempdir() + "/carelake-duckdb"),
        }
        if threads:
            config["threads"] = threads
        self._duckdb = duckdb
        self.connection = duckdb.connect(":memory:", config=config)
        self.connection.execute("SET TimeZone = 'UTC'")  # after connect: ICU cannot load from the config
        # Row order is only what ORDER BY says; not preserving it lets large writes stream in less memory.
        self.connection.execute("SET preserve_insertion_order = false")
        self.connection.execute("SET enable_progress_bar = false")  # carelake shows its own progress
        for statement in duckdb_macros():
            self.connection.execute(statement)

    def register_parquet(self, name: str, files: Sequence[Path]) -> None:
        listing = ", ".join(_literal(str(f)) for f in files)
        self._run(f"CREATE OR REPLACE VIEW {_quote(name)} AS SELECT * FROM read_parquet([{listing}])")

    def create_view(self, name: str, sql: str) -> None:
        self._run(f"CREATE OR REPLACE VIEW {_quote(name)} AS {sql}")

    def query(self, sql: str) -> pa.Table:
        return self._one_thread_if_out_of_memory(lambda: self._query(sql), "query")

    def _query(self, sql: str) -> pa.Table:
        try:
            return self.connection.sql(sql).to_arrow_table()
        except self._duckdb.Error as exc:
            raise QueryError(f"query failed on duckdb: {first_line(exc)}") from exc

    def write_parquet(self, sql: str, directory: Path) -> list[Path]:
        directory.mkdir(parents=True, exist_ok=False)
        target = directory / "part-0.parquet"
        statement = f"COPY ({sql}) TO {_literal(str(target))} ({WRITE_OPTIONS})"
        self._one_thread_if_out_of_memory(
            lambda: self._run(statement), "write", undo=lambda: target.unlink(missing_ok=True)
        )
        return [target]

    def _one_thread_if_out_of_memory(self, action: Callable[[], T], what: str, undo: Callable[[], object] = bool) -> T:
        """Run ``action``, and once more on one thread if DuckDB ran out of its memory limit.

        Every thread keeps its own batches in flight, and some operators (JSON, lists) cannot spill: one thread
        needs about half the memory of two. Slower, but the statement completes within the limit."""
        try:
            return action()
        except QueryError as exc:
            undo()
            if not isinstance(exc.__cause__, self._duckdb.OutOfMemoryException):
                raise
        threads = self.connection.execute("SELECT current_setting('threads')").fetchone()[0]  # type: ignore[index]
        log.warning("DuckDB ran out of its memory limit on a %s; retrying it on one thread", what)
        self._run("SET threads = 1")
        try:
            return action()
        except QueryError:
            undo()
            raise
        finally:
            self._run(f"SET threads = {int(threads)}")

    def close(self) -> None:
        self.connection.close()

    def _run(self, sql: str) -> None:
        try:
            self.connection.execute(sql)
        except self._duckdb.Error as exc:
            raise QueryError(f"statement failed on duckdb: {first_line(exc)}") from exc
