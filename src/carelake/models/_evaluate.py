"""How good a risk model is on held-out patients: discrimination, calibration, clinical utility and fairness.

Follows what OHDSI PatientLevelPrediction reports (AUROC with CI, calibration slope and intercept, Eavg/E90)
and adds what it leaves out: a decision curve (net benefit; Vickers & Elkin 2006), a threshold table a care
team can pick an alert rate from, and subgroup metrics by sex, age band and race/ethnicity with bootstrap CIs.
Groups too small to judge are named and left out rather than reported with meaningless figures.

The smoothed calibration curve is a logistic regression of the outcome on a natural-spline basis of the
model's logit (Van Calster et al. 2016's flexible calibration; loess needs a library we do not otherwise use).
Eavg, E90 and Emax are the mean, 90th centile and maximum distance between prediction and that curve
(Austin & Steyerberg 2019).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

BOOTSTRAP = 200
ALERT_SHARE = 0.2  # the operating point: alerts for the riskiest fifth of patients
MIN_GROUP = 50  # index events a subgroup needs before its metrics are reported
MIN_GROUP_EVENTS = 10  # and outcomes (and non-outcomes)
AGE_BANDS = ((18, 45), (45, 65), (65, 80), (80, 200))


@dataclass
class Evaluation:
    """Everything measured on the test set; JSON-ready (it is saved beside the model)."""

    metrics: dict[str, Any]
    calibration: dict[str, Any]
    decision_curve: list[dict[str, float]]
    thresholds: list[dict[str, Any]]
    operating_threshold: float
    subgroups: list[dict[str, Any]] = field(default_factory=list)
    fairness: list[dict[str, Any]] = field(default_factory=list)
    oracle: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(y: np.ndarray, p: np.ndarray, *, seed: int = 7, calibration: bool = True) -> dict[str, Any]:
    """AUROC and AUPRC with bootstrap 95 % CIs; Brier score, calibration slope (Wald 95 % CI) and intercept,
    Eavg and E90."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    ranks = _Ranks(y, p)
    aurocs, auprcs = [], []
    for w in _resamples(y, seed):
        aurocs.append(ranks.auroc(w))
        auprcs.append(average_precision_score(y, p, sample_weight=w))
    out: dict[str, Any] = {
        "auroc": round(float(roc_auc_score(y, p)), 4),
        "auroc_ci": _ci(aurocs),
        "auprc": round(float(average_precision_score(y, p)), 4),
        "auprc_ci": _ci(auprcs),
        "prevalence": round(float(y.mean()), 4),
    }
    if calibration:
        slope, intercept, slope_se = _recalibration(y, p)
        curve = calibration_curve(y, p)
        out |= {
            "brier": round(float(brier_score_loss(y, p)), 4),
            "calibration_slope": round(slope, 3),
            "calibration_slope_ci": [round(slope - 1.96 * slope_se, 3), round(slope + 1.96 * slope_se, 3)],
            "calibration_intercept": round(intercept, 3),
            "eavg": curve["eavg"],
            "e90": curve["e90"],
        }
    return out


def evaluate_all(
    y: np.ndarray, p: np.ndarray, groups: dict[str, np.ndarray] | None = None, *, seed: int = 7
) -> Evaluation:
    """The full evaluation of predictions ``p`` of outcomes ``y``; ``groups`` maps attribute -> group per row."""
    threshold = float(np.quantile(p, 1 - ALERT_SHARE))
    subgroups, fairness = subgroup_metrics(y, p, groups or {}, threshold=threshold, seed=seed)
    return Evaluation(
        metrics=evaluate(y, p, seed=seed),
        calibration=calibration_curve(y, p),
        decision_curve=decision_curve(y, p),
        thresholds=threshold_table(y, p),
        operating_threshold=round(threshold, 4),
        subgroups=subgroups,
        fairness=fairness,
    )


def calibration_curve(y: np.ndarray, p: np.ndarray, *, bins: int = 10) -> dict[str, Any]:
    """Observed against predicted risk: deciles of prediction, a smoothed curve, and Eavg/E90/Emax."""
    order = np.argsort(p, kind="stable")
    deciles = [
        {"predicted": round(float(p[c].mean()), 4), "observed": round(float(y[c].mean()), 4), "n": len(c)}
        for c in np.array_split(order, bins)
        if len(c)
    ]
    smooth = _smoothed(y, p)
    gaps = np.abs(p - smooth)
    grid = np.quantile(p, np.linspace(0.01, 0.99, 25))
    grid_smooth = _smoothed(y, p, at=grid)
    return {
        "bins": deciles,
        "smooth": [
            {"predicted": round(float(a), 4), "observed": round(float(b), 4)}
            for a, b in zip(grid, grid_smooth, strict=True)
        ],
        "eavg": round(float(gaps.mean()), 4),
        "e90": round(float(np.quantile(gaps, 0.9)), 4),
        "emax": round(float(gaps.max()), 4),
    }


def decision_curve(y: np.ndarray, p: np.ndarray, *, thresholds: np.ndarray | None = None) -> list[dict[str, float]]:
    """Net benefit of acting on the model, on everyone and on no one, across threshold probabilities."""
    top = float(min(0.99, max(0.05, np.quantile(p, 0.99))))
    points = thresholds if thresholds is not None else np.round(np.linspace(0.01, top, 40), 4)
    n, prevalence = len(y), float(y.mean())
    rows = []
    for t in points:
        flagged = p >= t
        tp = float(np.sum(flagged & (y == 1)))
        fp = float(np.sum(flagged & (y == 0)))
        odds = t / (1 - t)
        rows.append(
            {
                "threshold": round(float(t), 4),
                "model": round(tp / n - fp / n * odds, 5),
                "treat_all": round(prevalence - (1 - prevalence) * odds, 5),
                "treat_none": 0.0,
            }
        )
    return rows


def threshold_table(
    y: np.ndarray, p: np.ndarray, *, alert_shares: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
) -> list[dict[str, Any]]:
    """For alerting on the riskiest 5 %, 10 %, ... of patients: the threshold, sensitivity, specificity, PPV."""
    rows: list[dict[str, Any]] = []
    for share in alert_shares:
        t = float(np.quantile(p, 1 - share))
        rows.append({"alert_share": share, "threshold": round(t, 4)} | _confusion(y, p >= t))
    return rows


def subgroup_metrics(
    y: np.ndarray, p: np.ndarray, groups: dict[str, np.ndarray], *, threshold: float, seed: int = 7
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per group: AUROC and TPR with CIs, observed/expected ratio, TPR and FPR at the operating threshold.

    The fairness rows give, per attribute, the largest TPR gap (equal opportunity difference), the largest
    FPR gap (with TPR, equalised odds) and the spread of calibration, between the groups large enough to judge.
    """
    from sklearn.metrics import roc_auc_score

    flagged = p >= threshold
    rows: list[dict[str, Any]] = []
    fairness: list[dict[str, Any]] = []
    for attribute, values in groups.items():
        judged = []
        for group in sorted({str(v) for v in values}):
            mask = values.astype(str) == group
            yy, pp, ff = y[mask], p[mask], flagged[mask]
            row: dict[str, Any] = {"attribute": attribute, "group": group, "n": int(mask.sum()),
                                   "events": int(yy.sum())}  # fmt: skip
            small = len(yy) < MIN_GROUP or yy.sum() < MIN_GROUP_EVENTS or (1 - yy).sum() < MIN_GROUP_EVENTS
            if small:
                row["withheld"] = f"fewer than {MIN_GROUP} index events or {MIN_GROUP_EVENTS} outcomes and non-outcomes"
                rows.append(row)
                continue
            ranks = _Ranks(yy, pp)
            aurocs, tprs = [], []
            for w in _resamples(yy, seed):
                aurocs.append(ranks.auroc(w))
                tprs.append(float(np.sum(w * ff * yy) / np.sum(w * yy)))
            confusion = _confusion(yy, ff)
            row |= {
                "auroc": round(float(roc_auc_score(yy, pp)), 4),
                "auroc_ci": _ci(aurocs),
                "observed_expected": round(float(yy.mean() / pp.mean()), 3),
                "tpr": confusion["sensitivity"],
                "tpr_ci": _ci(tprs),
                "fpr": round(1 - confusion["specificity"], 4),
                "alerts_per_100": confusion["alerts_per_100"],
            }
            rows.append(row)
            judged.append(row)
        if len(judged) >= 2:
            reference = max(judged, key=lambda r: r["n"])
            for row in judged:
                row["tpr_difference"] = round(row["tpr"] - reference["tpr"], 4)
            fairness.append(
                {
                    "attribute": attribute,
                    "reference_group": reference["group"],
                    "groups_judged": len(judged),
                    "equal_opportunity_difference": round(max(r["tpr"] for r in judged)
                                                          - min(r["tpr"] for r in judged), 4),
                    "fpr_gap": round(max(r["fpr"] for r in judged) - min(r["fpr"] for r in judged), 4),
                    "auroc_gap": round(max(r["auroc"] for r in judged) - min(r["auroc"] for r in judged), 4),
                    "observed_expected_range": [min(r["observed_expected"] for r in judged),
                                                max(r["observed_expected"] for r in judged)],
                }
            )  # fmt: skip
    return rows, fairness


def age_band(age: np.ndarray) -> np.ndarray:
    """Age at index in the bands subgroup metrics use (18-44, 45-64, 65-79, 80+)."""
    labels = np.full(len(age), "unknown", dtype=object)
    for low, high in AGE_BANDS:
        labels[(age >= low) & (age < high)] = f"{low}+" if high == 200 else f"{low}-{high - 1}"
    return labels


def oracle(y: np.ndarray, p: np.ndarray, truth: np.ndarray, *, seed: int = 7) -> dict[str, Any]:
    """The model beside the generator's true probabilities on the same rows (synthetic lakes only)."""
    from sklearn.metrics import roc_auc_score

    known = ~np.isnan(truth)
    model_auroc = float(roc_auc_score(y[known], p[known]))
    oracle_auroc = float(roc_auc_score(y[known], truth[known]))
    return {
        "rows": int(known.sum()),
        "rows_without_truth": int((~known).sum()),
        "model_auroc": round(model_auroc, 4),
        "oracle_auroc": round(oracle_auroc, 4),
        "gap": round(oracle_auroc - model_auroc, 4),
        "oracle": evaluate(y[known], truth[known], seed=seed),
    }


def _resamples(y: np.ndarray, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples as weights (how often each row is drawn), holding both classes.

    Weights rather than index sets let each resample's AUROC be computed from one sort of the data
    (:class:`_Ranks`), which keeps 200 resamples of a million test rows within seconds.
    """
    rng = np.random.default_rng(seed)
    n = len(y)
    for _ in range(BOOTSTRAP):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        positives = float(np.sum(w * y))
        if 0 < positives < n:
            yield w


class _Ranks:
    """The data sorted once by score, so a weighted AUROC (ties count a half) costs two bincounts."""

    def __init__(self, y: np.ndarray, p: np.ndarray) -> None:
        self.levels, self.inverse = np.unique(p, return_inverse=True)
        self.positive = y == 1

    def auroc(self, w: np.ndarray) -> float:
        size = len(self.levels)
        pos = np.bincount(self.inverse, weights=w * self.positive, minlength=size)
        neg = np.bincount(self.inverse, weights=w * ~self.positive, minlength=size)
        below = np.cumsum(neg) - neg
        return float(np.sum(pos * (below + 0.5 * neg)) / (pos.sum() * neg.sum()))


def _ci(values: list[float]) -> list[float]:
    if not values:
        return [float("nan"), float("nan")]
    return [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]


def _confusion(y: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    tp = int(np.sum(flagged & (y == 1)))
    fp = int(np.sum(flagged & (y == 0)))
    fn = int(np.sum(~flagged & (y == 1)))
    tn = int(np.sum(~flagged & (y == 0)))

    def ratio(a: int, b: int) -> float:
        return round(a / b, 4) if b else float("nan")

    return {
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "alerts_per_100": round(100 * (tp + fp) / len(y), 1) if len(y) else float("nan"),
    }


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def _recalibration(y: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """Calibration slope, intercept and the slope's standard error (Wald, from the Fisher information).

    The slope and intercept are the logistic regression of the outcome on the model's logit.
    """
    from sklearn.linear_model import LogisticRegression

    x = _logit(p)
    fit = LogisticRegression(C=1e6, max_iter=1000).fit(x.reshape(-1, 1), y)
    slope, intercept = float(fit.coef_[0][0]), float(fit.intercept_[0])
    q = 1 / (1 + np.exp(-(intercept + slope * x)))
    w = q * (1 - q)
    information = np.asarray([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]])
    se = float(np.sqrt(np.linalg.inv(information)[1, 1])) if np.linalg.det(information) > 0 else float("nan")
    return slope, intercept, se


def _smoothed(y: np.ndarray, p: np.ndarray, *, at: np.ndarray | None = None) -> np.ndarray:
    """Observed risk as a smooth function of predicted risk (spline logistic calibration), evaluated at ``at``."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import SplineTransformer

    x = _logit(p).reshape(-1, 1)
    curve = make_pipeline(
        SplineTransformer(n_knots=4, degree=3, knots="quantile", extrapolation="linear"),
        LogisticRegression(C=10.0, max_iter=2000),
    ).fit(x, y)
    target = x if at is None else _logit(at).reshape(-1, 1)
    return curve.predict_proba(target)[:, 1]
