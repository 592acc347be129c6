"""Train and evaluate a risk model on a feature table: patient-grouped split, early stopping, fixed seeds.

The estimator follows scikit-learn's contract: LightGBM (default; missing values handled natively) or an
L2-regularised logistic regression (median imputation, scaling). A clinical score is evaluated beside it on the
same test patients: LACE for readmission, a FINDRISC-style score for diabetes onset. The test predictions are
committed to the lake (``predictions_<task>``); the model, its config and the hashes of data and config are
written under ``gold/models/``. Metrics are discrimination (AUROC, AUPRC with bootstrap 95 % CIs) and
calibration (Brier, slope, intercept) on the held-out patients only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow.parquet as pq

from carelake.errors import ConfigError, LakeError

if TYPE_CHECKING:
    import pyarrow as pa

    from carelake.lake import Lake

STAGE = "model-train"
Kind = Literal["lightgbm", "logistic"]
KINDS: tuple[Kind, ...] = ("lightgbm", "logistic")
_KEYS = ("index_event_id", "patient_id", "index_time", "outcome")
_CATEGORICAL = ("sex", "race", "ethnicity")
_BOOTSTRAP = 200


@dataclass
class ModelResult:
    """What training produced: where the model is, its held-out metrics and the baseline's."""

    task: str
    kind: str
    run_id: str
    model_dir: str
    data_hash: str
    config_hash: str
    train_rows: int
    test_rows: int
    test_patients: int
    outcome_rate: float
    metrics: dict[str, Any] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)
    top_features: list[tuple[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_model(
    task: str, *, lake: Lake, kind: Kind = "lightgbm", seed: int = 7, test_share: float = 0.25
) -> ModelResult:
    """Train ``kind`` on ``features_<task>`` and evaluate it on held-out patients.

    Examples:
        >>> result = train_model("readmission-30d", lake=lake)              # doctest: +SKIP
        >>> result.metrics["auroc"], result.baseline["name"]                # doctest: +SKIP
        (0.71, 'LACE index')
    """
    started = time.perf_counter()
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r}", hint=f"one of {', '.join(KINDS)}")
    if not 0.05 <= test_share <= 0.5:
        raise ConfigError(f"test_share {test_share} is outside 0.05-0.5", hint="e.g. 0.25")
    table_name = "features_" + task.replace("-", "_")
    if table_name not in lake.catalog.tables:
        raise LakeError(f"no features for {task!r} in the lake", hint=f"carelake features build {task}")
    table = lake.sql(f"SELECT * FROM {table_name} WHERE outcome IS NOT NULL ORDER BY index_event_id")
    y = np.asarray(table.column("outcome").to_pylist(), dtype=int)
    if table.num_rows < 50 or y.sum() < 5 or (1 - y).sum() < 5:
        raise LakeError(
            f"{table_name} has {table.num_rows} labelled rows and {int(y.sum())} outcomes: too few to train on",
            hint="use a larger lake (at least a few hundred index events with some outcomes)",
        )
    matrix = _Matrix.fit(table)
    x = matrix.transform(table)
    groups = np.asarray(table.column("patient_id").to_pylist())
    train, test = _split(groups, test_share, seed)
    fit, valid = _split(groups[train], 0.2, seed + 1)
    fit, valid = train[fit], train[valid]
    config = {"task": task, "kind": kind, "seed": seed, "test_share": test_share, "features": matrix.columns}
    model = _fit(kind, x[fit], y[fit], x[valid], y[valid], seed)
    p = model.predict_proba(x[test])[:, 1]
    metrics = evaluate(y[test], p, seed=seed)
    baseline_name, baseline_score = _baseline(task, table)
    baseline = {"name": baseline_name}
    if baseline_score is not None:
        baseline |= {"auroc": evaluate(y[test], baseline_score[test], seed=seed, calibration=False)["auroc"]}
    data_hash = _table_hash(table)
    config_hash = _hash(json.dumps(config, sort_keys=True))
    with lake.transaction(STAGE, parameters=config) as tx:
        model_dir = lake.root / "gold" / "models" / f"{task}-{kind}-{config_hash[:12]}"
        staged = tx.stage_dir("model")
        _save(model, kind, staged)
        card = config | {"data_hash": data_hash, "config_hash": config_hash, "metrics": metrics, "baseline": baseline}
        (staged / "model.json").write_text(json.dumps(card, indent=1, default=str) + "\n", encoding="utf-8")
        predictions = _predictions(table, test, p, kind, run_id=tx.run_id)
        file = tx.stage_dir("predictions") / "part-0.parquet"
        pq.write_table(predictions, file)
        tx.replace(f"predictions_{task.replace('-', '_')}", layer="gold", files=[file], rows=predictions.num_rows)
        result = ModelResult(
            task=task,
            kind=kind,
            run_id=tx.run_id,
            model_dir=str(model_dir),
            data_hash=data_hash,
            config_hash=config_hash,
            train_rows=len(train),
            test_rows=len(test),
            test_patients=len(set(groups[test])),
            outcome_rate=round(float(y.mean()), 4),
            metrics=metrics,
            baseline=baseline,
            top_features=_importance(model, kind, matrix.columns)[:15],
        )
        result.seconds = round(time.perf_counter() - started, 3)
        tx.summary = result.to_dict()
        # The model folder is named by its config hash: a re-run with the same config replaces it.
        shutil.rmtree(model_dir, ignore_errors=True)
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staged, model_dir)
    return result


def evaluate(y: np.ndarray, p: np.ndarray, *, seed: int = 7, calibration: bool = True) -> dict[str, Any]:
    """AUROC and AUPRC with bootstrap 95 % CIs; Brier score and calibration slope and intercept."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    rng = np.random.default_rng(seed)
    aurocs, auprcs = [], []
    for _ in range(_BOOTSTRAP):
        i = rng.integers(0, len(y), len(y))
        if 0 < y[i].sum() < len(i):
            aurocs.append(roc_auc_score(y[i], p[i]))
            auprcs.append(average_precision_score(y[i], p[i]))
    out: dict[str, Any] = {
        "auroc": round(float(roc_auc_score(y, p)), 4),
        "auroc_ci": [round(float(v), 4) for v in np.percentile(aurocs, [2.5, 97.5])],
        "auprc": round(float(average_precision_score(y, p)), 4),
        "auprc_ci": [round(float(v), 4) for v in np.percentile(auprcs, [2.5, 97.5])],
        "prevalence": round(float(y.mean()), 4),
    }
    if calibration:
        from sklearn.linear_model import LogisticRegression

        logit = np.log(np.clip(p, 1e-6, 1 - 1e-6) / np.clip(1 - p, 1e-6, 1))
        fit = LogisticRegression(C=1e6, max_iter=1000).fit(logit.reshape(-1, 1), y)
        out |= {
            "brier": round(float(brier_score_loss(y, p)), 4),
            "calibration_slope": round(float(fit.coef_[0][0]), 3),
            "calibration_intercept": round(float(fit.intercept_[0]), 3),
        }
    return out


@dataclass
class _Matrix:
    """Numbers for the estimator: numeric features as they are, categories one-hot (levels from the data)."""

    numeric: list[str]
    levels: dict[str, list[str]]

    @classmethod
    def fit(cls, table: pa.Table) -> _Matrix:
        numeric = [n for n in table.schema.names if n not in _KEYS and n not in _CATEGORICAL]
        names = table.schema.names
        levels = {c: sorted({str(v) for v in table.column(c).to_pylist()}) for c in _CATEGORICAL if c in names}
        return cls(numeric, levels)

    @property
    def columns(self) -> list[str]:
        return self.numeric + [f"{c}={level}" for c, ls in self.levels.items() for level in ls]

    def transform(self, table: pa.Table) -> np.ndarray:
        parts = [
            np.asarray([np.nan if v is None else float(v) for v in table.column(n).to_pylist()], dtype=float)
            for n in self.numeric
        ]
        for column, levels in self.levels.items():
            values = [str(v) for v in table.column(column).to_pylist()]
            parts += [np.asarray([v == level for v in values], dtype=float) for level in levels]
        return np.column_stack(parts)


def _split(groups: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (rest, held out) with every patient's rows on one side only."""
    from sklearn.model_selection import GroupShuffleSplit

    rest, held = next(GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed).split(groups, groups=groups))
    return rest, held


def _fit(kind: str, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int) -> Any:
    if kind == "lightgbm":
        import lightgbm as lgb

        model = lgb.LGBMClassifier(
            n_estimators=2000, learning_rate=0.03, num_leaves=15, min_child_samples=20, subsample=0.8,
            subsample_freq=1, colsample_bytree=0.8, reg_lambda=1.0, random_state=seed, n_jobs=2, verbose=-1,
            deterministic=True, force_row_wise=True,
        )  # fmt: skip
        model.fit(x, y, eval_X=(xv,), eval_y=(yv,), callbacks=[lgb.early_stopping(100, verbose=False)])
        return model
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True),
        StandardScaler(),
        LogisticRegression(C=0.1, max_iter=5000),
    )
    return model.fit(np.vstack([x, xv]), np.concatenate([y, yv]))


def _baseline(task: str, table: pa.Table) -> tuple[str, np.ndarray | None]:
    """A clinical score on the same rows: LACE for readmission, FINDRISC-style for diabetes."""

    def col(name: str) -> np.ndarray:
        if name not in table.schema.names:
            return np.zeros(table.num_rows)
        return np.asarray([0.0 if v is None else float(v) for v in table.column(name).to_pylist()])

    if task.startswith("readmission"):
        los = col("length_of_stay_days")
        l_points = np.select([los < 1, los < 4, los < 7, los < 14], [0, los, 4, 5], 7)
        a_points = 3 * (col("emergency_admission") > 0)
        charlson = col("charlson_index")
        c_points = np.where(charlson >= 4, 5, charlson)
        e_points = np.minimum(col("ed_visits_180d"), 4)
        return "LACE index", l_points + a_points + c_points + e_points
    if task.startswith("diabetes"):
        age = col("age")
        bmi = col("bmi_last")
        glucose = np.maximum(col("fasting_glucose_max"), 0)
        score = (
            np.select([age < 45, age < 55, age < 65], [0, 2, 3], 4)
            + np.select([bmi == 0, bmi < 25, bmi <= 30], [0, 0, 1], 3)
            + 2 * (col("hypertension") > 0)
            + 5 * ((col("prediabetes") > 0) | (glucose >= 100) | (col("hba1c_max") >= 5.7))
        )
        return "FINDRISC-style score", score
    return "none", None


def _importance(model: Any, kind: str, columns: list[str]) -> list[tuple[str, float]]:
    if kind == "lightgbm":
        gains = model.booster_.feature_importance(importance_type="gain")
    else:
        gains = np.abs(model[-1].coef_[0])
    total = float(np.sum(gains)) or 1.0
    ranked = sorted(zip(columns, (float(g) / total for g in gains), strict=True), key=lambda kv: -kv[1])
    return [(name, round(share, 4)) for name, share in ranked if share > 0]


def _predictions(table: pa.Table, test: np.ndarray, p: np.ndarray, kind: str, *, run_id: str) -> pa.Table:
    import pyarrow as pa

    rows = table.take(pa.array(test)).select(["index_event_id", "patient_id", "index_time", "outcome"])
    return (
        rows.append_column("risk", pa.array(p, pa.float64()))
        .append_column("model", pa.array([kind] * len(p), pa.string()))
        .append_column("run_id", pa.array([run_id] * len(p), pa.string()))
    )


def _save(model: Any, kind: str, folder: Any) -> None:
    if kind == "lightgbm":
        model.booster_.save_model(str(folder / "model.txt"))
    else:
        import pickle

        (folder / "model.pkl").write_bytes(pickle.dumps(model))


def _hash(data: Any) -> str:
    return hashlib.sha256(str(data).encode("utf-8")).hexdigest()


def _table_hash(table: pa.Table) -> str:
    """The training data's fingerprint: every value, batch by batch, in the table's (sorted) order."""
    digest = hashlib.sha256(str(table.schema).encode("utf-8"))
    for batch in table.to_batches(max_chunksize=10_000):
        digest.update(str(batch.to_pylist()).encode("utf-8"))
    return digest.hexdigest()
