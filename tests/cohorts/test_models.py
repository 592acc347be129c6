"""Risk models: patient-grouped split, reproducible artefacts, honest metrics, the clinical score beside them,
explanations, fairness, the oracle comparison, and the worklist."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import carelake as cl
from carelake.cli import main
from carelake.cohorts import build_cohort
from carelake.errors import ConfigError, LakeError
from carelake.features import build_features
from carelake.models import evaluate, evaluate_model, load_model, score_model, train_model
from carelake.models._evaluate import calibration_curve, decision_curve, subgroup_metrics, threshold_table
from carelake.models._explain import contributions
from carelake.models._train import _split


@pytest.fixture(scope="module")
def built(viewed_lake: Callable[[int, int], tuple[Path, cl.Lake, str]]) -> tuple[Path, cl.Lake, object]:
    root, lake, as_of = viewed_lake(2000, 31)
    build_cohort("readmission-30d", lake=lake, as_of=as_of)
    build_features("readmission-30d", lake=lake)
    return root, lake, train_model("readmission-30d", lake=lake)


@pytest.fixture(scope="module")
def trained(built: tuple[Path, cl.Lake, object]) -> tuple[cl.Lake, object]:
    return built[1], built[2]


def test_held_out_patients_never_trained_on_and_metrics_are_sound(trained: tuple[cl.Lake, object]) -> None:
    lake, result = trained
    predictions = lake.sql("SELECT * FROM predictions_readmission_30d").to_pylist()
    assert len(predictions) == result.test_rows and result.test_patients == len({p["patient_id"] for p in predictions})
    features = lake.sql("SELECT patient_id FROM features_readmission_30d WHERE outcome IS NOT NULL").to_pylist()
    assert result.train_rows + result.test_rows == len(features)
    test_patients = {p["patient_id"] for p in predictions}
    train_patients = {f["patient_id"] for f in features} - test_patients
    assert test_patients and train_patients and not test_patients & train_patients
    m = result.metrics
    assert m["auroc_ci"][0] <= m["auroc"] <= m["auroc_ci"][1] and 0 < m["brier"] < 0.25
    # The generator's readmission risk is learnable: better than chance on held-out patients.
    assert m["auroc_ci"][0] > 0.5 and result.baseline["name"] == "LACE index" and 0.5 < result.baseline["auroc"] < 1
    assert all(0 <= p["risk"] <= 1 for p in predictions)
    card = json.loads((Path(result.model_dir) / "model.json").read_text())
    assert card["data_hash"] == result.data_hash and (Path(result.model_dir) / "model.txt").exists()


def test_same_seed_same_model_and_logistic_regression_too(trained: tuple[cl.Lake, object]) -> None:
    lake, first = trained
    again = train_model("readmission-30d", lake=lake)
    assert again.metrics == first.metrics and again.data_hash == first.data_hash
    assert again.config_hash == first.config_hash and again.model_dir == first.model_dir
    logistic = train_model("readmission-30d", lake=lake, kind="logistic")
    assert logistic.data_hash == first.data_hash and logistic.config_hash != first.config_hash
    assert 0 < logistic.metrics["auroc"] < 1


def test_split_keeps_every_patient_on_one_side() -> None:
    groups = np.asarray([f"p{i % 37}" for i in range(500)])
    rest, held = _split(groups, 0.25, 3)
    assert not set(groups[rest]) & set(groups[held]) and len(rest) + len(held) == 500


def test_evaluate_on_a_known_case() -> None:
    y = np.asarray([0, 0, 1, 1] * 50)
    perfect = evaluate(y, np.where(y == 1, 0.9, 0.1))
    assert perfect["auroc"] == 1.0 and perfect["auroc_ci"] == [1.0, 1.0] and perfect["brier"] == pytest.approx(0.01)


def test_errors_name_the_fix(trained: tuple[cl.Lake, object], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    lake, _ = trained
    with pytest.raises(ConfigError, match="unknown model kind"):
        train_model("readmission-30d", lake=lake, kind="forest")  # type: ignore[arg-type]
    with pytest.raises(LakeError, match="carelake features build diabetes-onset"):
        train_model("diabetes-onset", lake=lake)
    with pytest.raises(SystemExit) as done:
        main(["--lake", str(lake.root), "model", "train", "readmission-30d", "--json"])
    assert done.value.code in (0, None)
    assert json.loads(capsys.readouterr().out)["metrics"]["auroc"] > 0.5


def test_model_folder_holds_text_artefacts_evaluation_and_a_tripod_card(trained: tuple[cl.Lake, object]) -> None:
    _, result = trained
    folder = Path(result.model_dir)
    names = {p.name for p in folder.iterdir()}
    assert {"model.txt", "model.json", "model-card.html", "test-predictions.parquet", "plotly.min.js"} <= names
    assert not any(n.endswith((".pkl", ".pickle", ".joblib")) for n in names)  # nothing that runs code on load
    card = (folder / "model-card.html").read_text()
    for heading in (
        "Intended use",
        "Data",
        "Cohort and outcome",
        "Predictors",
        "Model development",
        "Performance",
        "Limitations",
        "not clinical evidence",
        "Calibration",
        "Decision curve",
        "equal opportunity",
    ):
        assert heading in card, heading
    evaluation = result.evaluation
    assert {r["attribute"] for r in evaluation["subgroups"]} == {"sex", "race", "ethnicity", "age band"}
    assert any("withheld" in r for r in evaluation["subgroups"])  # 2,000 patients: some groups are too small
    assert [r["alert_share"] for r in evaluation["thresholds"]] == [0.05, 0.1, 0.2, 0.3, 0.5]
    assert 0 <= result.metrics["eavg"] <= result.metrics["e90"] <= 1
    assert result.top_features and result.top_features[0][1] >= result.top_features[-1][1]


def test_contributions_add_up_to_the_models_logit(trained: tuple[cl.Lake, object]) -> None:
    lake, result = trained
    loaded = load_model(lake, task="readmission-30d")
    assert loaded.folder == Path(result.model_dir) and loaded.kind == "lightgbm"
    from carelake.models._train import FeatureEncoding

    table = lake.sql("SELECT * FROM features_readmission_30d LIMIT 50")
    x = FeatureEncoding(**loaded.card["encoding"]).transform(table)
    p = loaded.model.predict_proba(x)[:, 1]
    total = contributions(loaded.model, "lightgbm", x).sum(axis=1)
    assert np.allclose(1 / (1 + np.exp(-total)), p)
    logistic = train_model("readmission-30d", lake=lake, kind="logistic")
    linear = load_model(lake, model=Path(logistic.model_dir).name)
    q = linear.model.predict_proba(x)[:, 1]
    assert np.allclose(1 / (1 + np.exp(-contributions(linear.model, "logistic", x).sum(axis=1))), q)
    assert (Path(logistic.model_dir) / "model-logistic.json").exists()


def test_worklist_ranks_the_patients_at_risk_now_with_reasons(trained: tuple[cl.Lake, object]) -> None:
    lake, _ = trained
    lightgbm = next(p for p in (lake.root / "gold" / "models").iterdir() if "-lightgbm-" in p.name)
    result = score_model("readmission-30d", lake=lake, model=lightgbm.name)
    open_events = lake.sql("SELECT * FROM cohort_readmission_30d WHERE outcome IS NULL").to_pylist()
    risk = lake.sql("SELECT * FROM risk_readmission_30d").to_pylist()
    worklist = lake.sql("SELECT * FROM worklist_readmission_30d ORDER BY rank").to_pylist()
    # Exactly the open index events are scored; one worklist row per patient, their latest, riskiest first.
    assert {r["index_event_id"] for r in risk} == {e["index_event_id"] for e in open_events} and risk
    assert len(worklist) == len({e["patient_id"] for e in open_events}) == result.patients
    latest = {}
    for e in open_events:
        if e["patient_id"] not in latest or e["index_time"] > latest[e["patient_id"]]["index_time"]:
            latest[e["patient_id"]] = e
    assert {w["index_event_id"] for w in worklist} == {e["index_event_id"] for e in latest.values()}
    assert [w["risk"] for w in worklist] == sorted((w["risk"] for w in worklist), reverse=True)
    assert [w["rank"] for w in worklist] == list(range(1, len(worklist) + 1))
    assert all(w["reasons"] and "race" not in w["reasons"] for w in worklist)
    assert {w["risk_band"] for w in worklist} <= {"high", "elevated", "usual"}
    assert result.top[0]["patient_id"] == worklist[0]["patient_id"]
    # A re-run replaces both tables rather than appending.
    score_model("readmission-30d", lake=lake, model=lightgbm.name)
    assert lake.sql("SELECT count(*) AS n FROM risk_readmission_30d").column("n")[0].as_py() == len(risk)


def test_oracle_auroc_from_the_generators_truth(built: tuple[Path, cl.Lake, object], tmp_path: Path) -> None:
    root, lake, result = built
    truth = root / "fhir" / "ground_truth"
    lightgbm = Path(result.model_dir).name
    evaluated = evaluate_model("readmission-30d", lake=lake, model=lightgbm, truth=truth)
    oracle = evaluated.evaluation["oracle"]
    assert oracle["rows"] == result.test_rows and oracle["rows_without_truth"] == 0
    assert oracle["model_auroc"] == pytest.approx(result.metrics["auroc"], abs=1e-4)
    # The true probabilities rank the test rows at least about as well as a model trained on 2,000 patients.
    assert 0.6 < oracle["oracle_auroc"] <= 1 and oracle["gap"] > -0.05
    assert evaluated.metrics == result.metrics  # re-evaluated from the folder: the same figures
    with pytest.raises(cl.errors.InputError, match="pass --key"):
        evaluate_model("readmission-30d", lake=lake, model=lightgbm, truth=_renamed_truth(truth, tmp_path))


def _renamed_truth(truth: Path, folder: Path) -> Path:
    """The truth with every id changed, as a de-identified lake would see it without the key."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(truth / "readmissions.parquet")
    ids = pa.array(["x" + i for i in table.column("encounter_id").to_pylist()])
    pq.write_table(table.set_column(0, "encounter_id", ids), folder / "readmissions.parquet")
    return folder


def test_cli_evaluate_and_score(built: tuple[Path, cl.Lake, object], capsys: pytest.CaptureFixture) -> None:
    root, lake, result = built
    model = Path(result.model_dir).name
    truth = str(root / "fhir" / "ground_truth")
    for args in (["evaluate", "--model", model, "--truth", truth], ["score", "--model", model, "--top", "5"]):
        with pytest.raises(SystemExit) as done:
            main(["--lake", str(lake.root), "model", *args, "--json"])
        assert done.value.code in (0, None)
        captured = capsys.readouterr()
        summary = json.loads(captured.out)
        if args[0] == "evaluate":
            assert summary["evaluation"]["oracle"]["oracle_auroc"] > 0.5 and "oracle" in captured.err
        else:
            assert len(summary["top"]) == 5 and "worklist_readmission_30d" in captured.err


def test_metric_functions_on_known_cases() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.6, 20_000)
    y = (rng.uniform(size=p.size) < p).astype(int)  # perfectly calibrated by construction
    curve = calibration_curve(y, p)
    assert curve["eavg"] < 0.02 and all(abs(b["observed"] - b["predicted"]) < 0.05 for b in curve["bins"])
    metrics = evaluate(y, p)
    assert metrics["calibration_slope"] == pytest.approx(1, abs=0.1) and abs(metrics["calibration_intercept"]) < 0.1
    # Net benefit at threshold t: TP/n - FP/n * t/(1-t); treating everyone: prevalence - (1-prevalence) t/(1-t).
    row = decision_curve(y, p, thresholds=np.asarray([0.2]))[0]
    flagged = p >= 0.2
    assert row["model"] == pytest.approx(np.mean(flagged & (y == 1)) - np.mean(flagged & (y == 0)) * 0.25, abs=1e-5)
    assert row["treat_all"] == pytest.approx(y.mean() - (1 - y.mean()) * 0.25, abs=1e-5)
    table = threshold_table(y, p)
    assert [r["alerts_per_100"] for r in table] == pytest.approx([5, 10, 20, 30, 50], abs=0.2)
    assert table[0]["ppv"] > table[-1]["ppv"] and table[0]["sensitivity"] < table[-1]["sensitivity"]


def test_subgroups_withhold_small_groups_and_measure_gaps() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.5, 3000)
    y = (rng.uniform(size=p.size) < p).astype(int)
    group = np.where(np.arange(p.size) < 40, "tiny", np.where(np.arange(p.size) % 2, "a", "b"))
    p_shifted = np.where(group == "b", p * 0.5, p)  # the model under-predicts group b
    rows, fairness = subgroup_metrics(y, p_shifted, {"group": group}, threshold=0.3)
    by_group = {r["group"]: r for r in rows}
    assert "withheld" in by_group["tiny"] and "auroc" not in by_group["tiny"]
    assert by_group["b"]["observed_expected"] > 1.5 > by_group["a"]["observed_expected"]
    assert by_group["b"]["tpr"] < by_group["a"]["tpr"]
    assert fairness[0]["groups_judged"] == 2
    assert fairness[0]["equal_opportunity_difference"] == pytest.approx(by_group["a"]["tpr"] - by_group["b"]["tpr"])


def test_reasons_read_as_plain_language() -> None:
    from carelake.features._describe import describe, family

    assert describe("inpatient_admissions_365d", 3) == "3 inpatient admissions in the last 365 days"
    assert describe("ed_visits_30d", 1) == "1 emergency department visit in the last 30 days"
    assert describe("hba1c_last", 7.2) == "latest HbA1c 7.2 %"
    assert describe("egfr_min", None) == "no eGFR on record"
    assert describe("housing_instability", 1) == "housing instability recorded"
    assert describe("charlson_index", 4) == "comorbidity (Charlson) index 4"
    assert describe("conditions_all", 12) == "12 conditions on record"
    assert {family(c) for c in ("weight_last", "weight_max", "weight_trend")} == {"weight"}
    assert [family(c) for c in ("ed_visits_30d", "ed_visits_all", "sex=female", "age")] == [
        "ed_visits", "ed_visits", "sex", "age"]  # fmt: skip


@pytest.mark.slow
def test_a_model_trained_on_synthetic_data_scores_the_synthea_corpus(
    built: tuple[Path, cl.Lake, object], testdata: Path, tmp_path: Path
) -> None:
    """The model folder travels: trained on the synthetic lake, it scores Synthea's discharges in another lake."""
    from carelake.fhir import materialize_views, standard_views

    _, _, result = built
    lake = cl.open_lake(tmp_path / "synthea")
    cl.ingest_fhir([testdata / "synthea-fhir-r4"], lake=lake)
    materialize_views(standard_views(), lake=lake)
    build_cohort("readmission-30d", lake=lake)
    build_features("readmission-30d", lake=lake)
    scored = score_model(lake=lake, model=result.model_dir, include_labelled=True)
    risk = lake.sql("SELECT * FROM risk_readmission_30d").to_pylist()
    features = lake.sql("SELECT count(*) AS n FROM features_readmission_30d").column("n")[0].as_py()
    assert scored.scored == len(risk) == features > 0 and scored.model == Path(result.model_dir).name
    assert all(0 < r["risk"] < 1 and r["risk_band"] in {"high", "elevated", "usual"} for r in risk)
    assert any(r["reasons"] for r in risk)
