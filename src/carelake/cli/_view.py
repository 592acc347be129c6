"""``carelake view``: SQL-on-FHIR v2 ViewDefinitions as flat tables."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from carelake.cli._app import app, state
from carelake.cli._console import TableFormat, emit_json, err, write_table
from carelake.cli._options import EngineChoice, EngineOption, JsonOption
from carelake.errors import InputError

view_app = typer.Typer(help="Flat tables from SQL-on-FHIR v2 ViewDefinitions.", no_args_is_help=True)
app.add_typer(view_app, name="view")


ViewArgument = Annotated[Path, typer.Argument(help="A ViewDefinition JSON file.")]


def _load(path: Path) -> dict[str, Any]:
    import orjson

    try:
        view = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise InputError(
            f"cannot read the ViewDefinition {path}: {exc}", hint="pass a JSON ViewDefinition file"
        ) from exc
    if not isinstance(view, dict):
        raise InputError(f"{path} is not a JSON object", hint="a ViewDefinition is one JSON object")
    return view


@view_app.command("run", epilog="Example:  carelake view run patients.json --source export/ --format csv")
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
    from carelake.lake import open_lake

    definition = _load(view)
    if source:
        from carelake.sources.fhir import ingest_fhir

        scratch = Path(tempfile.mkdtemp(prefix="carelake-view-")) / "lake"
        summary = ingest_fhir(source, lake=scratch, engine=engine.value, keep_raw=False)
        if summary.quarantined:
            err.print(
                f"{summary.quarantined:,} record(s) of the source were quarantined and are not in the view",
                highlight=False,
                markup=False,
            )
        lake = open_lake(scratch, create=False)
    else:
        lake = open_lake(state.lake, create=False)
    result = run_view(definition, lake=lake, engine=engine.value)
    write_table(result, format, out_file)


@view_app.command("materialize", epilog="Example:  carelake view materialize views/ --engine duckdb --json")
def view_materialize_command(
    paths: Annotated[list[Path], typer.Argument(help="ViewDefinition files, or folders of them.")],
    engine: EngineOption = EngineChoice.duckdb,
    json: JsonOption = False,
) -> None:
    """Write each view as a silver table named by the view's name, replacing the previous rows, in one commit."""
    from carelake.fhir import load_views, materialize_views
    from carelake.lake import open_lake

    counts = materialize_views(load_views(paths), lake=open_lake(state.lake, create=False), engine=engine.value)
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
