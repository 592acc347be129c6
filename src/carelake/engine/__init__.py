"""Engines run carelake's SQL: DuckDB in-process by default, Spark for clusters.

carelake writes every transformation once, in DuckDB's SQL dialect; an engine
executes it, translating with sqlglot where its own dialect differs.
"""

from carelake.engine._base import Engine, EngineName, make_engine, to_dialect
from carelake.engine._duckdb import DuckDBEngine

__all__ = ["DuckDBEngine", "Engine", "EngineName", "make_engine", "to_dialect"]


def __getattr__(name: str) -> object:
    # Spark is optional and heavy: load it only when asked for by name.
    if name == "SparkEngine":
        from carelake.engine._spark import SparkEngine

        return SparkEngine
    raise AttributeError(name)
