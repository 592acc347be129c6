"""``carelake status`` and ``carelake sql``: look at the committed lake."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carelake.cli._app import app, state
from carelake.cli._console import TableFormat, emit_json, out, write_table
from carelake.cli._options import EngineChoice, EngineOption, JsonOption, SparkMasterOption, SparkRemoteOption


@app.command("status", epilog="Example:  carelake status --json")
def status_command(json: JsonOption = False) -> None:
    """List the lake's tables with row counts, its runs, and quarantined records by rule."""
    from rich.table import Table

    from carelake.lake import open_lake

    info = open_lake(state.lake, create=False).status()
    if json:
        emit_json(info)
        return
    table = Table(title=f"lake {info['lake']} (catalog v{info['catalog_version']})", title_justify="left")
    for column in ("table", "layer", "rows", "files", "MB"):
        table.add_column(column, justify="left" if column in ("table", "layer") else "right")
    for t in info["tables"]:
        table.add_row(t["name"], t["layer"], f"{t['rows']:,}", str(t["files"]), f"{t['bytes'] / 1e6:.2f}")
    out.print(table)
    out.print(f"views: {', '.join(info['views']) or '-'}", highlight=False)
    runs = [r for r in info["runs"] if r["job"] != "create-lake"]
    out.print(
        f"runs: {len(runs)}" + (f" (last: {runs[-1]['run_id']} {runs[-1]['job']})" if runs else ""), highlight=False
    )
    q = info["quarantine"]
    out.print(f"quarantined: {q['total']:,}", highlight=False)
    for rule, n in q["by_rule"].items():
        out.print(f"  {rule}: {n:,}", highlight=False, markup=False)


@app.command(
    "sql", epilog='Example:  carelake sql "select resource_type, count(*) from resources group by 1" --format csv'
)
def sql_command(
    query: Annotated[str, typer.Argument(help="SQL (DuckDB dialect) over the lake's tables and views.")],
    format: Annotated[TableFormat, typer.Option("--format", help="Output format.")] = TableFormat.table,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
    engine: EngineOption = EngineChoice.duckdb,
    spark_master: SparkMasterOption = None,
    spark_remote: SparkRemoteOption = None,
) -> None:
    """Query the committed lake: `resources` (current FHIR resources), one view per resource type, and every table."""
    from carelake.lake import open_lake

    result = open_lake(state.lake, create=False).sql(
        query, engine=engine.value, spark_master=spark_master, spark_remote=spark_remote
    )
    write_table(result, format, out_file)
