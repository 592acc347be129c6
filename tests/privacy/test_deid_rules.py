"""Each of the 18 Safe Harbor identifier categories, one test each, on resources that carry it.

The rules are applied by datatype, so the planted values sit in several resource types and depths.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from carelake.errors import ConfigError, InputError
from carelake.privacy import DeidKey, Policy, keygen
from carelake.privacy._text import Known
from carelake.privacy._walk import Deidentifier, Quarantined, Subject, shift_date

KEY = DeidKey(bytes(range(32)))


def deid(
    resource: dict[str, Any],
    *,
    policy: Policy | None = None,
    known: Known | None = None,
    shift: int = -40,
    cap: str | None = None,
) -> tuple[dict[str, Any], dict[str, int]]:
    walker = Deidentifier(policy or Policy(), KEY)
    subject = Subject(shift_days=shift, known=known or Known(), birth_year_cap=cap)
    out = walker.resource(resource, subject)
    return out, dict(walker.counts)


def text_of(resource: dict[str, Any]) -> str:
    """Everything a resource says, attachments decoded, for 'is this value still anywhere' checks."""
    found = json.dumps(resource)

    def walk(node: Any) -> None:
        nonlocal found
        if isinstance(node, dict):
            if isinstance(node.get("data"), str):
                found += base64.b64decode(node["data"]).decode("utf-8", "replace")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(resource)
    return found


PATIENT = {
    "resourceType": "Patient",
    "id": "pat-1",
    "meta": {"lastUpdated": "2024-05-01T10:00:00Z", "profile": ["http://example.org/p"]},
    "text": {"status": "generated", "div": "<div>Jane Q Doe, 12 Elm Street</div>"},
    "identifier": [
        {"type": {"coding": [{"code": "MR"}]}, "system": "urn:mrn", "value": "MRN-778899"},
        {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
        {"type": {"coding": [{"code": "DL"}]}, "system": "urn:dl", "value": "S99988801"},
        {"type": {"coding": [{"code": "MB"}]}, "system": "urn:plan", "value": "PLAN-55501"},
        {"type": {"coding": [{"code": "AN"}]}, "system": "urn:acct", "value": "ACCT-000321"},
        {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:9b1f0d7e-0000-4000-8000-000000000001"},
    ],
    "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"], "prefix": ["Ms."]}],
    "telecom": [
        {"system": "phone", "value": "(312) 555-0147"},
        {"system": "fax", "value": "312-555-0199"},
        {"system": "email", "value": "jane.doe@example.com"},
        {"system": "url", "value": "https://janedoe.example.com"},
    ],
    "gender": "female",
    "birthDate": "1961-07-04",
    "address": [
        {
            "line": ["12 Elm Street", "Apt 3"],
            "city": "Springfield",
            "district": "Sangamon",
            "state": "IL",
            "postalCode": "62704",
            "country": "US",
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/geolocation", "extension": []}],
        }
    ],
    "photo": [{"contentType": "image/jpeg", "data": base64.b64encode(b"\xff\xd8\xff jpeg").decode()}],
    "contact": [{"name": {"family": "Doe", "given": ["John"]}, "telecom": [{"system": "phone", "value": "555-0100"}]}],
    "extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName", "valueString": "Smith"},
        {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"},
    ],
    "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime"}]},
}


@pytest.fixture(scope="module")
def patient() -> tuple[dict[str, Any], dict[str, int]]:
    return deid(PATIENT)


def _note(text: str) -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "id": "doc-1",
        "status": "current",
        "subject": {"reference": "Patient/pat-1", "display": "Jane Doe"},
        "content": [
            {
                "attachment": {
                    "contentType": "text/plain",
                    "data": base64.b64encode(text.encode()).decode(),
                    "url": "https://ehr.example.org/notes/1",
                }
            }
        ],
    }


JANE = Known(
    names=("Jane", "Doe"),
    identifiers=("MRN-778899",),
    phones=("(312) 555-0147",),
    addresses=("12 Elm Street", "Springfield"),
    dates=("1961-07-04",),
)


# 1. Names
def test_names_are_removed_everywhere(patient: tuple[dict[str, Any], dict[str, int]]) -> None:
    out, counts = patient
    assert "name" not in out and "contact" not in out  # a contact with only a name and phone leaves nothing
    assert "Jane" not in text_of(out) and "Doe" not in text_of(out) and "Smith" not in text_of(out)
    assert counts["name:removed"] == 2
    note, _ = deid(_note("Seen today: Jane Doe, doing well. Her husband John Doe called."), known=JANE)
    assert "Jane" not in text_of(note) and "Doe" not in text_of(note)
    assert "display" not in note["subject"]


# 2. Geographic subdivisions smaller than a state
def test_geography_keeps_state_and_zip3(patient: tuple[dict[str, Any], dict[str, int]]) -> None:
    out, counts = patient
    assert out["address"] == [{"state": "IL", "country": "US", "postalCode": "627"}]
    assert counts["zip:generalised"] == 1


# The 17 ZIP3 prefixes the issue (and HHS) name, typed here independently of the policy's own list.
SPARSE = "036 059 063 102 203 556 692 790 821 823 830 831 878 879 884 890 893"


@pytest.mark.parametrize("zip_code", [f"{z}01" for z in SPARSE.split()])
def test_sparse_zip3_areas_become_000(zip_code: str) -> None:
    out, _ = deid({"resourceType": "Patient", "id": "p", "address": [{"postalCode": zip_code, "state": "XX"}]})
    assert out["address"][0]["postalCode"] == "000"


def test_limited_data_set_keeps_town_and_zip() -> None:
    out, _ = deid(PATIENT, policy=Policy.of("limited-dataset"))
    assert out["address"][0]["city"] == "Springfield" and out["address"][0]["postalCode"] == "62704"
    assert "line" not in out["address"][0] and out["birthDate"] == "1961-07-04"
    assert "name" not in out and "telecom" not in out and "identifier" not in out


# 3. Dates
def test_dates_keep_only_the_year(patient: tuple[dict[str, Any], dict[str, int]]) -> None:
    out, _ = patient
    assert out["birthDate"] == "1961"
    encounter, _ = deid(
        {
            "resourceType": "Encounter",
            "id": "e",
            "status": "finished",
            "class": {"code": "IMP"},
            "period": {"start": "2020-03-14T08:00:00-05:00", "end": "2020-03-19T12:30:00-05:00"},
            "meta": {"lastUpdated": "2020-03-20T00:00:00Z"},
        }
    )
    assert encounter["period"] == {"start": "2020", "end": "2020"} and "meta" not in encounter
    observation, _ = deid(
        {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
         "effectiveDateTime": "2020-03-14", "issued": "2020-03-14T09:00:00Z"}
    )  # fmt: skip
    assert observation["effectiveDateTime"] == "2020" and "issued" not in observation  # an instant cannot be a year
    note, _ = deid(_note("Admitted 03/14/2020, born July 4, 1961."), known=JANE)
    assert "03/14/2020" not in text_of(note) and "July 4, 1961" not in text_of(note)


def test_shifted_dates_keep_intervals_precision_and_time() -> None:
    shift = Policy.of("safe-harbor", "shift")
    encounter, _ = deid(
        {"resourceType": "Encounter", "id": "e", "status": "finished", "class": {"code": "IMP"},
         "period": {"start": "2020-03-14T08:00:00-05:00", "end": "2020-03-19T12:30:00-05:00"}},
        policy=shift, shift=-40,
    )  # fmt: skip
    assert encounter["period"] == {"start": "2020-02-03T08:00:00-05:00", "end": "2020-02-08T12:30:00-05:00"}
    assert shift_date("2020-03", 30) == "2020-04" and shift_date("2020", 30) == "2020"
    assert shift_date("2020-02-29", 366) == "2021-03-01"
    assert shift_date("1000-01-05", -30) == "0999-12-06" and shift_date("1000-01", -30) == "0999-12"  # four digits
    assert not shift.safe_harbor and Policy().safe_harbor


def test_safe_harbor_cannot_keep_exact_dates() -> None:
    with pytest.raises(ConfigError, match="Safe Harbor cannot keep exact dates"):
        Policy.of("safe-harbor", "keep")


# Ages over 89 (part of the dates rule)
def test_ages_over_89_collapse_to_90_including_birth_year() -> None:
    old, counts = deid({"resourceType": "Patient", "id": "p", "birthDate": "1925-02-01"}, cap="1935")
    assert old["birthDate"] == "1935" and counts["age_over_89:generalised"] == 1
    history, _ = deid(
        {"resourceType": "FamilyMemberHistory", "id": "f", "status": "completed", "patient": {"reference": "Patient/p"},
         "relationship": {"text": "mother"}, "ageAge": {"value": 97, "unit": "years", "code": "a"}}
    )  # fmt: skip
    assert history["ageAge"]["value"] == 90
    note, _ = deid(_note("This 94-year-old woman was seen."))
    assert "94-year-old" not in text_of(note)


# 4. Telephone numbers, 5. fax numbers, 6. email addresses
@pytest.mark.parametrize(("system", "value"), [("phone", "(312) 555-0147"), ("fax", "312-555-0199"),
                                               ("email", "jane.doe@example.com")])  # fmt: skip
def test_contact_points_are_removed(patient: tuple[dict[str, Any], dict[str, int]], system: str, value: str) -> None:
    out, counts = patient
    assert "telecom" not in out and value not in text_of(out)
    assert counts[f"{system}:removed"] >= 1
    note, _ = deid(_note(f"Reached the patient at {value} today."), known=JANE)
    assert value not in text_of(note)


# 7. SSN, 8. MRN, 9. health plan, 10. account, 11. licence numbers
@pytest.mark.parametrize(("category", "value"), [("ssn", "123-45-6789"), ("mrn", "MRN-778899"),
                                                 ("health_plan", "PLAN-55501"), ("account", "ACCT-000321"),
                                                 ("licence", "S99988801")])  # fmt: skip
def test_identifiers_are_removed_by_category(
    patient: tuple[dict[str, Any], dict[str, int]], category: str, value: str
) -> None:
    out, counts = patient
    assert "identifier" not in out and value not in text_of(out)
    assert counts[f"{category}:removed"] == 1


# 12. Vehicle identifiers
def test_vehicle_identifiers_in_text_are_replaced() -> None:
    note, _ = deid(_note("Patient was the driver; vehicle VIN 1HGCM82633A004352, plate 7ABC123."))
    assert "1HGCM82633A004352" not in text_of(note)


# 13. Device identifiers and serial numbers
def test_device_identifiers_are_removed() -> None:
    device, counts = deid(
        {"resourceType": "Device", "id": "d", "serialNumber": "SN-4471-XYZ", "lotNumber": "LOT77",
         "udiCarrier": [{"deviceIdentifier": "00844588003288", "carrierHRF": "(01)00844588003288"}],
         "identifier": [{"type": {"coding": [{"code": "SNO"}]}, "value": "SN-4471-XYZ"}],
         "patient": {"reference": "Patient/pat-1"}}
    )  # fmt: skip
    assert "SN-4471-XYZ" not in text_of(device) and "00844588003288" not in text_of(device)
    assert counts["device_id:removed"] == 4


# 14. URLs
def test_urls_are_removed(patient: tuple[dict[str, Any], dict[str, int]]) -> None:
    note, counts = deid(_note("Portal: https://mychart.example.org/jane-doe"))
    assert "mychart.example.org" not in text_of(note) and "ehr.example.org" not in text_of(note)
    assert counts["url:removed"] == 1
    absolute, _ = deid(
        {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
         "subject": {"reference": "https://ehr.example.org/fhir/Patient/pat-1"}}
    )  # fmt: skip
    assert absolute["subject"]["reference"] == f"Patient/{KEY.pseudonym('Patient', 'pat-1')}"


# 15. IP addresses
def test_ip_addresses_are_replaced() -> None:
    note, _ = deid(_note("Remote session from 192.168.14.201 was recorded."))
    assert "192.168.14.201" not in text_of(note)


# 16. Biometric identifiers, 17. full-face photographs
def test_photos_and_image_attachments_are_removed(patient: tuple[dict[str, Any], dict[str, int]]) -> None:
    out, counts = patient
    assert "photo" not in out and counts["photo:removed"] == 1
    media, counts = deid(
        {"resourceType": "DocumentReference", "id": "m", "status": "current",
         "content": [{"attachment": {"contentType": "image/png", "data": base64.b64encode(b"png").decode()}}]}
    )  # fmt: skip
    assert "data" not in media["content"][0]["attachment"] and counts["photo:removed"] == 1


def test_biometric_identifiers_are_removed() -> None:
    # Biometric templates travel as Identifiers or extensions: both go.
    out, counts = deid(
        {"resourceType": "Patient", "id": "p",
         "identifier": [{"system": "urn:biometric:fingerprint", "value": "FP-88a7c2"}],
         "extension": [{"url": "http://example.org/retina-scan-id", "valueString": "RS-5521"}]}
    )  # fmt: skip
    assert "FP-88a7c2" not in text_of(out) and "RS-5521" not in text_of(out)
    assert counts["other_id:removed"] == 1 and counts["extension:removed"] == 1


# 18. Any other unique identifying number, characteristic or code
def test_resource_ids_become_keyed_pseudonyms_and_references_follow(
    patient: tuple[dict[str, Any], dict[str, int]],
) -> None:
    out, _ = patient
    assert out["id"] == KEY.pseudonym("Patient", "pat-1") != "pat-1"
    assert len(out["id"]) == 64
    note, _ = deid(_note("x"))
    assert note["subject"] == {"reference": f"Patient/{out['id']}"}
    assert "urn:uuid:9b1f0d7e" not in text_of(out)
    other = DeidKey(bytes(range(1, 33)))
    assert other.pseudonym("Patient", "pat-1") != out["id"]
    # A reference ending in a newline is not a FHIR reference: it goes, rather than pass as "Patient/pat-1".
    odd, counts = deid({"resourceType": "Observation", "id": "o", "subject": {"reference": "Patient/pat-1\n"}})
    assert "subject" not in odd and counts["reference:removed"] == 1


def test_a_reference_used_again_is_rewritten_and_counted_at_every_use() -> None:
    # The walker remembers each reference it has rewritten; what it counts must not be remembered with it.
    walker = Deidentifier(Policy(), KEY)
    subject = Subject(shift_days=0)
    absolute = "https://ehr.example.org/fhir/Patient/pat-1"
    for n in (1, 2):
        out = walker.resource(
            {"resourceType": "Observation", "id": f"o{n}", "subject": {"reference": absolute},
             "performer": [{"reference": "Practitioner/dr-1"}, {"reference": "urn:uuid:9b1f0d7e"}]},
            subject,
        )  # fmt: skip
        assert out["subject"] == {"reference": f"Patient/{KEY.pseudonym('Patient', 'pat-1')}"}
        assert out["performer"] == [{"reference": f"Practitioner/{KEY.pseudonym('Practitioner', 'dr-1')}"}]
        assert walker.counts["reference:pseudonymised"] == 2 * n
        assert walker.counts["url:removed"] == walker.counts["reference:removed"] == n


def test_narrative_meta_unknown_extensions_and_members_are_dropped(
    patient: tuple[dict[str, Any], dict[str, int]],
) -> None:
    out, counts = patient
    assert "text" not in out and "_birthDate" not in out
    assert out["meta"] == {"profile": ["http://example.org/p"]}
    assert out["extension"] == [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
                                 "valueCode": "F"}]  # fmt: skip
    assert counts["narrative:removed"] == 1
    strange, counts = deid({"resourceType": "Patient", "id": "p", "favouriteColour": "Jane's blue"})
    assert "favouriteColour" not in strange and counts["unknown_element:removed"] == 1


def test_modifier_extensions_quarantine_the_resource() -> None:
    with pytest.raises(Quarantined) as caught:
        negated = [{"url": "http://example.org/negated", "valueBoolean": True}]
        deid({"resourceType": "Condition", "id": "c", "evidence": [{"modifierExtension": negated}]})
    assert caught.value.rule == "deid-modifier-extension"


def test_contained_resources_are_de_identified_too() -> None:
    out, _ = deid(
        {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
         "contained": [{"resourceType": "Patient", "id": "inline", "name": [{"family": "Doe"}],
                        "birthDate": "1961-07-04"}],
         "subject": {"reference": "#inline"}}
    )  # fmt: skip
    assert out["contained"] == [{"resourceType": "Patient", "id": "inline", "birthDate": "1961"}]
    assert out["subject"] == {"reference": "#inline"}


def test_clinical_content_is_kept() -> None:
    observation = {
        "resourceType": "Observation", "id": "o", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]},
        "valueQuantity": {"value": 7.2, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
        "interpretation": [{"coding": [{"code": "H"}]}],
    }  # fmt: skip
    out, _ = deid(observation)
    assert out["code"] == observation["code"] and out["valueQuantity"] == observation["valueQuantity"]
    note, _ = deid(_note("Metformin 500 mg twice daily. HbA1c 7.2% in 2019. White blood cells normal."))
    assert "Metformin 500 mg twice daily" in text_of(note) and "White blood cells" in text_of(note)


# -- the key ------------------------------------------------------------------------------------------------------
def test_keygen_makes_a_private_key_and_weak_or_misplaced_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "deid.key"
    fingerprint = keygen(path)
    assert fingerprint.startswith("sha256:") and oct(path.stat().st_mode & 0o777) == "0o600"
    key = DeidKey.load(path)
    assert key.fingerprint == fingerprint and key.pseudonym("Patient", "a") == DeidKey.load(path).pseudonym(
        "Patient", "a"
    )
    with pytest.raises(ConfigError, match="already exists"):
        keygen(path)
    with pytest.raises(ConfigError, match="no key file given"):
        DeidKey.load(None)
    with pytest.raises(InputError, match="no key file"):
        DeidKey.load(tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="inside the lake"):
        DeidKey.load(path, forbidden=(tmp_path,))
    with pytest.raises(ConfigError, match="not random enough"):
        DeidKey(b"\x00" * 32)
    with pytest.raises(ConfigError, match="at least 32"):
        DeidKey(os.urandom(16))
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by other users"):
        DeidKey.load(path)


def test_shift_is_one_nonzero_offset_per_patient() -> None:
    offsets = {KEY.shift_days(f"Patient/{i}") for i in range(500)}
    assert 0 not in offsets and min(offsets) >= -365 and max(offsets) <= 365 and len(offsets) > 300
    assert KEY.shift_days("Patient/7") == KEY.shift_days("Patient/7")
    assert dt.date(2020, 1, 1) + dt.timedelta(days=KEY.shift_days("Patient/7")) != dt.date(2020, 1, 1)


def test_race_labels_survive_a_patient_named_like_them() -> None:
    """Mr White's race text stays "White" (a label from a fixed list); a free race text is still scrubbed."""
    race = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
    resource = {
        "resourceType": "Patient",
        "id": "p-white",
        "name": [{"family": "White", "given": ["Walter"]}],
        "extension": [{"url": race, "extension": [
            {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3",
                                                   "display": "White"}},
            {"url": "text", "valueString": "White"}]}],
    }  # fmt: skip
    out, _ = deid(resource, known=Known(names=("Walter White", "White", "Walter")))
    assert out["extension"][0]["extension"][1] == {"url": "text", "valueString": "White"}
    assert "Walter" not in json.dumps(out) and "name" not in out
    resource["extension"][0]["extension"][1]["valueString"] = "White, per Walter White"
    out, _ = deid(resource, known=Known(names=("Walter White", "White", "Walter")))
    assert "Walter" not in out["extension"][0]["extension"][1]["valueString"]
