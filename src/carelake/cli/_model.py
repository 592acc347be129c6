"""``carelake model``: train and evaluate risk models on a cohort's features."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from carelake.cli._app import app, state
from carelake.cli._console import emit_json, say
from carelake.cli._options import JsonOption

model_app = typer.Typer(help="Risk models: train on features, evaluate on held-out patients.", no_args_is_help=True)
app.add_typer(model_app, name="model")


class KindChoice(StrEnum):
    lightgbm = "lightgbm"
    logistic = "logistic"


@model_app.command("train", epilog="Example:  carelake --lake lake-deid model train readmission-30d --json")
def train_command(
    task: Annotated[str, typer.Argument(help="A task whose features are built (readmission-30d, diabetes-onset).")],
    kind: Annotated[KindChoice, typer.Option("--kind", help="The estimator.")] = KindChoice.lightgbm,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and the estimator.")] = 7,
    json: JsonOption = False,
) -> None:
    """Train on features_<task> with a patient-grouped split, evaluate on the held-out patients beside the
    clinical score (LACE or FINDRISC-style), and write predictions_<task> and the model under gold/models/."""
    from carelake.lake import open_lake
    from carelake.models import train_model

    result = train_model(task, lake=open_lake(state.lake, create=False), kind=kind.value, seed=seed)
    if json:
        emit_json(result.to_dict())
    m = result.metrics
    say(
        f"{task} ({result.kind}): trained on {result.train_rows:,} index events, tested on {result.test_rows:,} "
        f"({result.test_patients:,} patients, outcome {m['prevalence']:.1%})"
    )
    say(
        f"AUROC {m['auroc']:.3f} (95% CI {m['auroc_ci'][0]:.3f}-{m['auroc_ci'][1]:.3f}), AUPRC {m['auprc']:.3f}, "
        f"Brier {m['brier']:.3f}, calibration slope {m['calibration_slope']:.2f}"
    )
    if "auroc" in result.baseline:
        say(f"baseline {result.baseline['name']}: AUROC {result.baseline['auroc']:.3f}")
    say(f"model: {result.model_dir}")
