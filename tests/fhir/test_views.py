"""The public view API: compile_view's errors name the element, run_view runs over resources or a lake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import carelake as cl
import carelake.fhir
from carelake.fhir import ViewDefinitionError, compile_view, run_view

PATIENTS = [
    {"resourceType": "Patient", "id": "p1", "gender": "female", "name": [{"family": "Ng", "given": ["Ada", "B"]}]},
    {"resourceType": "Patient", "id": "p2", "gender": "male", "name": [{"family": "Oz"}, {"family": "Po"}]},
    {"resourceType": "Observation", "id": "o1", "status": "final", "subject": {"reference": "Patient/p1"},
     "code": {"text": "hr"}, "valueQuantity": {"value": 72, "unit": "/min"}},
]  # fmt: skip

NAMES = {
    "resource": "Patient",
    "select": [
        {"column": [{"name": "id", "path": "getResourceKey()"}, {"name": "gender", "path": "gender", "type": "code"}]},
        {"forEach": "name", "column": [{"name": "family", "path": "family"}, {"name": "n", "path": "%rowIndex",
                                                                             "type": "integer"}]},
    ],
}  # fmt: skip

SNAPSHOTS = Path(__file__).parent / "snapshots"


def test_all_is_complete() -> None:
    public = {n for n in dir(carelake.fhir) if not n.startswith("_")} - {"conformance"}
    assert public == set(carelake.fhir.__all__)
    assert issubclass(ViewDefinitionError, cl.ConfigError)


def test_run_view_over_resources(engine: str) -> None:
    table = run_view(NAMES, resources=PATIENTS, engine=engine)
    assert table.column_names == ["id", "gender", "family", "n"]
    assert str(table.schema.field("n").type) == "int64"
    rows = sorted(table.to_pylist(), key=lambda r: (r["id"], r["n"]))
    assert rows == [
        {"id": "p1", "gender": "female", "family": "Ng", "n": 0},
        {"id": "p2", "gender": "male", "family": "Oz", "n": 0},
        {"id": "p2", "gender": "male", "family": "Po", "n": 1},
    ]


def test_run_view_over_a_lake(engine: str, tmp_path: Path) -> None:
    source = tmp_path / "in.ndjson"
    source.write_text("\n".join(json.dumps(r) for r in PATIENTS) + "\n")
    lake = cl.open_lake(tmp_path / "lake")
    cl.ingest_fhir([source], lake=lake)
    view = {
        "resource": "Observation",
        "select": [{"column": [
            {"name": "patient", "path": "subject.getReferenceKey(Patient)"},
            {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
        ]}],
    }  # fmt: skip
    assert run_view(view, lake=lake, engine=engine).to_pylist() == [{"patient": "p1", "value": 72.0}]
    assert lake.sql(compile_view(view), engine=engine).to_pylist() == [{"patient": "p1", "value": 72.0}]


def test_run_view_needs_one_source() -> None:
    with pytest.raises(cl.ConfigError, match="exactly one of lake=, source= or resources="):
        run_view(NAMES)
    with pytest.raises(cl.ConfigError, match="not a FHIR resource"):
        run_view(NAMES, resources=[{"id": "x"}])


def test_runtime_errors_are_view_errors() -> None:
    view = {"resource": "Patient", "select": [{"column": [{"name": "family", "path": "name.family"}]}]}
    with pytest.raises(ViewDefinitionError, match=r"select\[0\]\.column\[0\]\.path: gave several values") as info:
        run_view(view, resources=PATIENTS)
    assert "(resource Patient/p2)" in str(info.value)


def test_repeat_depth_is_bounded(engine: str) -> None:
    def items(depth: int, levels: int) -> list[dict[str, Any]]:
        return [{"linkId": str(depth), "item": items(depth + 1, levels)}] if depth < levels else []

    view = {"resource": "QuestionnaireResponse",
            "select": [{"repeat": ["item"], "column": [{"name": "link", "path": "linkId"}]}]}  # fmt: skip
    deep = {"resourceType": "QuestionnaireResponse", "id": "q1", "item": items(0, 32)}
    assert run_view(view, resources=[deep], engine=engine).num_rows == 32
    deep["item"] = items(0, 33)
    with pytest.raises(ViewDefinitionError, match=r"select\[0\]\.repeat: nested more than 32 levels deep"):
        run_view(view, resources=[deep], engine=engine)


def _column(path: Any = "id", **extra: Any) -> dict[str, Any]:
    return {"name": "c", "path": path, **extra}


@pytest.mark.parametrize(
    ("view", "element", "message"),
    [
        ([], "view", "must be a JSON object"),
        ({}, "resource", "must name the FHIR resource type"),
        ({"resource": "patient", "select": []}, "resource", "must name the FHIR resource type"),
        ({"resource": "Patient"}, "select", "non-empty select list"),
        ({"resource": "Patient", "select": [{}]}, "select", "defines no columns"),
        ({"resource": "Patient", "select": [{"column": [_column(), {"name": "x"}]}]},
         "select[0].column[1].path", "must be a string, not NoneType"),
        ({"resource": "Patient", "select": [{"column": [_column()]}, {"column": [_column("x.(")]}]},
         "select[1].column[0].name", "is used twice"),
        ({"resource": "Patient", "select": [{"column": [{"name": "1x", "path": "id"}]}]},
         "select[0].column[0].name", "must start with a letter"),
        ({"resource": "Patient", "select": [{"column": [_column(collection="yes")]}]},
         "select[0].column[0].collection", "must be true or false"),
        ({"resource": "Patient", "select": [{"forEach": "name", "forEachOrNull": "name", "column": [_column()]}]},
         "select[0]", "use only one of forEach"),
        ({"resource": "Patient", "select": [{"forEach": "@@", "column": [_column()]}]},
         "select[0].forEach", "cannot parse FHIRPath"),
        ({"resource": "Patient", "select": [{"colum": [_column()]}]}, "select[0]", "unknown key 'colum'"),
        ({"resource": "Patient", "select": [{"repeat": "item", "column": [_column()]}]},
         "select[0].repeat", "non-empty list"),
        ({"resource": "Patient",
          "select": [{"unionAll": [{"column": [_column()]}, {"column": [_column("x", type="integer")]}]}]},
         "select[0].unionAll[1]", "same columns in the same order with the same types"),
        ({"resource": "Patient", "constant": [{"name": "a", "valueString": "x", "valueCode": "y"}],
          "select": [{"column": [_column()]}]}, "constant[0]", r"exactly one value\[x\]"),
        ({"resource": "Patient", "constant": [{"name": "a", "valueInteger": "1"}], "select": [{"column": [_column()]}]},
         "constant[0].valueInteger", "must be an integer"),
        ({"resource": "Patient", "select": [{"column": [_column()]}], "where": [{"path": "'yes'"}]},
         "where[0].path", "must give a boolean"),
        ({"resource": "Patient", "select": [{"column": [_column("name.where(use = %missing)")]}]},
         "select[0].column[0].path", "undefined constant %missing"),
    ],
)  # fmt: skip
def test_invalid_views_name_the_element(view: Any, element: str, message: str) -> None:
    with pytest.raises(ViewDefinitionError, match=message) as info:
        compile_view(view)
    assert info.value.element == element
    assert str(info.value).startswith(f"{element}: ")


def test_sql_snapshots() -> None:
    """The SQL each engine gets for a representative view; rewrite with CARELAKE_UPDATE_SNAPSHOTS=1."""
    import os

    from carelake.engine import to_dialect

    sql = compile_view(NAMES)
    for dialect in ("duckdb", "spark"):
        text = to_dialect(sql, dialect) + "\n"
        path = SNAPSHOTS / f"names.{dialect}.sql"
        if os.environ.get("CARELAKE_UPDATE_SNAPSHOTS"):
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
        assert text == path.read_text(), f"{path.name} changed; rerun with CARELAKE_UPDATE_SNAPSHOTS=1 if intended"


def _coded(id_: str, code: str) -> str:
    """An Observation as NDJSON text, with the code written as given (possibly escaped)."""
    return (
        f'{{"resourceType": "Observation", "id": "{id_}", "status": "final", '
        f'"code": {{"coding": [{{"system": "http://loinc.org", "code": "{code}"}}]}}}}'
    )


def test_where_reads_only_resources_holding_its_strings(engine: str, tmp_path: Path) -> None:
    """A where on a string value scans the text first; escaped JSON still matches, computed values add no scan."""
    source = tmp_path / "in.ndjson"
    source.write_text("\n".join([_coded("o1", "8302-2"), _coded("o2", "29463-7"), _coded("o3", "8302\\u002d2")]) + "\n")
    lake = cl.open_lake(tmp_path / "lake")
    cl.ingest_fhir([source], lake=lake)
    view = {
        "resource": "Observation",
        "constant": [{"name": "loinc", "valueUri": "http://loinc.org"}],
        "select": [{"column": [{"name": "id", "path": "id"}]}],
        "where": [{"path": "code.coding.where(system = %loinc and code = '8302-2').exists()"}],
    }
    sql = compile_view(view)
    assert "contains(resource, '8302-2')" in sql and "contains(resource, 'http://loinc.org')" in sql
    assert sorted(r["id"] for r in run_view(view, lake=lake, engine=engine).to_pylist()) == ["o1", "o3"]

    computed = {**view, "where": [{"path": "code.coding.code.first().replace('-', '') = '83022'"}]}
    prefilter = "OR contains(resource, '\\'))"  # what ends the text scan (kept: texts with an escape)
    assert prefilter in sql and prefilter not in compile_view(computed)
    assert sorted(r["id"] for r in run_view(computed, lake=lake, engine=engine).to_pylist()) == ["o1", "o3"]
    either = {**view, "where": [{"path": "code.coding.code = '8302-2' or code.coding.code = '29463-7'"}]}
    assert "(contains(resource, '29463-7') OR contains(resource, '8302-2'))" in compile_view(either)
    assert len(run_view(either, lake=lake, engine=engine)) == 3
    half = {**view, "where": [{"path": "code.coding.code = '29463-7' or status.replace('l', '') = 'fina'"}]}
    assert prefilter not in compile_view(half)  # one side requires no text, so the clause requires none
    assert sorted(r["id"] for r in run_view(half, lake=lake, engine=engine).to_pylist()) == ["o1", "o2", "o3"]
