"""``carelake cohort``: build study cohorts from YAML definitions, with their attrition."""

from __future__ import annotations

from typing import Annotated

import typer

from carelake.cli._app import app, state
from carelake.cli._console import emit_json, err, say
from carelake.cli._options import EngineChoice, EngineOption, JsonOption

cohort_app = typer.Typer(
    help="Cohorts: entry event, criteria and outcome in YAML, compiled to SQL.", no_args_is_help=True
)
app.add_typer(cohort_app, name="cohort")

DefinitionArgument = Annotated[
    str, typer.Argument(help="A cohort YAML file, or a shipped task: readmission-30d, diabetes-onset.")
]


@cohort_app.command("build", epilog="Example:  carelake --lake lake-deid cohort build readmission-30d --json")
def build_command(
    definition: DefinitionArgument,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Date the data runs to (YYYY-MM-DD); default: latest event.")
    ] = None,
    engine: EngineOption = EngineChoice.duckdb,
    json: JsonOption = False,
) -> None:
    """Build a cohort: gold tables cohort_<name> (one row per index event, with its outcome) and
    cohort_<name>_attrition (index events and patients left after each criterion), replaced on re-runs."""
    from carelake.cohorts import build_cohort
    from carelake.lake import open_lake

    result = build_cohort(definition, lake=open_lake(state.lake, create=False), engine=engine.value, as_of=as_of)
    if json:
        emit_json(result.to_dict())
    from rich.table import Table

    table = Table(title=f"attrition of {result.name}", title_justify="left")
    for column in ("step", "criterion", "index events", "patients"):
        table.add_column(column, justify="left" if column == "criterion" else "right")
    for row in result.attrition:
        table.add_row(str(row["step"]), row["criterion"], f"{row['index_events']:,}", f"{row['patients']:,}")
    err.print(table)
    rate = f", outcome in {result.outcome_rate:.1%}" if result.outcome_rate is not None else ""
    still = f"; {result.open_events:,} still at risk (unlabelled)" if result.open_events else ""
    say(f"{result.table}: {result.index_events:,} index events of {result.patients:,} patients{rate}{still} "
        f"({result.engine}, {result.seconds:.1f} s)")  # fmt: skip


@cohort_app.command("sql", epilog="Example:  carelake cohort sql diabetes-onset")
def sql_command(definition: DefinitionArgument) -> None:
    """Print the SQL a cohort definition compiles to (DuckDB dialect): one view per step, cohort, attrition."""
    from carelake.cohorts import compile_cohort, load_definition

    typer.echo(compile_cohort(load_definition(definition)).script())


@cohort_app.command("tasks", epilog="Example:  carelake cohort tasks")
def tasks_command(json: JsonOption = False) -> None:
    """List the cohort definitions shipped with carelake."""
    from carelake.cohorts import load_definition, shipped_tasks

    tasks = {name: load_definition(name).description.strip() for name in shipped_tasks()}
    if json:
        emit_json(tasks)
    for name, description in tasks.items():
        say(f"{name}: {description}")
