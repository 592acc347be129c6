"""Models: risk models trained on a cohort's features, evaluated, explained, and used to score a worklist.

    >>> import carelake.models as models
    >>> models.train_model("readmission-30d", lake=lake).metrics["auroc"]   # doctest: +SKIP
    0.71
    >>> models.score_model("readmission-30d", lake=lake).top[0]["risk_band"]  # doctest: +SKIP
    'high'

See docs/models.md for what is trained, how it is evaluated, and the limits.
"""

from carelake.models._artefact import TrainedModel, load_model
from carelake.models._assess import evaluate_model
from carelake.models._evaluate import Evaluation, evaluate, evaluate_all
from carelake.models._score import ScoreResult, score_model
from carelake.models._train import KINDS, SPLITS, ModelResult, fit, train_model

__all__ = [
    "KINDS",
    "SPLITS",
    "Evaluation",
    "ModelResult",
    "ScoreResult",
    "TrainedModel",
    "evaluate",
    "evaluate_all",
    "evaluate_model",
    "fit",
    "load_model",
    "score_model",
    "train_model",
]
