"""``carelake ingest``: bring source files into the lake."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carelake.cli._app import app, state
from carelake.cli._console import RichProgress, emit_json, err
from carelake.cli._options import EngineChoice, EngineOption, JsonOption, SparkMasterOption, SparkRemoteOption

ingest_app = typer.Typer(help="Bring source files into the lake (bronze), losslessly.", no_args_is_help=True)
app.add_typer(ingest_app, name="ingest")


@ingest_app.command("fhir", epilog="Example:  carelake ingest fhir ../shared/testdata/synthea-fhir-r4 --json")
def ingest_fhir_command(
    paths: Annotated[list[Path], typer.Argument(help="NDJSON/JSON files, Bundles, $export manifests or folders.")],
    engine: EngineOption = EngineChoice.duckdb,
    strict: Annotated[
        bool, typer.Option("--strict", help="Commit nothing (exit 1) if any record is quarantined.")
    ] = False,
    keep_raw: Annotated[
        bool, typer.Option("--keep-raw/--no-raw", help="Keep a content-addressed copy of inputs.")
    ] = True,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for another job writing the lake.")] = 600.0,
    spark_master: SparkMasterOption = None,
    spark_remote: SparkRemoteOption = None,
    json: JsonOption = False,
) -> None:
    """Ingest FHIR R4: Bulk Data NDJSON (.ndjson, .jsonl, .gz), resources, Bundles of any type, $export manifests.

    Every record is stored, counted as a duplicate or new version, or quarantined with file, line and rule.
    """
    from carelake.errors import StrictModeError
    from carelake.sources.fhir import ingest_fhir

    try:
        summary = ingest_fhir(
            paths,
            lake=state.lake,
            engine=engine.value,
            strict=strict,
            keep_raw=keep_raw,
            wait_seconds=wait,
            progress=RichProgress(),
            spark_master=spark_master,
            spark_remote=spark_remote,
        )
    except StrictModeError as exc:
        if exc.summary:
            _print_summary(exc.summary)
        raise
    if json:
        emit_json(summary.to_dict())
    _print_summary(summary.to_dict())


def _print_summary(s: dict) -> None:
    from rich.table import Table

    table = Table(title=f"ingest {s['run_id']} ({s['engine']})", title_justify="left")
    for column in ("resource type", "read", "stored", "new versions", "duplicates"):
        table.add_column(column, justify="left" if column == "resource type" else "right")
    for rtype, counts in s["by_type"].items():
        table.add_row(rtype, *(f"{counts[k]:,}" for k in ("read", "stored", "new_versions", "duplicates")))
    err.print(table)
    err.print(
        f"{s['files']} file(s), {s['read']:,} records read = {s['stored']:,} stored + {s['new_versions']:,} new "
        f"versions + {s['duplicates']:,} duplicates + {s['quarantined']:,} quarantined  "
        f"[{s['mb_per_s']} MB/s, {s['seconds']} s]",
        highlight=False,
        markup=False,
    )
    refs = s["references"]
    err.print(
        f"references: {refs['total']:,} ({refs['conditional']:,} conditional); unresolved: "
        f"{refs['unresolved_literal']:,} literal, {refs['unresolved_conditional']:,} conditional",
        highlight=False,
    )
    _print_refused(s)


@ingest_app.command(
    "omop", epilog="Example:  carelake ingest omop ../shared/testdata/omop-eunomia-gibleed/cdm_v5.3 --json"
)
def ingest_omop_command(
    path: Annotated[Path, typer.Argument(help="A folder of CDM tables (CSV, .csv.gz, Parquet) or a DuckDB file.")],
    cdm_version: Annotated[
        str | None, typer.Option("--cdm-version", help="5.3 or 5.4; read from cdm_source when not given.")
    ] = None,
    engine: EngineOption = EngineChoice.duckdb,
    strict: Annotated[
        bool, typer.Option("--strict", help="Commit nothing (exit 1) if any row is quarantined.")
    ] = False,
    keep_raw: Annotated[
        bool, typer.Option("--keep-raw/--no-raw", help="Keep a content-addressed copy of input files.")
    ] = True,
    spark_master: SparkMasterOption = None,
    json: JsonOption = False,
) -> None:
    """Ingest an OMOP CDM 5.3 or 5.4: every table into bronze (omop_<table>), clinical rows also as FHIR.

    Rows that break the CDM DDL (required field empty, wrong type, repeated primary key) are quarantined with
    file, line and column; counts reconcile per table. Re-running adds nothing.
    """
    from carelake.errors import StrictModeError
    from carelake.sources.omop import ingest_omop

    try:
        summary = ingest_omop(
            path,
            lake=state.lake,
            cdm_version=cdm_version,
            engine=engine.value,
            strict=strict,
            keep_raw=keep_raw,
            progress=RichProgress(),
            spark_master=spark_master,
        )
    except StrictModeError as exc:
        if exc.summary:
            _print_omop_summary(exc.summary)
        raise
    if json:
        emit_json(summary.to_dict())
    _print_omop_summary(summary.to_dict())


def _print_omop_summary(s: dict) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"ingest omop {s['run_id']} (CDM {s['cdm_version']} from {s['version_from']}, {s['engine']})",
        title_justify="left",
    )
    for column in ("table", "read", "stored", "duplicates", "quarantined"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for name, counts in s["by_table"].items():
        if counts["read"]:
            table.add_row(name, *(f"{counts[k]:,}" for k in ("read", "stored", "duplicates", "quarantined")))
    err.print(table)
    err.print(
        f"{s['files']} file(s), {s['read']:,} rows read = {s['stored']:,} stored + {s['duplicates']:,} duplicates "
        f"+ {s['quarantined']:,} quarantined  [{s['rows_per_s']:,.0f} rows/s, {s['seconds']} s]",
        highlight=False,
        markup=False,
    )
    if s["fhir"]:
        made = ", ".join(f"{t} {c['stored']:,}" for t, c in s["fhir"]["by_type"].items())
        err.print(f"as FHIR: {made or 'nothing new'}", highlight=False, markup=False)
    for name, columns in s["extra_columns"].items():
        err.print(f"[dim]{name}: kept columns the CDM does not define: {escape(', '.join(columns))}[/]")
    _print_refused(s)


def _print_refused(s: dict) -> None:
    """What any ingest quarantined (by rule, then the first records by locator) and the files it passed over."""
    from rich.markup import escape

    for rule, n in s["quarantined_by_rule"].items():
        err.print(f"[yellow]quarantined[/] {n:,} × {escape(rule)}", highlight=False)
    for problem in s["problems"][:10]:
        where = problem["source_file"] + (f":{problem['line']}" if problem["line"] is not None else "")
        if problem.get("entry_index") is not None:
            where += f" entry[{problem['entry_index']}]"
        err.print(f"  {escape(where)}: {escape(problem['rule'])}: {escape(problem['message'])}", highlight=False)
    if s["quarantined"] > 10:
        err.print('  … see all with: carelake sql "select * from quarantine"', highlight=False, markup=False)
    for skipped in s["skipped_files"][:5]:
        err.print(f"[dim]skipped {escape(skipped['path'])}: {escape(skipped['reason'])}[/]", highlight=False)
