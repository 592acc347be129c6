"""``carelake view``: SQL-on-FHIR v2 ViewDefinitions as flat tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from carelake.cli._app import app, state
from carelake.cli._console import TableFormat, emit_json, err, write_table
from carelake.cli._options import EngineChoice, EngineOption, JsonOption
from carelake.errors import InputError

view_app = typer.Typer(help="Flat tables from SQL-on-FHIR v2 ViewDefinitions.", no_args_is_help=True)
app.add_typer(view_app, name="view")


ViewArgument = Annotated[
    Path, typer.Argument(help="A ViewDefinition JSON file, or the name of a standard view (e.g. encounters).")
]


def _load(path: Path) -> dict[str, Any]:
    from carelake.fhir import load_views
    from carelake.fhir._materialize import STANDARD

    standard = STANDARD / f"{path.name}.json"
    if not path.exists() and path.suffix == "" and standard.is_file():
        path = standard
    elif not path.exists():
        names = ", ".join(sorted(p.stem for p in STANDARD.glob("*.json")))
        raise InputError(f"no such ViewDefinition file: {path}", hint=f"pass a JSON file or a standard view: {names}")
    return load_views([path])[0]


@view_app.command("run", epilog="Example:  carelake view run encounters --source export/ --format csv")
def view_run_command(
    view: ViewArgument,
    source: Annotated[
        list[Path] | None, typer.Option("--source", help="FHIR files or folders to read instead of the lake.")
    ] = None,
    format: Annotated[TableFormat, typer.Option("--format", help="Output format.")] = TableFormat.table,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout.")] = None,
    engine: EngineOption = EngineChoice.duckdb,
) -> None:
    """Run a ViewDefinition over the lake's current resources, or over FHIR files given with --source."""
    from carelake.fhir import run_view
    from carelake.fhir._views import scratch_lake
    from carelake.lake import open_lake

    definition = _load(view)
    if not source:
        result = run_view(definition, lake=open_lake(state.lake, create=False), engine=engine.value)
        write_table(result, format, out_file)
        return
    with scratch_lake(source, engine=engine.value) as (lake, summary):
        if summary.quarantined:
            err.print(
                f"{summary.quarantined:,} record(s) of the source were quarantined and are not in the view",
                highlight=False,
                markup=False,
            )
        result = run_view(definition, lake=lake, engine=engine.value)
    write_table(result, format, out_file)


@view_app.command("materialize", epilog="Example:  carelake view materialize --standard my-views/ --json")
def view_materialize_command(
    paths: Annotated[list[Path] | None, typer.Argument(help="ViewDefinition files, or folders of them.")] = None,
    standard: Annotated[
        bool, typer.Option("--standard", help="Include carelake's standard views (patients, encounters, …).")
    ] = False,
    full: Annotated[
        bool, typer.Option("--full", help="Compute every row again, not only those of resources that changed.")
    ] = False,
    engine: EngineOption = EngineChoice.duckdb,
    json: JsonOption = False,
) -> None:
    """Write each view as a silver table named by the view's name, in one commit.

    A refresh reads only the resources stored since the last one (and those of ingestion runs that lost a
    resource to a newer version); the rest of each table is kept.
    """
    from carelake.fhir import load_views, materialize_views, standard_views
    from carelake.lake import open_lake

    if not paths and not standard:
        raise InputError("no views to materialize", hint="pass ViewDefinition files or folders, or --standard")
    views = (standard_views() if standard else []) + load_views(paths or [])
    counts = materialize_views(views, lake=open_lake(state.lake, create=False), engine=engine.value, full=full)
    if json:
        emit_json(counts)
    for name, rows in counts.items():
        err.print(f"silver.{name}: {rows:,} row(s)", highlight=False, markup=False)


@view_app.command("sql", epilog="Example:  carelake view sql patients.json --engine spark")
def view_sql_command(view: ViewArgument, engine: EngineOption = EngineChoice.duckdb) -> None:
    """Print the SQL a ViewDefinition compiles to, for the chosen engine."""
    from carelake.engine import to_dialect
    from carelake.fhir import compile_view

    sql = compile_view(_load(view))
    typer.echo(to_dialect(sql, engine.value) if engine is EngineChoice.spark else sql)
