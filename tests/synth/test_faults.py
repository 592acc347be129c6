"""Every injected fault is listed, and every listed fault is really in the export."""

from __future__ import annotations

import datetime as dt
from collections import Counter

from carelake.quality._codes import loinc_is_valid
from carelake.synth._faults import FAULT_KINDS, FAULTABLE_TYPES, ICD10_FORMAT, UNIT_MIXUPS
from carelake.synth._terminology import QUANTITIES

_PLAUSIBLE = {q.loinc: q.plausible for q in QUANTITIES.values()}


def _field(resource: dict, path: str) -> object:
    value: object = resource
    for part in path.replace("[", ".").replace("]", "").split("."):
        value = value[int(part)] if part.isdigit() else value[part]  # type: ignore[index]
    return value


def test_each_listed_fault_is_present(export) -> None:
    faults = export.truth["faults"]
    assert faults
    patients = {row["patient_id"]: row for row in export.truth["patients"]}
    all_ids = {(t, r["id"]) for t, resources in export.resources.items() for r in resources}
    transaction = dt.date(2026, 1, 1)
    for row in faults:
        matches = export.by_id(row["resource_type"])[row["resource_id"]]
        kind = row["kind"]
        if kind == "duplicate-id":
            assert len(matches) >= 2, row
            continue
        assert len(matches) == 1, row
        resource = matches[0]
        written = _field(resource, row["field"])
        assert str(written) == row["written"], row
        if kind == "implausible-value":
            low, high = _PLAUSIBLE[resource["code"]["coding"][0]["code"]]
            assert not low <= written <= high  # type: ignore[operator]
        elif kind == "unit-mixup":
            _, factor, _ = UNIT_MIXUPS[resource["code"]["coding"][0]["code"]]
            assert abs(float(row["written"]) - float(row["original"]) * factor) < 0.06
        elif kind in ("date-before-birth", "date-after-death", "future-date"):
            when = dt.date.fromisoformat(str(written)[:10])
            person = patients[row["patient_id"]]
            if kind == "date-before-birth":
                assert when < person["birth_date"]
            elif kind == "date-after-death":
                assert person["deceased_date"] is not None and when > person["deceased_date"]
            else:
                assert when > transaction
        elif kind == "broken-reference":
            target_type, _, target_id = str(written).partition("/")
            assert (target_type, target_id) not in all_ids
        elif kind == "invalid-code":
            if row["resource_type"] == "Condition":
                assert not ICD10_FORMAT.match(str(written))
            else:
                assert not loinc_is_valid(str(written))


def test_fault_rate_and_kinds(export) -> None:
    faults = export.truth["faults"]
    faultable = sum(len(export.resources[t]) for t in FAULTABLE_TYPES)
    assert 0.025 < len(faults) / faultable < 0.06
    kinds = Counter(row["kind"] for row in faults)
    assert set(kinds) == set(FAULT_KINDS)
    assert {row["resource_type"] for row in faults} == set(FAULTABLE_TYPES)


def test_no_faults_when_rate_is_zero(tmp_path) -> None:
    from carelake.synth import generate_fhir

    summary = generate_fhir(tmp_path / "clean", patients=20, faults=0.0)
    assert summary.ground_truth["faults"] == 0
