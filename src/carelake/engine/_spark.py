"""Spark, for data that outgrows one machine: the same SQL, translated by sqlglot.

``master`` is any Spark master URL (``local[*]`` by default, ``spark://host:7077``,
``k8s://...``, ``yarn``); ``remote`` is a Spark Connect URL (``sc://host:15002``).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carelake.engine._base import first_line, to_dialect
from carelake.engine._spark_jar import CLASS, FUNCTION, udf_jar
from carelake.errors import EngineError, MissingDependencyError, QueryError

if TYPE_CHECKING:
    import pyarrow as pa

_SESSIONS: dict[tuple[str | None, str | None], Any] = {}


def _session(master: str | None, remote: str | None) -> Any:
    """One Spark session per (master, remote) per process: starting a JVM costs seconds."""
    key = (master, remote)
    if key not in _SESSIONS:
        with warnings.catch_warnings():
            # pyspark warns on import that it does not fully support pandas 3; carelake hands on Arrow, not pandas.
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyspark\.")
            _SESSIONS[key] = _start(master, remote)
    return _SESSIONS[key]


def _start(master: str | None, remote: str | None) -> Any:
    """A session with carelake's settings and, where a JDK could build it, carelake's Java function."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise MissingDependencyError(
            "the Spark engine needs pyspark", hint="install it with: pip install 'carelake[spark]'"
        ) from exc
    if remote is None and shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise EngineError("the Spark engine needs Java 17 or newer", hint="install a JDK (e.g. openjdk-17-jdk)")
    builder = SparkSession.builder.appName("carelake")
    jar = udf_jar()
    if remote:
        builder = builder.remote(remote)
    else:
        if jar is not None:
            builder = builder.config("spark.jars", str(jar))
        builder = (
            builder.master(master or os.environ.get("CARELAKE_SPARK_MASTER", "local[*]"))
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", os.environ.get("CARELAKE_SPARK_SHUFFLE_PARTITIONS", "4"))
            .config("spark.driver.memory", os.environ.get("CARELAKE_SPARK_DRIVER_MEMORY", "2g"))
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        )
    builder = builder.config("spark.sql.session.timeZone", "UTC")
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # py4j and the JVM raise many unrelated types here
        first = str(exc).splitlines()[0]
        hint = "check Java 17+ and the --spark-master / --spark-remote URL"
        if remote and "PACKAGE_NOT_INSTALLED" in first:  # pyspark installed without its Connect client
            hint = "Spark Connect needs pyspark's client libraries: pip install 'pyspark[connect]'"
        raise EngineError(f"could not start Spark: {first}", hint=hint) from exc
    if not remote:
        session.sparkContext.setLogLevel("ERROR")
    _quiet_failed_queries()
    if jar is not None:
        _add_function(session, jar, remote=remote is not None)
    return session


def _add_function(session: Any, jar: Path, *, remote: bool) -> None:
    """Register carelake's Java function; over Spark Connect, first send the jar to this session on the server."""
    from pyspark.sql.types import IntegerType

    try:
        if remote:
            session.addArtifacts(str(jar))
        session.udf.registerJavaFunction(FUNCTION, CLASS, IntegerType())
    except Exception:  # a server that refuses artifacts: only views that need the function fail, and say why
        if not remote:
            raise


def _quiet_failed_queries() -> None:
    """pyspark logs every failed query with its JVM stack trace; carelake reports the error itself, in one line."""
    import logging

    from pyspark.logger import PySparkLogger

    for name in ("SQLQueryContextLogger", "DataFrameQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)


class SparkEngine:
    """Run carelake SQL on a Spark session (local, cluster or Spark Connect)."""

    name = "spark"

    def __init__(self, *, master: str | None = None, remote: str | None = None) -> None:
        self.spark = _session(master, remote)

    def register_parquet(self, name: str, files: Sequence[Path]) -> None:
        self.spark.read.parquet(*[str(f) for f in files]).createOrReplaceTempView(name)

    def create_view(self, name: str, sql: str) -> None:
        self._frame(sql).createOrReplaceTempView(name)

    def query(self, sql: str) -> pa.Table:
        frame = self._frame(sql)
        try:
            return frame.toArrow()
        except Exception as exc:  # Spark raises its own hierarchy from the JVM
            raise _failure("query", exc) from exc

    def write_parquet(self, sql: str, directory: Path) -> list[Path]:
        frame = self._frame(sql)
        try:
            frame.write.option("compression", "zstd").parquet(str(directory))
        except Exception as exc:
            raise _failure("write", exc) from exc
        for extra in directory.iterdir():
            if not extra.name.endswith(".parquet"):
                extra.unlink()
        files = sorted(directory.glob("*.parquet"))
        if not files:  # an empty result: Spark writes no file, so write one that carries the schema
            import pyarrow.parquet as pq

            files = [directory / "part-0.parquet"]
            pq.write_table(frame.limit(0).toArrow(), files[0])
        return files

    def close(self) -> None:
        # The session is shared per process (see _session); Spark stops it at exit.
        return None

    def _frame(self, sql: str) -> Any:
        translated = to_dialect(sql, "spark")
        try:
            return self.spark.sql(translated)
        except Exception as exc:
            raise _failure("query", exc) from exc


def _failure(what: str, exc: Exception) -> QueryError:
    """A Spark error as carelake's, with what to do when carelake's Java function was not available."""
    if FUNCTION in str(exc).lower() and "UNRESOLVED_ROUTINE" in str(exc):
        return QueryError(
            f"{what} failed on spark: lowBoundary()/highBoundary() of a number needs carelake's Java function, "
            "which this Spark session does not have",
            hint="install a JDK (javac) where carelake runs: it compiles the function and adds it to the session",
        )
    return QueryError(f"{what} failed on spark: {first_line(exc)}")
