"""``carelake quality``: the data-quality check suite and its report."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from carelake.cli._app import app, state
from carelake.cli._console import RichProgress, emit_json, err
from carelake.cli._options import EngineChoice, EngineOption, JsonOption

quality_app = typer.Typer(help="Data-quality checks (Kahn framework, DQD depth) over the lake.", no_args_is_help=True)
app.add_typer(quality_app, name="quality")


class FailOn(StrEnum):
    fatal = "fatal"
    error = "error"
    warning = "warning"


@quality_app.command(
    "run", epilog="Example:  carelake quality run --as-of 2026-01-01 --out quality-report --json --fail-on error"
)
def quality_run_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html.")] = Path("quality-report"),
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="The data's extraction date (YYYY-MM-DD): later events are 'in the future'."),
    ] = None,
    fail_on: Annotated[
        FailOn, typer.Option("--fail-on", help="Exit 1 when a check of this severity or worse fails.")
    ] = FailOn.fatal,
    full: Annotated[
        bool, typer.Option("--full", help="Read every resource again, not only those of new ingestion runs.")
    ] = False,
    engine: EngineOption = EngineChoice.duckdb,
    json: JsonOption = False,
) -> None:
    """Run every check on the lake's current data, store results in the lake, and write an HTML report.

    Per-resource facts are refreshed incrementally: after a new day's ingestion only its resources are read.
    """
    from carelake.lake import open_lake
    from carelake.quality import run_quality
    from carelake.reports import Report, quality_overview

    lake = open_lake(state.lake, create=False)
    run = run_quality(lake, engine=engine.value, as_of=as_of, full=full, progress=RichProgress(unit_bytes=False))
    report = Report("carelake data quality", subtitle=f"lake {lake.root.name}, run {run.run_id}, {engine.value}")
    quality_overview(lake, report, run)
    path = report.save(out / "report.html")
    summary = run.to_dict() | {"report": str(path)}
    if json:
        emit_json(summary)
    err.print(
        f"{run.checks:,} checks: {run.passed:,} passed, {run.failed:,} failed, {run.not_applicable:,} not applicable "
        f"({run.seconds:.1f} s)",
        highlight=False,
        markup=False,
    )
    for severity, n in run.failed_by_severity.items():
        if n:
            err.print(f"  {severity}: {n:,} failed", highlight=False, markup=False)
    err.print(f"report: {path}", highlight=False, markup=False)
    levels = ["fatal", "error", "warning"][: ["fatal", "error", "warning"].index(fail_on.value) + 1]
    if any(run.failed_by_severity.get(level) for level in levels):
        err.print(f"failing: a check of severity {' or '.join(levels)} failed", highlight=False, markup=False)
        raise typer.Exit(1)
