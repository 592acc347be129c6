"""Features: computed in SQL, equal on both engines, checked by hand, and blind to anything after the index."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

import carelake as cl
from carelake.cohorts import build_cohort
from carelake.errors import ConfigError, LakeError
from carelake.features import build_features, load_spec
from carelake.fhir import materialize_views, standard_views


@pytest.fixture(scope="module")
def built(viewed_lake: Callable[[int, int], tuple[Path, cl.Lake, str]]) -> tuple[Path, cl.Lake, str]:
    root, built_lake, as_of = viewed_lake(250, 8)
    build_cohort("readmission-30d", lake=built_lake, as_of=as_of)
    return root, built_lake, as_of


def _features(lake: cl.Lake) -> dict[str, dict[str, object]]:
    rows = lake.sql("SELECT * FROM features_readmission_30d").to_pylist()
    return {r["index_event_id"]: {k: v for k, v in r.items() if k != "outcome"} for r in rows}


def _schema(lake: cl.Lake) -> dict[str, str]:
    import pyarrow.parquet as pq

    return {f.name: str(f.type) for f in pq.read_schema(lake.files("features_readmission_30d")[0])}


def test_one_row_per_index_event_with_the_default_features(built: tuple[Path, cl.Lake, str]) -> None:
    _, lake, _ = built
    result = build_features("readmission-30d", lake=lake)
    cohort = lake.sql("SELECT count(*) AS n FROM cohort_readmission_30d").column("n")[0].as_py()
    assert result.rows == cohort > 20 and len(result.features) > 90
    for name in ("age", "sex", "inpatient_admissions_365d", "ed_visits_180d", "hba1c_last", "charlson_index",
                 "length_of_stay_days", "heart_failure", "conditions_all"):  # fmt: skip
        assert name in result.features
    label = lake.sql("SELECT count(*) AS n FROM features_readmission_30d WHERE outcome IS NULL").column("n")[0]
    assert label.as_py() == 0


def test_features_match_a_hand_count_from_the_events(built: tuple[Path, cl.Lake, str]) -> None:
    _, lake, _ = built
    build_features("readmission-30d", lake=lake)
    features = _features(lake)
    row = max(features.values(), key=lambda r: (r["inpatient_admissions_all"], r["index_event_id"]))
    index = row["index_time"]
    encounters = lake.sql(f"""
        SELECT id, class_code, start FROM encounters WHERE patient_id = '{row["patient_id"]}'""").to_pylist()
    prior = [e for e in encounters if e["class_code"] == "IMP" and e["id"] != row["index_event_id"]
             and dt.datetime.fromisoformat(e["start"]) <= index]  # fmt: skip
    assert row["inpatient_admissions_all"] == len(prior) > 0
    recent = [e for e in prior if (index.date() - dt.datetime.fromisoformat(e["start"]).date()).days <= 365]
    assert row["inpatient_admissions_365d"] == len(recent)
    labs = lake.sql(f"""
        SELECT value, effective FROM observations
        WHERE patient_id = '{row["patient_id"]}' AND loinc_code = '8480-6' AND value IS NOT NULL""").to_pylist()
    before = sorted((dt.datetime.fromisoformat(o["effective"]), o["value"]) for o in labs
                    if dt.datetime.fromisoformat(o["effective"]) <= index
                    and (index.date() - dt.datetime.fromisoformat(o["effective"]).date()).days <= 365)  # fmt: skip
    if before:
        assert row["systolic_bp_last"] == before[-1][1] and row["systolic_bp_max"] == max(v for _, v in before)


def test_events_after_the_index_change_no_feature(built: tuple[Path, cl.Lake, str], tmp_path: Path) -> None:
    _, lake, as_of = built
    build_features("readmission-30d", lake=lake)
    before = _features(lake)
    # Plant, after each patient's last index event, a diagnosis, a lab and a prescription, 1 hour and 20 days on.
    cohort = lake.sql("""
        SELECT patient_id, max(index_time) AS index_time FROM cohort_readmission_30d GROUP BY 1""").to_pylist()
    planted = []
    for i, row in enumerate(cohort):
        for hours in (1, 24 * 20):
            when = (row["index_time"] + dt.timedelta(hours=hours)).isoformat()
            subject = {"reference": f"Patient/{row['patient_id']}"}
            planted += [
                {"resourceType": "Condition", "id": f"future-c-{i}-{hours}", "subject": subject, "onsetDateTime": when,
                 "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I50.9"}]}},
                {"resourceType": "Observation", "id": f"future-o-{i}-{hours}", "status": "final", "subject": subject,
                 "effectiveDateTime": when, "valueQuantity": {"value": 999.0, "unit": "mm[Hg]"},
                 "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}},
                {"resourceType": "MedicationRequest", "id": f"future-m-{i}-{hours}", "status": "active",
                 "intent": "order", "subject": subject, "authoredOn": when,
                 "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                           "code": "860975"}]}},
            ]  # fmt: skip
    (tmp_path / "future.ndjson").write_bytes(b"\n".join(orjson.dumps(r) for r in planted) + b"\n")
    cl.ingest_fhir([tmp_path / "future.ndjson"], lake=lake)
    materialize_views(standard_views(), lake=lake)
    build_cohort("readmission-30d", lake=lake, as_of=as_of)
    build_features("readmission-30d", lake=lake)
    after = _features(lake)
    assert after.keys() == before.keys()
    changed = sorted({c for k in before for c in before[k] if before[k][c] != after[k][c]})
    assert not changed, f"features changed after future events were added: {changed}"


def test_bad_definitions_and_missing_cohorts_are_named(built: tuple[Path, cl.Lake, str]) -> None:
    _, lake, _ = built
    with pytest.raises(ConfigError, match="unexpected"):
        load_spec({"windows": [30], "colour": "red"})
    with pytest.raises(ConfigError, match="not a valid feature name"):
        load_spec({"flags": {"Bad Name": ["E11"]}})
    with pytest.raises(LakeError, match="carelake cohort build diabetes-onset"):
        build_features("diabetes-onset", lake=lake)


def _summary(lake: cl.Lake) -> dict:
    return next(lake.manifests("features-build"))["summary"]


def _new_day(lake: cl.Lake, folder: Path, as_of: str, *, materialize: bool = True) -> str:
    """A systolic blood pressure for one cohort patient, an hour before their first index event; its patient."""
    first = lake.sql("SELECT patient_id, min(index_time) AS t FROM cohort_readmission_30d GROUP BY 1 ORDER BY 1")
    row = first.to_pylist()[0]
    lab = {"resourceType": "Observation", "id": f"day2-bp-{folder.name}", "status": "final",
           "subject": {"reference": f"Patient/{row['patient_id']}"},
           "effectiveDateTime": (row["t"] - dt.timedelta(hours=1)).isoformat(),
           "valueQuantity": {"value": 201.0, "unit": "mm[Hg]"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}}  # fmt: skip
    folder.mkdir()
    (folder / "Observation.ndjson").write_bytes(orjson.dumps(lab) + b"\n")
    cl.ingest_fhir([folder / "Observation.ndjson"], lake=lake)
    if materialize:
        materialize_views(standard_views(), lake=lake)
    build_cohort("readmission-30d", lake=lake, as_of=as_of)
    return row["patient_id"]


def test_a_new_day_computes_only_the_patients_it_touched(built: tuple[Path, cl.Lake, str], tmp_path: Path) -> None:
    _, lake, as_of = built
    first = build_features("readmission-30d", lake=lake, full=True)
    assert _summary(lake)["index_events_computed"] == first.rows
    build_features("readmission-30d", lake=lake)  # nothing new: nothing computed
    assert _summary(lake)["index_events_computed"] == 0

    # Views not refreshed after an ingestion: everything is computed, and the next build cannot trust this one.
    _new_day(lake, tmp_path / "stale", as_of, materialize=False)
    assert build_features("readmission-30d", lake=lake).rows == _summary(lake)["index_events_computed"]
    materialize_views(standard_views(), lake=lake)
    assert build_features("readmission-30d", lake=lake).rows == _summary(lake)["index_events_computed"]

    before = _features(lake)
    patient = _new_day(lake, tmp_path / "fresh", as_of)
    result = build_features("readmission-30d", lake=lake)
    theirs = {k for k, r in before.items() if r["patient_id"] == patient}
    assert _summary(lake)["index_events_computed"] == len(theirs) < result.rows  # only the touched patient
    incremental = lake.sql("SELECT * FROM features_readmission_30d").to_pylist()
    assert {k for k, r in _features(lake).items() if r != before[k]} <= theirs
    assert any(_features(lake)[k]["systolic_bp_max"] == 201.0 for k in theirs)
    build_features("readmission-30d", lake=lake, full=True)
    assert lake.sql("SELECT * FROM features_readmission_30d").to_pylist() == incremental  # order and labels too


def test_a_new_day_of_synthea_keeps_the_patients_it_did_not_touch(tmp_path: Path, testdata: Path) -> None:
    """On a corpus we did not generate: the bulk export, then the transaction bundles as a new day."""
    synthea = testdata / "synthea-fhir-r4"
    lake = cl.open_lake(tmp_path / "lake")
    for day in ("bulk-ndjson-10-patients", "transaction-bundles"):
        cl.ingest_fhir([synthea / day], lake=lake)
        materialize_views(standard_views(), lake=lake)
        build_cohort("diabetes-onset", lake=lake, as_of="2026-11-28")
        result = build_features("diabetes-onset", lake=lake)
    assert 0 < _summary(lake)["index_events_computed"] < result.rows  # the bundles' patients only
    incremental = lake.sql("SELECT * FROM features_diabetes_onset").to_pylist()
    build_features("diabetes-onset", lake=lake, full=True)
    assert lake.sql("SELECT * FROM features_diabetes_onset").to_pylist() == incremental


@pytest.mark.spark
def test_spark_computes_the_same_features(built: tuple[Path, cl.Lake, str], tmp_path: Path) -> None:
    _, lake, as_of = built
    build_features("readmission-30d", lake=lake)
    duck, duck_schema = _features(lake), _schema(lake)
    build_features("readmission-30d", lake=lake, engine="spark", full=True)
    spark = _features(lake)
    assert _schema(lake) == duck_schema  # the same column types too: counts are BIGINT on both
    _assert_equal(spark, duck)
    # A new day on Spark keeps what it can and equals DuckDB computing everything.
    _new_day(lake, tmp_path / "day2", as_of)
    build_features("readmission-30d", lake=lake, engine="spark")
    assert 0 < _summary(lake)["index_events_computed"] < len(duck)
    spark = _features(lake)
    build_features("readmission-30d", lake=lake, full=True)
    _assert_equal(spark, _features(lake))


def _assert_equal(spark: dict[str, dict[str, object]], duck: dict[str, dict[str, object]]) -> None:
    assert spark.keys() == duck.keys()
    for key, row in duck.items():
        for name, value in row.items():
            other = spark[key][name]
            if isinstance(value, float) and isinstance(other, float):
                assert other == pytest.approx(value, rel=1e-9), name
            else:
                assert other == value, name


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def test_a_cohort_built_a_range_of_patients_at_a_time_is_the_same_table(
    built: tuple[Path, cl.Lake, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str
) -> None:
    """Large cohorts are computed a range of patients per query, to stay within memory; nothing else changes."""
    _, lake, as_of = built

    def table() -> list[dict[str, object]]:  # the files in catalog order, as training reads them
        import pyarrow.parquet as pq

        return pq.ParquetDataset(lake.files("features_readmission_30d")).read().to_pylist()

    build_features("readmission-30d", lake=lake, full=True)
    whole = table()
    monkeypatch.setattr("carelake.features._build.INDEX_EVENTS_PER_PART", 7)
    monkeypatch.setattr("carelake.features._build.SORT_EVENTS_ABOVE_RANGES", 1)  # the ranges read sorted events
    build_features("readmission-30d", lake=lake, engine=engine, full=True)
    assert len(whole) > 30 and len(lake.files("features_readmission_30d")) >= 4  # a file per range at least
    ranged = table()
    assert [r["index_event_id"] for r in ranged] == [r["index_event_id"] for r in whole]  # the same order
    _assert_equal(*({r["index_event_id"]: r for r in rows} for rows in (ranged, whole)))
    # A new day in ranges too: the kept rows of each range join its computed ones, in order.
    _new_day(lake, tmp_path / f"ranges-{engine}", as_of)
    monkeypatch.setattr("carelake.features._build.SORT_EVENTS_ABOVE_RANGES", 10**6)  # and here the view itself
    build_features("readmission-30d", lake=lake, engine=engine)
    assert 0 < _summary(lake)["index_events_computed"] < len(whole)
    incremental = table()
    monkeypatch.undo()
    build_features("readmission-30d", lake=lake, full=True)
    full = table()
    assert [r["index_event_id"] for r in incremental] == [r["index_event_id"] for r in full]
    _assert_equal(*({r["index_event_id"]: r for r in rows} for rows in (incremental, full)))
