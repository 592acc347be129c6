"""Options shared by several commands, declared once."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer


class EngineChoice(StrEnum):
    duckdb = "duckdb"
    spark = "spark"


JsonOption = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]
EngineOption = Annotated[EngineChoice, typer.Option("--engine", help="Where the SQL runs.")]
SparkMasterOption = Annotated[
    str | None,
    typer.Option(
        "--spark-master",
        envvar="CARELAKE_SPARK_MASTER",
        help="Spark master URL (local[*], spark://host:7077, k8s://..., yarn).",
    ),
]
SparkRemoteOption = Annotated[
    str | None,
    typer.Option("--spark-remote", envvar="CARELAKE_SPARK_REMOTE", help="Spark Connect URL (sc://host:15002)."),
]
