"""Ground-truth labels agree with the encounters and conditions in the export."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from carelake.synth._risk import DIABETES, READMISSION, logistic


def _date(stamp: str) -> dt.date:
    return dt.date.fromisoformat(stamp[:10])


def _records(export) -> dict[str, set[str]]:
    """Each true patient's Patient ids: their own record plus any duplicate record."""
    records = {row["patient_id"]: {row["patient_id"]} for row in export.truth["patients"]}
    for row in export.truth["duplicates"]:
        records[row["patient_id"]].add(row["duplicate_patient_id"])
    return records


def test_every_readmission_label_matches_the_encounters(export) -> None:
    encounters = {e["id"]: e for e in export.resources["Encounter"]}
    records = _records(export)
    inpatient_starts: dict[str, list[dt.date]] = defaultdict(list)
    for encounter in export.resources["Encounter"]:
        if encounter["class"]["code"] == "IMP":
            inpatient_starts[encounter["subject"]["reference"][8:]].append(_date(encounter["period"]["start"]))
    rows = export.truth["readmissions"]
    assert rows
    positives = 0
    for row in rows:
        index = encounters[row["encounter_id"]]
        assert index["class"]["code"] == "IMP"
        assert index["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == row["discharge_disposition"]
        discharged = _date(index["period"]["end"])
        assert discharged == row["discharge_time"].date()
        assert 0.0 < row["probability"] < 1.0
        if not row["eligible"]:
            assert row["outcome"] is None and row["exclusion"]
            continue
        starts = [
            start
            for pid in records[row["patient_id"]]
            for start in inpatient_starts[pid]
            if 1 <= (start - discharged).days <= 30
        ]
        if row["outcome"] == 1:
            positives += 1
            again = encounters[row["readmission_encounter_id"]]
            assert again["class"]["code"] == "IMP"
            assert again["subject"]["reference"][8:] in records[row["patient_id"]]
            assert again["hospitalization"]["reAdmission"]["coding"][0]["code"] == "R"
            gap = (_date(again["period"]["start"]) - discharged).days
            assert 1 <= gap <= 30 and gap == row["days_to_readmission"]
            # the first admission in the window is the readmission (a readmission may itself be readmitted)
            assert min(starts) == _date(again["period"]["start"])
        else:
            assert row["outcome"] == 0 and row["readmission_encounter_id"] is None
            assert starts == []
    assert positives > 0


def test_readmission_probability_is_the_documented_model(export) -> None:
    for row in export.truth["readmissions"]:
        z = READMISSION.logit(
            age=row["age"],
            charlson=row["charlson"],
            prior_admissions=row["prior_admissions_12m"],
            ed_visits=row["ed_visits_6m"],
            length_of_stay=row["length_of_stay_days"],
            disposition=row["discharge_disposition"],
            active_medications=row["active_medications"],
            housing=row["housing_instability"],
            food=row["food_insecurity"],
            transport=row["transport_barrier"],
        )
        # age is stored rounded to 0.01 years
        assert abs(logistic(z) - row["probability"]) < 1e-3


def test_every_diabetes_onset_has_its_diagnosis_and_hba1c(export) -> None:
    records = _records(export)
    faulted = {row["resource_id"] for row in export.truth["faults"]}
    diabetes_conditions = defaultdict(list)
    for condition in export.resources["Condition"]:
        if any(c["code"] == "44054006" for c in condition["code"]["coding"]):
            if condition["id"] not in faulted:
                assert any(c["code"] == "E11.9" for c in condition["code"]["coding"])
            diabetes_conditions[condition["subject"]["reference"][8:]].append(condition)
    a1c_by_encounter = defaultdict(list)
    for observation in export.resources["Observation"]:
        if observation["code"]["coding"][0]["code"] == "4548-4":
            a1c_by_encounter[observation["encounter"]["reference"][10:]].append(observation["valueQuantity"]["value"])
    onsets = [
        row
        for row in export.truth["patients"]
        if row["diabetes_onset_date"] is not None and not row["diabetes_prevalent"]
    ]
    assert onsets
    for row in onsets:
        found = [
            c
            for pid in records[row["patient_id"]]
            for c in diabetes_conditions[pid]
            if c["onsetDateTime"][:10] == row["diabetes_onset_date"].isoformat()
        ]
        assert len(found) == 1, row["patient_id"]
        assert max(a1c_by_encounter[found[0]["encounter"]["reference"][10:]]) >= 6.5


def test_diabetes_index_rows_are_consistent(export) -> None:
    patients = {row["patient_id"]: row for row in export.truth["patients"]}
    rows = export.truth["diabetes"]
    assert rows
    for row in rows:
        assert 0.0 <= row["probability_5y"] < 1.0
        onset = patients[row["patient_id"]]["diabetes_onset_date"]
        if row["outcome_5y"] == 1:
            assert onset is not None and row["index_date"] < onset <= row["horizon_end"]
        elif row["outcome_5y"] == 0:
            assert row["followup_complete"]
            assert onset is None or onset > row["horizon_end"]
        else:
            assert not row["followup_complete"]
        hazard = logistic(
            DIABETES.logit(
                age=row["age"],
                bmi=row["bmi"],
                family_history=row["family_history"],
                hypertension=row["hypertension"],
                glucose=row["fasting_glucose_latent"],
                glucose_trend=row["glucose_trend_per_year"],
                activity=row["activity_min_week"],
                group=row["ethnicity_group"],
            )
        )
        assert 0.0 < hazard < 1.0


def test_labs_agree_with_diagnoses(export) -> None:
    """Diabetics have higher HbA1c than people without diabetes (before any injected fault)."""
    faulted = {row["resource_id"] for row in export.truth["faults"]}
    diabetic = {
        pid
        for row in export.truth["patients"]
        if row["diabetes_onset_date"] is not None
        for pid in (row["patient_id"], row["duplicate_patient_id"])
        if pid
    }
    values: dict[bool, list[float]] = {True: [], False: []}
    for observation in export.resources["Observation"]:
        if observation["code"]["coding"][0]["code"] == "4548-4" and observation["id"] not in faulted:
            values[observation["subject"]["reference"][8:] in diabetic].append(observation["valueQuantity"]["value"])
    assert values[True] and values[False]
    assert sum(values[True]) / len(values[True]) > sum(values[False]) / len(values[False]) + 1.0
    assert max(values[False]) < 6.5
