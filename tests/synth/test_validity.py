"""Every resource is structurally valid FHIR (R4B models, the R4 superset for these types) and well coded."""

from __future__ import annotations

import base64
import re

import pytest
from fhir.resources.R4B import get_fhir_model_class

from carelake.quality._codes import loinc_is_valid
from carelake.synth._faults import ICD10_FORMAT
from carelake.synth._output import RESOURCE_ORDER
from carelake.synth._terminology import ICD10CM, LOINC, NPI, luhn_check_digit

TYPES = RESOURCE_ORDER
REFERENCE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


@pytest.mark.parametrize("resource_type", TYPES)
def test_resources_parse_with_fhir_models(export, resource_type: str) -> None:
    resources = export.resources.get(resource_type, [])
    assert resources, f"no {resource_type} generated"
    model = get_fhir_model_class(resource_type)
    step = max(len(resources) // 300, 1)
    for resource in resources[::step]:
        model.model_validate(resource)


def _references(value: object) -> list[str]:
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference" and isinstance(item, str):
                found.append(item)
            else:
                found.extend(_references(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_references(item))
    return found


def test_references_are_literal_and_resolve_unless_broken_on_purpose(export) -> None:
    ids = {(t, r["id"]) for t, resources in export.resources.items() for r in resources}
    broken = {row["written"] for row in export.truth["faults"] if row["kind"] == "broken-reference"}
    checked = 0
    for resources in export.resources.values():
        for resource in resources:
            for reference in _references(resource):
                assert REFERENCE.match(reference), reference
                target_type, _, target_id = reference.partition("/")
                if reference in broken:
                    assert (target_type, target_id) not in ids
                else:
                    assert (target_type, target_id) in ids, reference
                checked += 1
    assert checked > 10_000


def test_clinical_resources_point_at_patients(export) -> None:
    patients = {p["id"] for p in export.resources["Patient"]}
    for resource_type in (
        "Encounter",
        "Condition",
        "Observation",
        "MedicationRequest",
        "Procedure",
        "CarePlan",
        "ServiceRequest",
        "DocumentReference",
    ):
        for resource in export.resources[resource_type]:
            assert resource["subject"]["reference"].removeprefix("Patient/") in patients
    for resource_type in ("Immunization", "AllergyIntolerance", "FamilyMemberHistory", "Consent"):
        for resource in export.resources.get(resource_type, []):
            assert resource["patient"]["reference"].removeprefix("Patient/") in patients


def test_codes_are_well_formed_except_injected_faults(export) -> None:
    invalid = {
        (row["resource_type"], row["resource_id"]) for row in export.truth["faults"] if row["kind"] == "invalid-code"
    }
    for observation in export.resources["Observation"]:
        for coding in observation["code"]["coding"]:
            if coding["system"] == LOINC and ("Observation", observation["id"]) not in invalid:
                assert loinc_is_valid(coding["code"]), coding
    for condition in export.resources["Condition"]:
        icd = [c["code"] for c in condition["code"]["coding"] if c["system"] == ICD10CM]
        assert len(icd) == 1
        if ("Condition", condition["id"]) not in invalid:
            assert ICD10_FORMAT.match(icd[0]), icd
    for resource in export.resources["Practitioner"] + export.resources["Organization"]:
        for identifier in resource.get("identifier", []):
            if identifier["system"] == NPI:
                value = identifier["value"]
                assert len(value) == 10 and luhn_check_digit("80840" + value[:9]) == int(value[9])


def test_observations_use_loinc_and_ucum(export) -> None:
    categories = set()
    for observation in export.resources["Observation"]:
        assert observation["code"]["coding"][0]["system"] == LOINC
        categories.update(c["code"] for cat in observation["category"] for c in cat["coding"])
        quantity = observation.get("valueQuantity")
        if quantity:
            assert quantity["system"] == "http://unitsofmeasure.org"
    assert {"vital-signs", "laboratory", "social-history", "survey"} <= categories
    codes = {o["code"]["coding"][0]["code"] for o in export.resources["Observation"]}
    assert {
        "8867-4",
        "85354-9",
        "29463-7",
        "39156-5",
        "4548-4",
        "1558-6",
        "2093-3",
        "2085-9",
        "18262-6",
        "2571-8",
        "2160-0",
        "62238-1",
        "72166-2",
        "71802-3",
        "88122-7",
        "88123-5",
        "93030-5",
    } <= codes


def test_inpatient_encounters_carry_discharge_disposition(export) -> None:
    classes = {e["class"]["code"] for e in export.resources["Encounter"]}
    assert classes == {"AMB", "EMER", "IMP"}
    for encounter in export.resources["Encounter"]:
        if encounter["class"]["code"] == "IMP":
            stay = encounter["hospitalization"]
            assert stay["dischargeDisposition"]["coding"][0]["system"] == (
                "http://terminology.hl7.org/CodeSystem/discharge-disposition"
            )
            assert stay["admitSource"]["coding"][0]["code"] in {"emd", "gp", "outp"}


def test_patients_have_us_core_demographics_and_identifiers(export) -> None:
    for patient in export.resources["Patient"]:
        urls = {e["url"] for e in patient["extension"]}
        assert "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race" in urls
        assert "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity" in urls
        types = {i["type"]["coding"][0]["code"] for i in patient["identifier"]}
        assert {"MR", "MB"} <= types
        assert re.fullmatch(r"\d{5}", patient["address"][0]["postalCode"])
        assert patient["name"][0]["family"] and patient["name"][0]["given"]
    assert any("deceasedDateTime" in p for p in export.resources["Patient"])


def test_notes_mention_identifiers_the_way_real_notes_do(export) -> None:
    patients = {p["id"]: p for p in export.resources["Patient"]}
    documents = export.resources["DocumentReference"]
    assert documents
    for document in documents[:50]:
        attachment = document["content"][0]["attachment"]
        assert attachment["contentType"].startswith("text/plain")
        text = base64.b64decode(attachment["data"]).decode("utf-8")
        patient = patients[document["subject"]["reference"].removeprefix("Patient/")]
        mrn = next(i["value"] for i in patient["identifier"] if i["type"]["coding"][0]["code"] == "MR")
        assert patient["name"][0]["family"] in text
        assert mrn in text
        assert patient["telecom"][0]["value"] in text
        assert patient["address"][0]["line"][0] in text
        assert re.search(r"\d{2}/\d{2}/\d{4}", text)
