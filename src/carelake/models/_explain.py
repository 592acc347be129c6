"""Why a model gives a patient the risk it does: per-patient contributions and the global picture.

LightGBM computes exact TreeSHAP contributions natively (``pred_contrib``); for the logistic regression the
contribution of a feature is its coefficient times the patient's standardised value (``LinearModel``). Both
are on the log-odds scale and, with the bias term, add up to the model's logit. Global importance is the mean
absolute contribution. Reasons are the features pushing a patient's risk up most, in plain language.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from carelake.features._describe import describe, family


def contributions(model: Any, kind: str, x: np.ndarray) -> np.ndarray:
    """Rows x (features + 1): each feature's push on the log-odds, the last column the baseline."""
    if kind == "lightgbm":
        return np.asarray(model.booster_.predict(x, pred_contrib=True))
    return model.contributions(x)


def importance(contribs: np.ndarray, columns: list[str]) -> list[tuple[str, float]]:
    """Mean absolute contribution per feature, largest first (features that never matter are left out)."""
    means = np.abs(contribs[:, : len(columns)]).mean(axis=0)
    ranked = sorted(zip(columns, means.tolist(), strict=True), key=lambda kv: -kv[1])
    return [(name, round(value, 4)) for name, value in ranked if value > 0]


def reasons(
    contribs: np.ndarray, x: np.ndarray, columns: list[str], *, top: int = 3, spec: dict[str, Any] | None = None
) -> list[list[str]]:
    """For each row, up to ``top`` features raising its risk most, as a care team would read them."""
    from carelake.features import load_spec

    spec = spec if spec is not None else load_spec()
    families = [family(c) for c in columns]
    out = []
    for row, values in zip(contribs[:, : len(columns)], x, strict=True):
        said: list[str] = []
        seen: set[str] = set()
        for j in np.argsort(-row, kind="stable"):
            if row[j] <= 0 or len(said) == top:
                break
            if families[j] not in seen:  # "highest weight" and "latest weight" are one reason
                seen.add(families[j])
                said.append(describe(columns[j], _value(values[j]), spec))
        out.append(said)
    return out


def _value(v: float) -> float | None:
    return None if np.isnan(v) else float(v)
