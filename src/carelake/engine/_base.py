"""The Engine protocol and the one place SQL is translated between dialects."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from carelake.errors import ConfigError, QueryError

if TYPE_CHECKING:
    import pyarrow as pa

EngineName = Literal["duckdb", "spark"]
ENGINE_NAMES: tuple[EngineName, ...] = ("duckdb", "spark")


@runtime_checkable
class Engine(Protocol):
    """What carelake needs from a SQL engine; queries are written in DuckDB's dialect."""

    name: EngineName

    def register_parquet(self, name: str, files: Sequence[Path]) -> None:
        """Expose Parquet files as a queryable table called ``name``."""

    def create_view(self, name: str, sql: str) -> None:
        """Define (or replace) a view from a query."""

    def query(self, sql: str) -> pa.Table:
        """Run a query and return its result as an Arrow table."""

    def write_parquet(self, sql: str, directory: Path) -> list[Path]:
        """Write a query's result as Parquet files into a new ``directory``; return the files."""

    def close(self) -> None:
        """Release the engine's resources."""


def first_line(exc: BaseException) -> str:
    """The first line of an engine's exception text: JVM and DuckDB errors run long."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def to_dialect(sql: str, dialect: str) -> str:
    """Translate carelake SQL (DuckDB dialect) to another engine's dialect.

    A construct sqlglot cannot translate raises a named error instead of
    silently running something else.

    Examples:
        >>> to_dialect("select list_value(1, 2) as xs", "spark")
        'SELECT ARRAY(1, 2) AS xs'
    """
    import sqlglot
    from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

    from carelake.engine._functions import rewrite_for_spark

    if dialect == "duckdb":
        return sql
    try:
        trees = sqlglot.parse(sql, read="duckdb")
        if dialect == "spark":
            trees = [rewrite_for_spark(tree) for tree in trees if tree is not None]
        statements = [t.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE) for t in trees if t is not None]
    except (ParseError, UnsupportedError) as exc:
        first = str(exc).splitlines()[0]
        raise QueryError(
            f"cannot translate this SQL to {dialect}: {first}",
            hint="write the query in DuckDB SQL with constructs both engines support, or use --engine duckdb",
        ) from exc
    return ";\n".join(statements)


def make_engine(
    name: str = "duckdb",
    *,
    spark_master: str | None = None,
    spark_remote: str | None = None,
    threads: int | None = None,
    memory_limit: str | None = None,
) -> Engine:
    """Build an engine by name; Spark options are ignored by DuckDB and vice versa."""
    if name == "duckdb":
        from carelake.engine._duckdb import DuckDBEngine

        return DuckDBEngine(threads=threads, memory_limit=memory_limit)
    if name == "spark":
        from carelake.engine._spark import SparkEngine

        return SparkEngine(master=spark_master, remote=spark_remote)
    raise ConfigError(f"unknown engine {name!r}", hint=f"choose one of: {', '.join(ENGINE_NAMES)}")
