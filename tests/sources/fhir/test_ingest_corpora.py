"""Ingestion of corpora we did not write: Synthea bulk NDJSON and transaction Bundles, the R4 spec examples,
and the FHIR validator's bad-input cases, on both engines."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

import carelake as cl

SYNTHEA_BULK_COUNTS = {
    "AllergyIntolerance": 11,
    "Condition": 555,
    "Device": 16,
    "DocumentReference": 120,
    "Encounter": 1215,
    "Immunization": 161,
    "Location": 44,
    "MedicationRequest": 1745,
    "Organization": 43,
    "Patient": 13,
    "Practitioner": 43,
    "PractitionerRole": 43,
    "Procedure": 2056,
}
SYNTHEA_BUNDLE_COUNTS = {
    "Observation": 196,
    "Claim": 57,
    "Encounter": 43,
    "ExplanationOfBenefit": 43,
    "Immunization": 25,
    "Condition": 22,
    "MedicationRequest": 14,
    "Procedure": 14,
    "DiagnosticReport": 12,
    "Organization": 6,
    "Practitioner": 6,
    "CarePlan": 6,
    "Patient": 4,
    "ImagingStudy": 1,
}


def test_synthea_bulk_exact_counts(testdata: Path, lake_path: Path, engine: str) -> None:
    summary = cl.ingest_fhir([testdata / "synthea-fhir-r4/bulk-ndjson-10-patients"], lake=lake_path, engine=engine)
    assert {t: c["stored"] for t, c in summary.by_type.items()} == SYNTHEA_BULK_COUNTS
    # log.ndjson is the export's log, not FHIR: its 4 lines are quarantined, not dropped.
    assert summary.quarantined_by_rule == {"missing-resourceType": 4}
    assert summary.reconciles and summary.read == sum(SYNTHEA_BULK_COUNTS.values()) + 4
    # Practitioner/Organization/Location are referenced conditionally; all resolve by identifier.
    assert summary.references["conditional"] > 0
    assert summary.references["unresolved_conditional"] == 0
    assert summary.references["unresolved_literal"] == 0
    counts = cl.open_lake(lake_path).sql("SELECT resource_type, count(*) AS n FROM resources GROUP BY 1").to_pylist()
    assert {r["resource_type"]: r["n"] for r in counts} == SYNTHEA_BULK_COUNTS


def test_synthea_conditional_references_resolve_to_targets(testdata: Path, lake_path: Path) -> None:
    cl.ingest_fhir([testdata / "synthea-fhir-r4/bulk-ndjson-10-patients"], lake=lake_path)
    rows = (
        cl.open_lake(lake_path)
        .sql(
            "SELECT kind, target_type, count(*) AS n, count(*) FILTER (WHERE resolved) AS ok "
            "FROM fhir_reference_targets GROUP BY 1, 2 ORDER BY 1, 2"
        )
        .to_pylist()
    )
    conditional = {r["target_type"]: r for r in rows if r["kind"] == "conditional"}
    assert set(conditional) == {"Location", "Organization", "Practitioner"}
    assert all(r["n"] == r["ok"] for r in rows)


def test_synthea_transaction_bundles(testdata: Path, lake_path: Path, engine: str) -> None:
    summary = cl.ingest_fhir([testdata / "synthea-fhir-r4/transaction-bundles"], lake=lake_path, engine=engine)
    assert {t: c["stored"] for t, c in summary.by_type.items()} == SYNTHEA_BUNDLE_COUNTS
    assert summary.quarantined == 0 and summary.reconciles
    lake = cl.open_lake(lake_path)
    # urn:uuid references are rewritten to Type/id, and every one of them resolves inside the lake.
    urn = lake.sql("SELECT count(*) AS n FROM resources WHERE resource LIKE '%\"urn:uuid:%'").column(0)[0].as_py()
    assert urn == 0
    assert summary.references["unresolved_literal"] == 0
    # Every clinical resource is linked to its patient.
    orphans = (
        lake.sql(
            "SELECT count(*) FROM resources WHERE patient_id IS NULL AND resource_type IN "
            "('Observation', 'Encounter', 'Condition', 'Claim')"
        )
        .column(0)[0]
        .as_py()
    )
    assert orphans == 0
    patients = lake.sql("SELECT count(DISTINCT patient_id) FROM resources").column(0)[0].as_py()
    assert patients == 4


def test_spec_examples_are_stored_losslessly(testdata: Path, lake_path: Path) -> None:
    folder = testdata / "fhir-r4-examples/spec-examples"
    summary = cl.ingest_fhir([folder], lake=lake_path)
    assert summary.reconciles
    lake = cl.open_lake(lake_path)
    stored = {
        (r["resource_type"], r["id"]): r["resource"]
        for r in lake.sql(
            "SELECT resource_type, id, resource FROM fhir_resources WHERE entry_index IS NULL"
        ).to_pylist()
    }
    checked = 0
    for file in sorted(folder.glob("*.json")):
        original = orjson.loads(file.read_bytes().removeprefix(b"\xef\xbb\xbf"))
        if original.get("resourceType") == "Bundle" or "id" not in original:
            continue
        assert orjson.loads(stored[(original["resourceType"], original["id"])]) == original, file.name
        checked += 1
    assert checked > 40


def test_validator_bad_inputs_are_stored_or_quarantined(testdata: Path, lake_path: Path, engine: str) -> None:
    folder = testdata / "fhir-r4-examples/validator-cases/input"
    summary = cl.ingest_fhir([folder], lake=lake_path, engine=engine)
    assert summary.reconciles
    assert summary.files == len(list(folder.glob("*.json")))
    rules = summary.quarantined_by_rule
    # JSON syntax errors (bad closes, comments, unquoted keys, missing commas) are caught, with line and column.
    assert rules["invalid-json"] >= 9
    assert rules["invalid-id"] >= 3  # patient-id-bad-*, resource-invalid-id-*
    lake = cl.open_lake(lake_path)
    q = lake.sql("SELECT source_file, line, rule, message FROM quarantine WHERE rule = 'invalid-json'").to_pylist()
    by_file = {Path(r["source_file"]).name: r for r in q}
    assert by_file["json-comments-1.json"]["line"] == 1
    assert "line 1 column 1" in by_file["json-comments-1.json"]["message"]
    # The BOM-prefixed file is read, not rejected.
    assert "xml-bad-entities.json" not in {
        Path(r["source_file"]).name for r in lake.sql("SELECT source_file FROM quarantine").to_pylist()
    }


def test_manifest_and_directory_together_count_once(testdata: Path, tmp_path: Path) -> None:
    bulk = testdata / "synthea-fhir-r4/bulk-ndjson-10-patients"
    manifest = tmp_path / "manifest.json"
    outputs = [{"type": f.name.split(".")[0], "url": f.resolve().as_uri()} for f in sorted(bulk.glob("*.000.ndjson"))]
    manifest.write_text(
        json.dumps(
            {
                "transactionTime": "2024-08-06T18:12:57Z",
                "request": "x",
                "requiresAccessToken": False,
                "output": outputs,
                "error": [],
            }
        )
    )
    summary = cl.ingest_fhir([manifest, bulk], lake=tmp_path / "lake")
    assert summary.stored == sum(SYNTHEA_BULK_COUNTS.values())
    assert summary.duplicates == 0
    assert summary.files == len(outputs) + 1  # + log.ndjson from the folder


def test_manifest_pointing_at_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "transactionTime": "2024",
                "output": [{"type": "Patient", "url": "https://example.org/files/Patient.ndjson"}],
            }
        )
    )
    with pytest.raises(cl.InputError, match=r"output\[0\] points at .*Patient.ndjson"):
        cl.ingest_fhir([manifest], lake=tmp_path / "lake")
