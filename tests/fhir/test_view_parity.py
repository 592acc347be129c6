"""Views over a real lake (Synthea, 10 patients): the spec's example views and a few richer ones give the
same rows on DuckDB and Spark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import carelake as cl
from carelake.fhir import run_view

EXAMPLES = ("observations", "patient_demographics", "patient_multiple_birth")

VIEWS: dict[str, dict[str, Any]] = {
    "encounter_types": {
        "resource": "Encounter",
        "select": [
            {"column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
                {"name": "start", "path": "period.start", "type": "dateTime"},
                {"name": "start_day", "path": "period.start.lowBoundary()", "type": "dateTime"},
            ]},
            {"forEachOrNull": "type.coding", "column": [
                {"name": "code", "path": "code", "type": "code"},
                {"name": "system", "path": "system", "type": "uri"},
                {"name": "coding_index", "path": "%rowIndex", "type": "integer"},
            ]},
        ],
        "where": [{"path": "status = 'finished'"}],
    },
    "patient_names": {
        "resource": "Patient",
        "constant": [{"name": "use", "valueCode": "official"}],
        "select": [
            {"column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "official", "path": "name.where(use = %use).given.join(' ')"},
                {"name": "phones", "path": "telecom.where(system = 'phone').value", "collection": True},
                {"name": "race", "path": "extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-race')"
                                        ".extension('ombCategory').value.ofType(Coding).code.first()"},
                {"name": "dead", "path": "deceased.exists()", "type": "boolean"},
            ]},
            {"unionAll": [
                {"forEach": "identifier", "column": [{"name": "kind", "path": "'identifier'"},
                                                     {"name": "value", "path": "value"}]},
                {"forEach": "address", "column": [{"name": "kind", "path": "'city'"},
                                                  {"name": "value", "path": "city"}]},
            ]},
        ],
    },
    "condition_codes": {
        "resource": "Condition",
        "select": [{"column": [
            {"name": "id", "path": "getResourceKey()"},
            {"name": "code", "path": "code.coding.where(system = 'http://snomed.info/sct').code.first()"},
            {"name": "onset_year", "path": "onset.ofType(dateTime).substring(0, 4)"},
            {"name": "active", "path": "clinicalStatus.coding.code contains 'active'", "type": "boolean"},
        ]}],
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def lake(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> cl.Lake:
    lake = cl.open_lake(tmp_path_factory.mktemp("views") / "lake")
    cl.ingest_fhir([testdata / "synthea-fhir-r4" / "bulk-ndjson-10-patients"], lake=lake)
    return lake


def _views(testdata: Path) -> dict[str, dict[str, Any]]:
    folder = testdata / "sql-on-fhir-v2" / "spec" / "example-viewdefinitions"
    return {**{n: json.loads((folder / f"{n}.json").read_text()) for n in EXAMPLES}, **VIEWS}


def _sorted(table: pa.Table) -> list[dict[str, Any]]:
    return sorted(table.to_pylist(), key=lambda row: json.dumps(row, sort_keys=True, default=str))


def test_views_on_duckdb(lake: cl.Lake, testdata: Path) -> None:
    views = _views(testdata)
    tables = {name: run_view(view, lake=lake) for name, view in views.items()}
    assert tables["patient_demographics"].num_rows == 13
    assert tables["observations"].num_rows == 0  # the sample has no Observations
    encounters = tables["encounter_types"].to_pylist()
    assert encounters and all(r["patient"] and r["start_day"].endswith(("Z", ":00")) for r in encounters)
    names = tables["patient_names"].to_pylist()
    assert {r["kind"] for r in names} == {"identifier", "city"}
    assert all(isinstance(r["phones"], list) for r in names)
    assert {r["active"] for r in tables["condition_codes"].to_pylist()} <= {True, False, None}


@pytest.mark.spark
@pytest.mark.slow
def test_views_agree_on_spark(lake: cl.Lake, testdata: Path) -> None:
    for name, view in _views(testdata).items():
        duck, spark = run_view(view, lake=lake), run_view(view, lake=lake, engine="spark")
        assert duck.schema == spark.schema, name
        assert _sorted(duck) == _sorted(spark), name


@pytest.mark.spark
def test_reference_keys_agree_on_spark(tmp_path: Path) -> None:
    references = ["Patient/p1", "https://ehr.example.org/fhir/Patient/p2", "Patient/p3/_history/2", "Group/g1",
                  "Patient/p4\n", "#contained"]  # fmt: skip
    lines = [
        json.dumps({"resourceType": "Observation", "id": f"o{i}", "status": "final", "subject": {"reference": r},
                    "effectiveDateTime": "2020-05-01T10:00:00+02:00" + "\n" * (i % 2)})
        for i, r in enumerate(references)
    ]  # fmt: skip
    (tmp_path / "obs.ndjson").write_text("\n".join(lines) + "\n")
    lake = cl.open_lake(tmp_path / "lake")
    cl.ingest_fhir([tmp_path / "obs.ndjson"], lake=lake)
    view = {
        "resource": "Observation",
        "select": [{"column": [
            {"name": "id", "path": "id"},
            {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
            {"name": "any", "path": "subject.getReferenceKey()"},
            {"name": "from", "path": "effective.ofType(dateTime).lowBoundary()", "type": "dateTime"},
        ]}],
    }  # fmt: skip
    want = [("o0", "p1", "p1"), ("o1", "p2", "p2"), ("o2", "p3", "p3"), ("o3", None, "g1"), ("o4", None, None),
            ("o5", None, None)]  # fmt: skip
    rows = {}
    for engine in ("duckdb", "spark"):
        rows[engine] = sorted(run_view(view, lake=lake, engine=engine).to_pylist(), key=lambda r: r["id"])
        assert [(r["id"], r["patient"], r["any"]) for r in rows[engine]] == want, engine
    assert rows["duckdb"] == rows["spark"]  # the boundary of a dateTime with a trailing newline too
