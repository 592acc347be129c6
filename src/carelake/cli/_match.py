"""``carelake match``: find records that describe the same person."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carelake.cli._app import app, state
from carelake.cli._console import RichProgress, emit_json, err
from carelake.cli._options import EngineChoice, EngineOption, JsonOption

match_app = typer.Typer(help="Record linkage: which records describe the same person.", no_args_is_help=True)
app.add_typer(match_app, name="match")


@match_app.command("patients", epilog="Example:  carelake match patients --threshold 0.95 --report match.html --json")
def match_patients_command(
    threshold: Annotated[
        float,
        typer.Option("--threshold", min=0.0, max=1.0, help="Match probability at or above which two records link."),
    ] = 0.9,
    engine: EngineOption = EngineChoice.duckdb,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write an HTML report (match weights, scores) here.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """Link Patient records of the same person with Splink (probabilistic, trained without labels).

    Writes silver tables patient_match_pairs (linked pairs, their probability and which fields agreed) and
    patient_links (a person_key for every Patient), replacing the previous run's.
    """
    from carelake.lake import open_lake
    from carelake.match import match_patients

    lake = open_lake(state.lake, create=False)
    summary = match_patients(lake, threshold=threshold, engine=engine.value, progress=RichProgress(unit_bytes=False))
    written = None
    if report is not None:
        from carelake.reports import Report
        from carelake.reports._match import match_overview

        page = Report("carelake patient matching", subtitle=f"run {summary.run_id}, {summary.engine}")
        match_overview(lake, page, summary)
        written = page.save(report)
    if json:
        emit_json({**summary.to_dict(), "report": str(written) if written else None})
    err.print(
        f"match {summary.run_id} ({summary.engine}): {summary.records:,} Patient records, "
        f"{summary.candidate_pairs:,} candidate pairs, {summary.matched_pairs:,} matched at >= {threshold:g}",
        highlight=False,
        markup=False,
    )
    err.print(
        f"{summary.clusters:,} persons, {summary.persons_with_multiple_records:,} with more than one record "
        f"(largest: {summary.largest_cluster}); {summary.seconds:,.1f} s",
        highlight=False,
        markup=False,
    )
    err.print("silver tables: patient_match_pairs, patient_links", highlight=False, markup=False)
    from rich.markup import escape

    for t in summary.training:
        if not t["trained"]:
            err.print(f"[yellow]note:[/] EM found {escape(t['reason'])}: {escape(t['blocking_rule'])}", highlight=False)
    if written:
        err.print(f"report {written}", highlight=False, markup=False)
