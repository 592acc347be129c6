"""The standard view library on the public Synthea corpus: rows checked by hand against the source JSON.

Each expected row below was read off the resource's JSON in ../shared/testdata/synthea-fhir-r4 (bulk
NDJSON patient a5cb8ce9…, transaction-bundle patient 60319ca6…), not computed by carelake.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

import carelake as cl
import carelake.views as views
from carelake.fhir import ViewDefinitionError

BULK_PATIENT = "a5cb8ce9-cec6-6b23-0990-cbaf753578a4"
BUNDLE_PATIENT = "60319ca6-f8b8-49a2-8abf-7ca0065a21d4"
NAMES = [
    "allergies",
    "conditions",
    "documents",
    "encounters",
    "family_history",
    "immunizations",
    "medication_requests",
    "observations",
    "patients",
    "procedures",
    "social_needs_screening",
]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory, testdata: Path) -> cl.Lake:
    path = tmp_path_factory.mktemp("standard") / "lake"
    cl.ingest_fhir([testdata / "synthea-fhir-r4"], lake=path)
    lake = cl.open_lake(path)
    views.materialize(views.standard(), lake=lake)
    return lake


def row(lake: cl.Lake, table: str, id_: str) -> dict:
    rows = lake.sql(f"SELECT * FROM {table} WHERE id = '{id_}'").to_pylist()
    assert len(rows) == 1, rows
    return rows[0]


def count(lake: cl.Lake, table: str, patient: str) -> int:
    return lake.sql(f"SELECT count(*) FROM {table} WHERE patient_id = '{patient}'").column(0)[0].as_py()


def test_library_is_the_eleven_documented_views(lake: cl.Lake) -> None:
    assert sorted(v["name"] for v in views.standard()) == NAMES
    tables = {t["name"]: t for t in lake.status()["tables"]}
    assert all(tables[name]["layer"] == "silver" for name in NAMES)
    documented = (Path(__file__).parents[2] / "docs" / "views.md").read_text()
    assert all(f"`{name}`" in documented for name in NAMES)


def test_patients(lake: cl.Lake) -> None:
    assert row(lake, "patients", BULK_PATIENT) == {
        "id": BULK_PATIENT,
        "gender": "female",
        "birth_date": "1927-05-21",
        "deceased": False,
        "deceased_date": None,
        "birth_sex": "F",
        "race_code": "2106-3",
        "race": "White",
        "ethnicity_code": "2186-5",
        "ethnicity": "Not Hispanic or Latino",
        "marital_status": "M",
        "language": "en-US",
        "city": "Emporia",
        "state": "KS",
        "postal_code": "66801",
        "country": "US",
    }
    assert lake.sql("SELECT count(*) FROM patients").column(0)[0].as_py() == 17  # 13 bulk + 4 bundles
    # Names, identifiers and contact details stay out of the demographics table.
    assert not {"name", "family", "given", "ssn", "phone", "line", "identifier"} & set(
        lake.sql("SELECT * FROM patients LIMIT 0").column_names
    )


def test_encounters_with_length_of_stay_and_disposition(lake: cl.Lake) -> None:
    assert row(lake, "encounters", "dca6dd40-9e46-0365-a051-603ea76724c5") == {
        "id": "dca6dd40-9e46-0365-a051-603ea76724c5",
        "patient_id": BULK_PATIENT,
        "status": "finished",
        "class_code": "EMER",
        "class_system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "type_code": "185347001",
        "type_display": "Encounter for problem",
        "start": "1971-09-03T23:58:16-04:00",
        "end": "1971-09-09T23:58:16-04:00",
        "reason_code": "91302008",
        "reason_display": "Sepsis (disorder)",
        "admit_source_code": None,
        "priority_code": None,
        "discharge_disposition_code": "1",
        "discharge_disposition": "Discharge to home",
        "service_provider_id": None,  # a conditional reference (Organization?identifier=…) has no key
        "length_of_stay_days": 6,
        "duration_hours": 144.0,
    }
    assert count(lake, "encounters", BULK_PATIENT) == 83
    # A same-day visit: 0 midnights, 15 minutes.
    visit = row(lake, "encounters", "41fee44f-05e1-43bc-ba87-29dd25077039")
    assert (visit["patient_id"], visit["length_of_stay_days"], visit["duration_hours"]) == (BUNDLE_PATIENT, 0, 0.25)


def test_conditions(lake: cl.Lake) -> None:
    assert row(lake, "conditions", "0115b599-4a10-eeb8-a92d-58f02b31e517") == {
        "id": "0115b599-4a10-eeb8-a92d-58f02b31e517",
        "patient_id": BULK_PATIENT,
        "encounter_id": "c9fb14b6-24ed-d2df-016d-701719629df6",
        "code": "741062008",
        "code_system": "http://snomed.info/sct",
        "display": "Not in labor force (finding)",
        "snomed_code": "741062008",
        "icd10cm_code": None,
        "clinical_status": "resolved",
        "verification_status": "confirmed",
        "category": "encounter-diagnosis",
        "onset": "1949-07-24T00:42:37-04:00",
        "abatement": "1952-07-27T00:42:37-04:00",
        "recorded_date": "1949-07-24T00:42:37-04:00",
    }
    assert count(lake, "conditions", BULK_PATIENT) == 33


def test_observations_one_row_per_value_and_component(lake: cl.Lake) -> None:
    blood_pressure = lake.sql(
        "SELECT * FROM observations WHERE id = '4f536b28-74d3-4cac-92f2-871d82af07d0' ORDER BY loinc_code"
    ).to_pylist()
    common = {
        "id": "4f536b28-74d3-4cac-92f2-871d82af07d0",
        "patient_id": BUNDLE_PATIENT,
        "encounter_id": "22294a4a-5672-4b07-aa75-611c1ae6f2b3",  # urn:uuid reference resolved in the bundle
        "status": "final",
        "category": "vital-signs",
        "effective": "2011-09-02T10:35:11+00:00",
        "issued": "2011-09-02T10:35:11.367+00:00",
        "panel_code": "55284-4",
        "unit": "mm[Hg]",
        "value_code": None,
        "value_display": None,
        "value_text": None,
    }
    assert blood_pressure == [
        {**common, "loinc_code": "8462-4", "display": "Diastolic Blood Pressure", "value": 79.78576629307318},
        {**common, "loinc_code": "8480-6", "display": "Systolic Blood Pressure", "value": 127.26700882790468},
    ]
    lab = row(lake, "observations", "9822f8f9-f49c-4520-87e0-940a3e15e1c9")
    assert {k: lab[k] for k in ("category", "panel_code", "loinc_code", "value", "unit")} == {
        "category": "laboratory",
        "panel_code": None,
        "loinc_code": "6690-2",
        "value": 4.233252508827393,
        "unit": "10*3/uL",
    }
    # Bill's bundle: 42 Observations, 5 of them blood-pressure panels of 2 components -> 37 + 10 rows.
    assert count(lake, "observations", BUNDLE_PATIENT) == 47


def test_medication_requests(lake: cl.Lake) -> None:
    assert row(lake, "medication_requests", "03153d39-9e31-b6bf-535e-d7e5782943d8") == {
        "id": "03153d39-9e31-b6bf-535e-d7e5782943d8",
        "patient_id": BULK_PATIENT,
        "encounter_id": "54ae78f2-61c4-bbe1-1ad3-22f8441ed02f",
        "status": "stopped",
        "intent": "order",
        "authored_on": "1990-08-05T23:58:16-04:00",
        "medication_code": "314231",
        "medication_system": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "medication_display": "Simvastatin 10 MG Oral Tablet",
        "medication_id": None,
        "reason_code": None,
        "reason_condition_id": "45c2ced0-6dd7-c704-0b63-deb567cc7d0a",
        "dosage_text": None,
        "as_needed": False,
    }
    assert count(lake, "medication_requests", BULK_PATIENT) == 62


def test_procedures(lake: cl.Lake) -> None:
    assert row(lake, "procedures", "3f0f42a9-29c6-d5ed-86d9-e57ea9c9455e") == {
        "id": "3f0f42a9-29c6-d5ed-86d9-e57ea9c9455e",
        "patient_id": BULK_PATIENT,
        "encounter_id": "af5789a3-afe3-1348-ffc5-85ad27b563df",
        "status": "completed",
        "code": "274474001",
        "code_system": "http://snomed.info/sct",
        "display": "Bone immobilization",
        "performed_start": "2018-10-18T01:38:55-04:00",
        "performed_end": "2018-10-18T02:16:29-04:00",
        "reason_code": None,
        "reason_condition_id": "a8c624bd-f499-c9fb-8b07-1f001936e602",
    }
    assert count(lake, "procedures", BULK_PATIENT) == 110


def test_immunizations(lake: cl.Lake) -> None:
    assert row(lake, "immunizations", "0f1bb174-182f-b415-4eed-ffc8a1e65341") == {
        "id": "0f1bb174-182f-b415-4eed-ffc8a1e65341",
        "patient_id": BULK_PATIENT,
        "encounter_id": "9886a52b-ef10-353f-93e9-661fe7bd64e3",
        "status": "completed",
        "vaccine_code": "140",
        "vaccine_system": "http://hl7.org/fhir/sid/cvx",
        "vaccine_display": "Influenza, seasonal, injectable, preservative free",
        "occurrence": "2016-12-31T22:58:16-05:00",
        "primary_source": True,
        "lot_number": None,
    }
    assert count(lake, "immunizations", BULK_PATIENT) == 13


def test_allergies(lake: cl.Lake) -> None:
    assert row(lake, "allergies", "1e4c4ad8-677b-2ddc-8fb7-44ad5b7c2aa9") == {
        "id": "1e4c4ad8-677b-2ddc-8fb7-44ad5b7c2aa9",
        "patient_id": BULK_PATIENT,
        "clinical_status": "active",
        "verification_status": "confirmed",
        "type": "allergy",
        "category": "food",
        "criticality": "low",
        "code": "442571000124108",
        "code_system": "http://snomed.info/sct",
        "display": "Tree nut (substance)",
        "onset": None,
        "recorded_date": "1928-11-23T17:58:16-05:00",
        "reaction_code": "247472004",
        "reaction_display": "Wheal (finding)",
        "reaction_severity": None,
    }
    categories = lake.sql(f"SELECT category FROM allergies WHERE patient_id = '{BULK_PATIENT}' ORDER BY 1")
    assert categories.column(0).to_pylist() == ["environment", "food", "medication"]


def test_social_needs_screening(lake: cl.Lake) -> None:
    assert row(lake, "social_needs_screening", "851e80bf-9309-4ff8-ac89-38c0518b2986") == {
        "id": "851e80bf-9309-4ff8-ac89-38c0518b2986",
        "patient_id": BUNDLE_PATIENT,
        "encounter_id": "22294a4a-5672-4b07-aa75-611c1ae6f2b3",
        "status": "final",
        "category": "survey",
        "effective": "2011-09-02T10:35:11+00:00",
        "panel_code": None,
        "question_code": "72166-2",
        "question": "Tobacco smoking status NHIS",
        "answer_code": "266919005",
        "answer": "Never smoker",
        "answer_value": None,
    }
    assert count(lake, "social_needs_screening", BUNDLE_PATIENT) == 5


def test_documents_carry_metadata_not_text(lake: cl.Lake) -> None:
    assert row(lake, "documents", "06a126c9-8a25-04b9-55f5-a716396beaad") == {
        "id": "06a126c9-8a25-04b9-55f5-a716396beaad",
        "patient_id": BULK_PATIENT,
        "encounter_id": "96309b87-2891-58d4-3727-83c82d6444e3",
        "status": "superseded",
        "doc_status": None,
        "type_code": "34117-2",
        "type_system": "http://loinc.org",
        "type_display": "History and physical note",
        "category": "clinical-note",
        "date": "2007-11-10T22:58:16.824-05:00",
        "period_start": "2007-11-10T22:58:16-05:00",
        "period_end": "2007-11-10T23:35:16-05:00",
        "content_type": "text/plain; charset=utf-8",
        "size": None,
        "has_inline_data": True,
    }
    assert count(lake, "documents", BULK_PATIENT) == 9


def test_social_needs_on_generated_screens(tmp_path: Path) -> None:
    """The generator's AHC HRSN screens (category survey/sdoh) give housing, food and transport answers."""
    cl.generate_fhir(tmp_path / "fhir", patients=40, seed=3)
    lake = cl.open_lake(tmp_path / "lake")
    cl.ingest_fhir([tmp_path / "fhir" / "manifest.json"], lake=lake)
    screening = next(v for v in views.standard() if v["name"] == "social_needs_screening")
    table = views.run(screening, lake=lake)
    questions = set(table.column("question_code").to_pylist())
    assert {"71802-3", "88122-7", "93030-5"} <= questions  # housing, food insecurity, transport
    housing = table.filter(pa.compute.equal(table.column("question_code"), "71802-3"))
    assert housing.num_rows > 0 and housing.column("answer_code").null_count == 0


def test_run_over_files_without_a_lake(testdata: Path) -> None:
    encounters = next(v for v in views.standard() if v["name"] == "encounters")
    folder = testdata / "synthea-fhir-r4" / "bulk-ndjson-10-patients"
    table = views.run(encounters, source=folder)
    assert table.num_rows == len((folder / "Encounter.000.ndjson").read_text().splitlines())
    with pytest.raises(cl.ConfigError, match="exactly one of lake=, source= or resources="):
        views.run(encounters)


def test_sql_column_extension_is_checked() -> None:
    base = json.loads(json.dumps(next(v for v in views.standard() if v["name"] == "encounters")))
    bad_column = base["extension"][0]["extension"][2]
    bad_column["valueString"] = "date_diff('day', start, discharged)"
    with pytest.raises(ViewDefinitionError, match=r"extension\[0\].*reads 'discharged'"):
        views.sql(base)
    bad_column["valueString"] = "date_diff('day', start"
    with pytest.raises(ViewDefinitionError, match=r"extension\[0\]: cannot parse the SQL"):
        views.sql(base)


@pytest.mark.spark
def test_standard_views_equal_on_spark(lake: cl.Lake) -> None:
    for view in views.standard():
        duck = views.run(view, lake=lake)
        spark = views.run(view, lake=lake, engine="spark")
        order = [(c, "ascending") for c in duck.column_names]
        assert spark.schema == duck.schema, view["name"]
        assert spark.sort_by(order).equals(duck.sort_by(order)), view["name"]


def test_family_history_on_the_fhir_examples(testdata: Path) -> None:
    """Read off spec-examples/familymemberhistory-example.json by hand: the father's myocardial infarction at 74."""
    view = next(v for v in views.standard() if v["name"] == "family_history")
    source = testdata / "fhir-r4-examples" / "spec-examples" / "familymemberhistory-example.json"
    assert views.run(view, source=source).to_pylist() == [
        {
            "id": "father",
            "patient_id": "example",
            "status": "completed",
            "date": "2011-03-18",
            "relationship_code": "FTH",
            "relationship": "father",
            "condition_code": "315619001",
            "condition_system": "http://snomed.info/sct",
            "condition_display": "Myocardial Infarction",
            "onset_age": 74.0,
            "contributed_to_death": True,
        }
    ]
