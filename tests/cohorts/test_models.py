"""Risk models: patient-grouped split, reproducible artefacts, honest metrics, the clinical score beside them."""

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
from carelake.models import evaluate, train_model
from carelake.models._train import _split


@pytest.fixture(scope="module")
def trained(viewed_lake: Callable[[int, int], tuple[Path, cl.Lake, str]]) -> tuple[cl.Lake, object]:
    _, lake, as_of = viewed_lake(700, 31)
    build_cohort("readmission-30d", lake=lake, as_of=as_of)
    build_features("readmission-30d", lake=lake)
    return lake, train_model("readmission-30d", lake=lake)


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
    assert m["auroc"] > 0.6 and result.baseline["name"] == "LACE index" and 0.5 < result.baseline["auroc"] < 1
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
