"""A trained model on disk, in text formats only: LightGBM's model file, or a logistic regression as JSON.

Nothing is pickled: a model folder in a shared lake must not be a way to run code on whoever scores with it.
The folder also holds ``model.json`` (config, feature encoding, hashes, evaluation) and the model card.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from carelake.errors import LakeError
from carelake.lake._lake import MODELS_DIR

if TYPE_CHECKING:
    from carelake.lake import Lake


@dataclass
class LinearModel:
    """A fitted imputer + scaler + logistic regression, reduced to its numbers."""

    medians: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def from_pipeline(cls, pipeline: Any) -> LinearModel:
        imputer, scaler, regression = pipeline[0], pipeline[1], pipeline[-1]
        return cls(
            np.asarray(imputer.statistics_, dtype=float), np.asarray(scaler.mean_, dtype=float),
            np.asarray(scaler.scale_, dtype=float), np.asarray(regression.coef_[0], dtype=float),
            float(regression.intercept_[0]),
        )  # fmt: skip

    def standardised(self, x: np.ndarray) -> np.ndarray:
        filled = np.where(np.isnan(x), self.medians, x)
        return (filled - self.means) / self.scales

    def contributions(self, x: np.ndarray) -> np.ndarray:
        parts = self.standardised(x) * self.coef
        return np.column_stack([parts, np.full(len(x), self.intercept)])

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = 1 / (1 + np.exp(-self.contributions(x).sum(axis=1)))
        return np.column_stack([1 - p, p])

    def to_json(self) -> dict[str, Any]:
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in self.__dict__.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearModel:
        return cls(**{k: np.asarray(v, dtype=float) if isinstance(v, list) else v for k, v in data.items()})


class BoosterModel:
    """A LightGBM booster read back from its model file, with the estimator's ``predict_proba``."""

    def __init__(self, booster: Any) -> None:
        self.booster_ = booster

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = np.asarray(self.booster_.predict(x))
        return np.column_stack([1 - p, p])


@dataclass
class TrainedModel:
    """A model folder read back: the estimator, its kind, the card (config, encoding, evaluation)."""

    folder: Path
    kind: str
    model: Any
    card: dict[str, Any]

    @property
    def task(self) -> str:
        return str(self.card["task"])


def save_model(model: Any, kind: str, folder: Path) -> None:
    """Write the estimator into ``folder`` (model.txt for LightGBM, model-logistic.json otherwise)."""
    if kind == "lightgbm":
        model.booster_.save_model(str(folder / "model.txt"))
    else:
        (folder / "model-logistic.json").write_text(json.dumps(model.to_json()) + "\n", encoding="utf-8")


def load_model(lake: Lake, *, task: str | None = None, model: str | Path | None = None) -> TrainedModel:
    """The model at ``model`` (a folder, or its name under gold/models), else the latest trained for ``task``."""
    root = lake.root / MODELS_DIR
    if model is not None:
        folder = Path(model) if Path(model).is_dir() else root / str(model)
        if not (folder / "model.json").is_file():
            raise LakeError(f"no model at {model}", hint=f"pass a folder under {root} (carelake model train TASK)")
    else:
        if task is None:
            raise LakeError("which model?", hint="give --model FOLDER or a task")
        candidates = sorted(root.glob(f"{task}-*/model.json"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
        if not candidates:
            raise LakeError(f"no trained model for {task!r} in the lake", hint=f"carelake model train {task}")
        folder = candidates[-1].parent
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    kind = card["kind"]
    if kind == "lightgbm":
        import lightgbm as lgb

        estimator: Any = BoosterModel(lgb.Booster(model_file=str(folder / "model.txt")))
    else:
        data = json.loads((folder / "model-logistic.json").read_text(encoding="utf-8"))
        estimator = LinearModel.from_json(data)
    return TrainedModel(folder=folder, kind=kind, model=estimator, card=card)
