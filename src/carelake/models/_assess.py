"""Re-evaluate a trained model from its folder, and on synthetic lakes measure it against the truth.

The model folder keeps its test predictions, so evaluation needs neither the training data nor a re-fit. With
``truth`` (the generator's ``ground_truth/`` folder) the same test rows are also scored by the generator's
true probabilities: the oracle AUROC is the best any model could reach on them, and the gap to it says how much
signal the pipeline (cohort, features, model) loses. On a de-identified lake the truth's ids are pseudonymised
with the same key first, so the rows meet.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.parquet as pq

from carelake.errors import ConfigError, InputError
from carelake.models._artefact import load_model
from carelake.models._evaluate import evaluate_all, oracle
from carelake.models._train import PREDICTIONS_FILE, ModelResult, subgroups

if TYPE_CHECKING:
    from carelake.lake import Lake

# Where the generator writes each task's true probability (file in ground_truth/, id column, probability column).
TRUTH = {
    "readmission-30d": ("readmissions.parquet", "encounter_id", "probability"),
    "diabetes-onset": ("diabetes.parquet", "encounter_id", "probability_5y"),
}


def evaluate_model(
    task: str | None = None,
    *,
    lake: Lake,
    model: str | Path | None = None,
    truth: str | Path | None = None,
    key_file: str | Path | None = None,
) -> ModelResult:
    """The trained model's result, re-evaluated from its test predictions; with the oracle when ``truth`` is given.

    Examples:
        >>> evaluate_model("readmission-30d", lake=lake, truth="synthetic-fhir/ground_truth").evaluation["oracle"]
        ... # doctest: +SKIP
        {'rows': 1890, 'model_auroc': 0.702, 'oracle_auroc': 0.716, 'gap': 0.014, ...}
    """
    trained = load_model(lake, task=task, model=model)
    card = trained.card
    predictions = pq.read_table(trained.folder / PREDICTIONS_FILE)
    y = predictions.column("outcome").to_numpy(zero_copy_only=False).astype(int)
    p = predictions.column("risk").to_numpy(zero_copy_only=False)
    evaluation = evaluate_all(y, p, subgroups(predictions), seed=int(card["seed"]))
    if truth is not None:
        true_p = _true_probabilities(trained.task, Path(truth), predictions.column("index_event_id").to_pylist(),
                                     key_file)  # fmt: skip
        evaluation.oracle = oracle(y, p, true_p, seed=int(card["seed"]))
    stored = ModelResult(**{k: v for k, v in card["result"].items() if k in ModelResult.__dataclass_fields__})
    result = replace(stored, metrics=evaluation.metrics, evaluation=evaluation.to_dict(), model_dir=str(trained.folder))
    (trained.folder / "evaluation.json").write_text(json.dumps(result.evaluation, indent=1) + "\n", encoding="utf-8")
    return result


def _true_probabilities(task: str, folder: Path, ids: list[str], key_file: str | Path | None) -> np.ndarray:
    """The generator's probability for each index event id (NaN where the truth has none)."""
    if task not in TRUTH:
        raise ConfigError(f"no ground truth is known for task {task!r}", hint=f"one of {', '.join(TRUTH)}")
    name, id_column, probability = TRUTH[task]
    file = folder / name
    if not file.is_file():
        raise InputError(
            f"{file}: not found", hint="pass the ground_truth/ folder `carelake synth fhir` wrote beside the data"
        )
    table = pq.read_table(file, columns=[id_column, probability]).to_pylist()
    if key_file is not None:
        from carelake.privacy._keys import DeidKey

        key = DeidKey.load(key_file)
        by_id = {key.pseudonym("Encounter", r[id_column]): r[probability] for r in table}
    else:
        by_id = {r[id_column]: r[probability] for r in table}
    values = [by_id.get(i) for i in ids]
    if all(v is None for v in values):
        hint = "this lake looks de-identified: pass --key with the key it was made with" if key_file is None else (
            "is this the ground truth of the data in this lake, and the key it was de-identified with?")  # fmt: skip
        raise InputError(f"{file}: none of the model's test index events is in the ground truth", hint=hint)
    return np.asarray([np.nan if v is None else float(v) for v in values])
