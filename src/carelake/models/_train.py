"""Train and evaluate a risk model on a feature table: patient-grouped split, early stopping, fixed seeds.

The estimator follows scikit-learn's contract: LightGBM (default; missing values handled natively) or an
L2-regularised logistic regression (median imputation, scaling). A clinical score is evaluated beside it on the
same test patients: LACE for readmission, a FINDRISC-style score for diabetes onset. The test predictions are
committed to the lake (``predictions_<task>``); the model, its feature encoding, config, the hashes of data and
config and the full evaluation (:mod:`carelake.models._evaluate`) are written under ``gold/models/``, with a
model card (:mod:`carelake.reports._model_card`). Everything is measured on the held-out patients only.
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
from carelake.lake._lake import MODELS_DIR
from carelake.models._artefact import LinearModel, save_model
from carelake.models._evaluate import age_band, evaluate, evaluate_all
from carelake.models._explain import contributions, importance

if TYPE_CHECKING:
    import pyarrow as pa

    from carelake.lake import Lake

STAGE = "model-train"
Kind = Literal["lightgbm", "logistic"]
KINDS: tuple[Kind, ...] = ("lightgbm", "logistic")
Split = Literal["patient", "temporal"]
SPLITS: tuple[Split, ...] = ("patient", "temporal")
_KEYS = ("index_event_id", "patient_id", "index_time", "outcome")
_CATEGORICAL = ("sex", "race", "ethnicity", "discharge_disposition")
DEMOGRAPHIC = ("sex", "race", "ethnicity")  # inputs, but never given to a care team as a reason
_SUBGROUP_COLUMNS = ("sex", "race", "ethnicity", "age")
PREDICTIONS_FILE = "test-predictions.parquet"
_IMPORTANCE_ROWS = 5_000


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
    evaluation: dict[str, Any] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    split: str = "patient"
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_model(
    task: str,
    *,
    lake: Lake,
    kind: Kind = "lightgbm",
    seed: int = 7,
    test_share: float = 0.25,
    split: Split = "patient",
) -> ModelResult:
    """Train ``kind`` on ``features_<task>`` and evaluate it on held-out patients.

    ``split="temporal"`` tests on the latest index events instead of a random share of patients (training keeps
    only earlier events of other patients), which is how a model meets the future.

    Examples:
        >>> result = train_model("readmission-30d", lake=lake)              # doctest: +SKIP
        >>> result.metrics["auroc"], result.baseline["name"]                # doctest: +SKIP
        (0.71, 'LACE index')
    """
    started = time.perf_counter()
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r}", hint=f"one of {', '.join(KINDS)}")
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}", hint=f"one of {', '.join(SPLITS)}")
    if not 0.05 <= test_share <= 0.5:
        raise ConfigError(f"test_share {test_share} is outside 0.05-0.5", hint="e.g. 0.25")
    table_name = "features_" + task.replace("-", "_")
    if table_name not in lake.catalog.tables:
        raise LakeError(f"no features for {task!r} in the lake", hint=f"carelake features build {task}")
    table = lake.sql(f"SELECT * FROM {table_name} WHERE outcome IS NOT NULL ORDER BY index_event_id")
    fitted = fit(table, task=task, kind=kind, seed=seed, test_share=test_share, split=split)
    data_hash = _table_hash(table)
    config_hash = _hash(json.dumps(fitted.config, sort_keys=True))
    with lake.transaction(STAGE, parameters=fitted.config) as tx:
        model_dir = lake.root / MODELS_DIR / f"{task}-{kind}-{config_hash[:12]}"
        staged = tx.stage_dir("model")
        save_model(fitted.model, kind, staged)
        result = ModelResult(
            task=task,
            kind=kind,
            run_id=tx.run_id,
            model_dir=str(model_dir),
            data_hash=data_hash,
            config_hash=config_hash,
            train_rows=len(fitted.train),
            test_rows=len(fitted.test),
            test_patients=len(set(fitted.groups[fitted.test])),
            outcome_rate=round(float(fitted.y.mean()), 4),
            metrics=fitted.evaluation.metrics,
            baseline=fitted.baseline,
            top_features=fitted.importance[:15],
            evaluation=fitted.evaluation.to_dict(),
            features=fitted.matrix.columns,
            split=split,
        )
        card = fitted.config | {"data_hash": data_hash, "config_hash": config_hash, "encoding": asdict(fitted.matrix),
                                "result": result.to_dict() | {"seconds": None}}  # fmt: skip
        (staged / "model.json").write_text(json.dumps(card, indent=1, default=str) + "\n", encoding="utf-8")
        predictions = _predictions(table, fitted.test, fitted.p, kind, run_id=tx.run_id)
        file = tx.stage_dir("predictions") / "part-0.parquet"
        pq.write_table(predictions, file)
        pq.write_table(predictions, staged / PREDICTIONS_FILE)  # the model folder can be re-evaluated alone
        tx.replace(f"predictions_{task.replace('-', '_')}", layer="gold", files=[file], rows=predictions.num_rows)
        result.seconds = round(time.perf_counter() - started, 3)
        tx.summary = result.to_dict()
        from carelake.reports._model_card import write_model_card

        write_model_card(staged / "model-card.html", result)
        # The model folder is named by its config hash: a re-run with the same config replaces it.
        shutil.rmtree(model_dir, ignore_errors=True)
        model_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(staged, model_dir)
    return result


@dataclass
class Fitted:
    """A model fitted on a feature table and evaluated on its held-out rows (no lake involved)."""

    model: Any
    matrix: FeatureEncoding
    config: dict[str, Any]
    y: np.ndarray
    groups: np.ndarray
    train: np.ndarray
    test: np.ndarray
    p: np.ndarray
    evaluation: Any
    baseline: dict[str, Any]
    importance: list[tuple[str, float]]


def fit(
    table: pa.Table, *, task: str, kind: Kind = "lightgbm", seed: int = 7, test_share: float = 0.25,
    split: Split = "patient",
) -> Fitted:  # fmt: skip
    """Split, fit with early stopping on validation patients, and evaluate on the test rows of ``table``."""
    y = table.column("outcome").to_numpy(zero_copy_only=False).astype(int)
    if table.num_rows < 50 or y.sum() < 5 or (1 - y).sum() < 5:
        raise LakeError(
            f"the features of {task} have {table.num_rows} labelled rows and {int(y.sum())} outcomes: too few "
            "to train on",
            hint="use a larger lake (at least a few hundred index events with some outcomes)",
        )
    matrix = FeatureEncoding.fit(table)
    x = matrix.transform(table)
    groups = table.column("patient_id").to_numpy(zero_copy_only=False)
    patient = np.unique(groups, return_inverse=True)[1]  # integer codes: splitting on strings is slow
    if split == "temporal":
        train, test = _temporal_split(table, patient, test_share)
    else:
        train, test = _split(patient, test_share, seed)
    fit_rows, valid = _split(patient[train], 0.2, seed + 1)
    fit_rows, valid = train[fit_rows], train[valid]
    for name, rows in (("training", fit_rows), ("validation", valid), ("test", test)):
        if len(set(y[rows].tolist())) < 2:  # metrics and early stopping need outcomes and non-outcomes
            raise LakeError(
                f"the {name} patients of {task} have {int(y[rows].sum())} outcomes in {len(rows)} index events: "
                "too few to train and evaluate on",
                hint="use a larger lake (at least a few hundred index events with some outcomes)",
            )
    config = {"task": task, "kind": kind, "seed": seed, "test_share": test_share, "split": split,
              "features": matrix.columns}  # fmt: skip
    model = _fit(kind, x[fit_rows], y[fit_rows], x[valid], y[valid], seed)
    p = model.predict_proba(x[test])[:, 1]
    evaluation = evaluate_all(y[test], p, subgroups(table, test), seed=seed)
    baseline_name, baseline_score = _baseline(task, table)
    baseline: dict[str, Any] = {"name": baseline_name}
    if baseline_score is not None:
        baseline |= {"auroc": evaluate(y[test], baseline_score[test], seed=seed, calibration=False)["auroc"]}
    contribs = contributions(model, kind, x[test[:_IMPORTANCE_ROWS]])  # a fixed sample is plenty for the mean
    return Fitted(model, matrix, config, y, groups, train, test, p, evaluation, baseline,
                  importance(contribs, matrix.columns))  # fmt: skip


def subgroups(table: pa.Table, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Sex, age band and race/ethnicity of the given rows (default: all), for subgroup metrics."""
    rows = np.arange(table.num_rows) if rows is None else rows
    out: dict[str, np.ndarray] = {}
    for name in ("sex", "race", "ethnicity"):
        if name in table.schema.names:
            out[name] = np.asarray(["unknown" if v is None else str(v) for v in table.column(name).to_pylist()])[rows]
    if "age" in table.schema.names:
        out["age band"] = age_band(_numeric(table, "age"))[rows]
    return out


def _numeric(table: pa.Table, name: str) -> np.ndarray:
    """A column as float64 with NaN for missing values."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(table.column(name), pa.float64()).to_numpy(zero_copy_only=False)


@dataclass
class FeatureEncoding:
    """Numbers for the estimator: numeric features as they are, categories one-hot (levels from the data)."""

    numeric: list[str]
    levels: dict[str, list[str]]

    @classmethod
    def fit(cls, table: pa.Table) -> FeatureEncoding:
        numeric = [n for n in table.schema.names if n not in _KEYS and n not in _CATEGORICAL]
        names = table.schema.names
        levels = {c: sorted({str(v) for v in table.column(c).to_pylist()}) for c in _CATEGORICAL if c in names}
        return cls(numeric, levels)

    @property
    def columns(self) -> list[str]:
        return self.numeric + [f"{c}={level}" for c, ls in self.levels.items() for level in ls]

    def transform(self, table: pa.Table) -> np.ndarray:
        """The model's input; a feature missing from ``table`` (another feature definition) is all missing."""
        names = table.schema.names
        parts = [_numeric(table, n) if n in names else np.full(table.num_rows, np.nan) for n in self.numeric]
        for column, levels in self.levels.items():
            values = np.asarray([str(v) for v in table.column(column).to_pylist()]) if column in names else None
            parts += [np.zeros(table.num_rows) if values is None else (values == level).astype(float)
                      for level in levels]  # fmt: skip
        return np.column_stack(parts)


def _split(groups: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of (rest, held out) with every patient's rows on one side only."""
    from sklearn.model_selection import GroupShuffleSplit

    rest, held = next(GroupShuffleSplit(n_splits=1, test_size=share, random_state=seed).split(groups, groups=groups))
    return rest, held


def _temporal_split(table: pa.Table, groups: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Test on the latest ``share`` of index events; train on earlier events of patients not tested on."""
    import pyarrow.compute as pc

    times = pc.cast(table.column("index_time"), "int64").to_numpy(zero_copy_only=False)
    cutoff = np.quantile(times, 1 - share)
    test = np.flatnonzero(times >= cutoff)
    train = np.flatnonzero((times < cutoff) & ~np.isin(groups, groups[test]))
    return train, test


def _fit(kind: str, x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, seed: int) -> Any:
    if kind == "lightgbm":
        import lightgbm as lgb

        model = lgb.LGBMClassifier(
            n_estimators=5000, learning_rate=0.05, num_leaves=8, min_child_samples=50, subsample=0.8,
            subsample_freq=1, colsample_bytree=0.8, reg_lambda=5.0, random_state=seed, n_jobs=2, verbose=-1,
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
    return LinearModel.from_pipeline(model.fit(np.vstack([x, xv]), np.concatenate([y, yv])))


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


def _predictions(table: pa.Table, test: np.ndarray, p: np.ndarray, kind: str, *, run_id: str) -> pa.Table:
    import pyarrow as pa

    keep = [c for c in (*_KEYS, *_SUBGROUP_COLUMNS) if c in table.schema.names]
    rows = table.take(pa.array(test)).select(keep)
    return (
        rows.append_column("risk", pa.array(p, pa.float64()))
        .append_column("model", pa.array([kind] * len(p), pa.string()))
        .append_column("run_id", pa.array([run_id] * len(p), pa.string()))
    )


def _hash(data: Any) -> str:
    return hashlib.sha256(str(data).encode("utf-8")).hexdigest()


def _table_hash(table: pa.Table) -> str:
    """The training data's fingerprint: every value, batch by batch, in the table's (sorted) order."""
    digest = hashlib.sha256(str(table.schema).encode("utf-8"))
    for batch in table.to_batches(max_chunksize=10_000):
        digest.update(str(batch.to_pylist()).encode("utf-8"))
    return digest.hexdigest()
