"""Models: risk models trained on a cohort's features, evaluated on held-out patients against a clinical score.

    >>> import carelake.models as models
    >>> models.train_model("readmission-30d", lake=lake).metrics["auroc"]   # doctest: +SKIP
    0.71

See docs/models.md for what is trained, how it is evaluated, and the limits.
"""

from carelake.models._train import KINDS, ModelResult, evaluate, train_model

__all__ = ["KINDS", "ModelResult", "evaluate", "train_model"]
