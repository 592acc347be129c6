"""Duplicate patient records and research opt-outs are where the ground truth says."""

from __future__ import annotations

from collections import Counter


def test_duplicate_pairs_are_two_patient_records_of_one_person(export) -> None:
    patients = {p["id"]: p for p in export.resources["Patient"]}
    pairs = export.truth["duplicates"]
    assert pairs
    subjects = Counter(e["subject"]["reference"][8:] for e in export.resources["Encounter"])
    with_encounters = 0
    for pair in pairs:
        first, second = patients[pair["patient_id"]], patients[pair["duplicate_patient_id"]]
        mrn = {
            p["id"]: next(i for i in p["identifier"] if i["type"]["coding"][0]["code"] == "MR") for p in (first, second)
        }
        assert mrn[first["id"]]["system"] != mrn[second["id"]]["system"]
        assert first["gender"] == second["gender"]
        assert pair["changes"]
        with_encounters += subjects[second["id"]] > 0
    assert with_encounters >= len(pairs) * 0.6
    expected = len(export.truth["patients"]) + len(pairs)
    assert len(patients) == expected
    linked = {
        row["patient_id"]: row["duplicate_patient_id"]
        for row in export.truth["patients"]
        if row["duplicate_patient_id"]
    }
    assert linked == {pair["patient_id"]: pair["duplicate_patient_id"] for pair in pairs}


def test_research_opt_outs_are_deny_consents(export) -> None:
    consents = export.resources.get("Consent", [])
    opted_out = {row["patient_id"] for row in export.truth["patients"] if row["research_opt_out"]}
    assert {c["patient"]["reference"][8:] for c in consents} == opted_out
    for consent in consents:
        assert consent["status"] == "active"
        assert consent["scope"]["coding"][0]["code"] == "research"
        assert consent["provision"]["type"] == "deny"
