"""Benchmark model training at scale: 1 M index events x ~100 features, carelake's pipeline beside plain sklearn.

    python bench/train.py                    # 1,000,000 rows (target: <= 2 minutes on 2 cores)
    python bench/train.py --rows 200000      # a quicker look

The feature table has the shape ``carelake features build`` writes (keys, outcome, demographics, discharge
disposition, 100 numeric features with missing labs), about three index events per patient, and an outcome
drawn from a known non-linear risk. Timed in a fresh interpreter: ``carelake.models.fit`` end to end (patient-
grouped split, LightGBM with early stopping, the full evaluation with bootstrap CIs, calibration, decision
curve, subgroups, SHAP importance on a sample), and the peer, a plain scikit-learn pipeline
(HistGradientBoostingClassifier with its own early stopping, AUROC only) on the same split. Prints time, rows/s,
peak RSS of each, their AUROCs and the ratio; writes bench/out/train.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _measure import measure  # bench/ is on sys.path when a benchmark runs

HERE = Path(__file__).resolve().parent

TABLE = """
import numpy as np, pyarrow as pa
rng = np.random.default_rng({seed})
n = {rows}
patients = rng.integers(0, max(n // 3, 1), n)
columns = {{"index_event_id": pa.array([f"e{{i}}" for i in range(n)]),
           "patient_id": pa.array([f"p{{i}}" for i in patients]),
           "index_time": pa.array(np.datetime64("2020-01-01") + rng.integers(0, 1500, n).astype("timedelta64[D]"))}}
age = rng.normal(62, 15, n).clip(18, 100)
numeric = {{"age": age, "length_of_stay_days": rng.poisson(4, n).astype(float),
           "charlson_index": rng.poisson(1.5, n).astype(float)}}
for k in range(97):
    values = rng.poisson(1 + k % 5, n).astype(float) if k % 2 else rng.normal(100 + k, 15, n)
    if k % 3 == 0:
        values[rng.uniform(size=n) < 0.4] = np.nan  # labs not measured
    numeric[f"f{{k:02d}}"] = values
z = (-2.2 + 0.02 * (age - 62) + 0.25 * numeric["charlson_index"] + 0.3 * np.log1p(numeric["length_of_stay_days"])
     + 0.15 * numeric["f01"] - 0.01 * np.nan_to_num(numeric["f00"] - 100) ** 2 / 15
     + 0.4 * (np.nan_to_num(numeric["f03"], nan=103) > 110) + 0.2 * numeric["f05"] * (age > 70))
outcome = rng.uniform(size=n) < 1 / (1 + np.exp(-z))
columns["outcome"] = pa.array(outcome)
for name, values in numeric.items():
    columns[name] = pa.array(values, from_pandas=True)
columns["sex"] = pa.array(rng.choice(["female", "male"], n))
columns["race"] = pa.array(rng.choice(["white", "black", "asian", "other"], n, p=[0.6, 0.2, 0.1, 0.1]))
columns["ethnicity"] = pa.array(rng.choice(["hispanic", "not-hispanic"], n, p=[0.2, 0.8]))
columns["discharge_disposition"] = pa.array(rng.choice(["home", "snf", "rehab"], n, p=[0.8, 0.15, 0.05]))
table = pa.table(columns)
"""

CARELAKE = """
import json, time
from carelake.models import fit
start = time.perf_counter()
fitted = fit(table, task="bench", kind="lightgbm", seed=7)
seconds = time.perf_counter() - start
m = fitted.evaluation.metrics
print(json.dumps({"seconds": seconds, "features": len(fitted.matrix.columns), "auroc": m["auroc"],
                  "calibration_slope": m["calibration_slope"], "trees": int(fitted.model.best_iteration_),
                  "train_rows": len(fitted.train), "test_rows": len(fitted.test)}))
"""

PEER = """
import json, time
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupShuffleSplit
start = time.perf_counter()
frame = table.drop_columns(["index_event_id", "index_time"]).to_pandas()
frame = frame[frame["outcome"].notna()]  # events whose outcome is not known yet
y = frame.pop("outcome").astype(int).to_numpy()
groups = frame.pop("patient_id").to_numpy()
for c in frame.select_dtypes(include=["object", "string"]).columns:
    frame[c] = frame[c].astype("category")
train, test = next(GroupShuffleSplit(n_splits=1, test_size=0.25, random_state=7).split(frame, groups=groups))
model = HistGradientBoostingClassifier(categorical_features="from_dtype", early_stopping=True, random_state=7)
model.fit(frame.iloc[train], y[train])
auroc = roc_auc_score(y[test], model.predict_proba(frame.iloc[test])[:, 1])
print(json.dumps({"seconds": time.perf_counter() - start, "auroc": auroc, "trees": int(model.n_iter_)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="index events in the feature table")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    table = TABLE.format(rows=args.rows, seed=args.seed)
    _, rss, stdout = measure(table + CARELAKE)
    ours = json.loads(stdout) | {"peak_rss_mib": round(rss)}
    _, peer_rss, peer_stdout = measure(table + PEER)
    peer = json.loads(peer_stdout) | {"peak_rss_mib": round(peer_rss)}
    print(f"{args.rows:,} index events x {ours['features']} features (seed {args.seed})")
    print(
        f"carelake fit (split, LightGBM + early stopping, full evaluation): {ours['seconds']:.1f} s, "
        f"{args.rows / ours['seconds']:,.0f} rows/s, peak {ours['peak_rss_mib']:,} MiB, AUROC {ours['auroc']:.4f}, "
        f"calibration slope {ours['calibration_slope']:.2f}, {ours['trees']} trees"
    )
    print(
        f"plain scikit-learn HistGradientBoosting (fit + AUROC only): {peer['seconds']:.1f} s, "
        f"{args.rows / peer['seconds']:,.0f} rows/s, peak {peer['peak_rss_mib']:,} MiB, AUROC {peer['auroc']:.4f}"
    )
    print(f"ratio carelake / peer time: {ours['seconds'] / peer['seconds']:.2f}; target: carelake <= 120 s")
    result = {"rows": args.rows, "seed": args.seed, "carelake": ours, "peer": peer}
    (args.out / "train.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
