"""``carelake features``: what was known at each index time, as a table a model trains on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from carelake.cli._app import app, state
from carelake.cli._console import emit_json, say
from carelake.cli._options import EngineChoice, EngineOption, JsonOption

features_app = typer.Typer(help="Features per index event, computed in SQL from the past only.", no_args_is_help=True)
app.add_typer(features_app, name="features")


@features_app.command("build", epilog="Example:  carelake --lake lake-deid features build readmission-30d --json")
def build_command(
    cohort: Annotated[str, typer.Argument(help="A cohort already built in the lake (e.g. readmission-30d).")],
    spec: Annotated[
        Path | None, typer.Option("--spec", help="Feature definition YAML (default: carelake's, see docs).")
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Compute every index event, not only those of patients with new data.")
    ] = False,
    engine: EngineOption = EngineChoice.duckdb,
    json: JsonOption = False,
) -> None:
    """Write gold table features_<cohort>: demographics, counts in look-back windows, condition flags, labs and
    vitals, utilisation, length of stay and the Charlson index, from events at or before each index time."""
    from carelake.features import build_features
    from carelake.lake import open_lake

    lake = open_lake(state.lake, create=False)
    result = build_features(cohort, lake=lake, spec=spec, engine=engine.value, full=full)
    if json:
        emit_json(result.to_dict())
    say(f"{result.table}: {result.rows:,} index events x {len(result.features)} features ({result.seconds:.1f} s)")
