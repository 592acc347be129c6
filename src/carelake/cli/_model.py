"""``carelake model``: train, evaluate and score risk models on a cohort's features."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from carelake.cli._app import app, state
from carelake.cli._console import emit_json, err, say
from carelake.cli._options import EngineChoice, EngineOption, JsonOption

if TYPE_CHECKING:
    from carelake.models import ModelResult

model_app = typer.Typer(
    help="Risk models: train on features, evaluate on held-out patients, score a worklist.", no_args_is_help=True
)
app.add_typer(model_app, name="model")

ModelOption = Annotated[
    str | None, typer.Option("--model", help="A model folder (default: the latest trained for the task).")
]


class KindChoice(StrEnum):
    lightgbm = "lightgbm"
    logistic = "logistic"


class SplitChoice(StrEnum):
    patient = "patient"
    temporal = "temporal"


@model_app.command("train", epilog="Example:  carelake --lake lake-deid model train readmission-30d --json")
def train_command(
    task: Annotated[str, typer.Argument(help="A task whose features are built (readmission-30d, diabetes-onset).")],
    kind: Annotated[KindChoice, typer.Option("--kind", help="The estimator.")] = KindChoice.lightgbm,
    split: Annotated[
        SplitChoice, typer.Option("--split", help="Hold out random patients, or the latest index events.")
    ] = SplitChoice.patient,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and the estimator.")] = 7,
    json: JsonOption = False,
) -> None:
    """Train on features_<task> with a patient-grouped split, evaluate on the held-out patients beside the
    clinical score (LACE or FINDRISC-style), and write predictions_<task>, the model and its model card."""
    from carelake.lake import open_lake
    from carelake.models import train_model

    result = train_model(task, lake=open_lake(state.lake, create=False), kind=kind.value, seed=seed, split=split.value)
    if json:
        emit_json(result.to_dict())
    say(
        f"{task} ({result.kind}, {result.split} split): trained on {result.train_rows:,} index events, tested on "
        f"{result.test_rows:,} ({result.test_patients:,} patients, outcome {result.metrics['prevalence']:.1%})"
    )
    _show(result)
    say(f"model card: {Path(result.model_dir) / 'model-card.html'}")


@model_app.command(
    "evaluate",
    epilog="Example:  carelake --lake lake model evaluate readmission-30d --truth synthetic-fhir/ground_truth",
)
def evaluate_command(
    task: Annotated[str | None, typer.Argument(help="The task (default: the --model folder's task).")] = None,
    model: ModelOption = None,
    truth: Annotated[
        Path | None, typer.Option("--truth", help="Synthetic lakes: the generator's ground_truth/ folder.")
    ] = None,
    key: Annotated[
        Path | None, typer.Option("--key", help="With --truth on a de-identified lake: the key it was made with.")
    ] = None,
    json: JsonOption = False,
) -> None:
    """Evaluate a trained model on its held-out patients: discrimination, calibration (Eavg/E90), decision
    curve, alert thresholds and subgroup fairness; with --truth also the oracle AUROC on the same rows."""
    from carelake.lake import open_lake
    from carelake.models import evaluate_model

    result = evaluate_model(task, lake=open_lake(state.lake, create=False), model=model, truth=truth, key_file=key)
    if json:
        emit_json(result.to_dict())
    _show(result)
    oracle = result.evaluation.get("oracle")
    if oracle:
        say(
            f"oracle (the generator's true probabilities) on the same {oracle['rows']:,} rows: AUROC "
            f"{oracle['oracle_auroc']:.3f}; the model is {oracle['gap']:.3f} below it"
        )
    for row in result.evaluation["fairness"]:
        say(
            f"fairness by {row['attribute']}: equal opportunity difference {row['equal_opportunity_difference']:.3f}, "
            f"FPR gap {row['fpr_gap']:.3f}, AUROC gap {row['auroc_gap']:.3f} ({row['groups_judged']} groups judged)"
        )


@model_app.command("score", epilog="Example:  carelake --lake lake model score readmission-30d --top 20")
def score_command(
    task: Annotated[str | None, typer.Argument(help="The task (default: the --model folder's task).")] = None,
    model: ModelOption = None,
    top: Annotated[int, typer.Option("--top", min=0, help="Worklist rows to print.")] = 10,
    include_labelled: Annotated[
        bool, typer.Option("--include-labelled", help="Also score index events whose outcome is known.")
    ] = False,
    engine: EngineOption = EngineChoice.duckdb,
    json: JsonOption = False,
) -> None:
    """Score the patients at risk now (open index events) and write risk_<task> and a care-coordination
    worklist_<task>: riskiest first, top reasons in plain language, social needs and open referrals."""
    from rich.table import Table

    from carelake.lake import open_lake
    from carelake.models import score_model

    result = score_model(
        task, lake=open_lake(state.lake, create=False), model=model, include_labelled=include_labelled,
        engine=engine.value, top=top,
    )  # fmt: skip
    if json:
        emit_json(result.to_dict())
    table = Table(title=f"{result.worklist_table} (top {len(result.top)})", title_justify="left")
    for column in ("rank", "patient", "risk", "band", "why", "social needs", "open referrals"):
        table.add_column(column, justify="right" if column in ("rank", "risk") else "left")
    for row in result.top:
        table.add_row(str(row["rank"]), row["patient_id"][:12], f"{row['risk']:.1%}", row["risk_band"], row["reasons"],
                      row["social_needs"], row["open_referrals"])  # fmt: skip
    err.print(table)
    say(
        f"scored {result.scored:,} index events of {result.patients:,} patients at risk now with {result.model}: "
        f"{result.high_risk:,} high risk; tables {result.risk_table} and {result.worklist_table}"
    )


def _show(result: ModelResult) -> None:
    m = result.metrics
    say(
        f"AUROC {m['auroc']:.3f} (95% CI {m['auroc_ci'][0]:.3f}-{m['auroc_ci'][1]:.3f}), AUPRC {m['auprc']:.3f}, "
        f"Brier {m['brier']:.3f}, calibration slope {m['calibration_slope']:.2f} (95% CI "
        f"{m['calibration_slope_ci'][0]:.2f}-{m['calibration_slope_ci'][1]:.2f}) intercept "
        f"{m['calibration_intercept']:.2f}, Eavg {m['eavg']:.3f}, E90 {m['e90']:.3f}"
    )
    if "auroc" in result.baseline:
        say(f"baseline {result.baseline['name']}: AUROC {result.baseline['auroc']:.3f}")
    say(f"model: {result.model_dir}")
