"""Typed reading: resources parsed once into model-shaped structs give the rows the general form gives.

The conformance suite runs every case through ``compile_view``, so the typed form is checked there too
wherever a case allows it; these tests cover what the suite does not: resources that break the model's
shapes (read the general way), the struct and the misfit pattern themselves, and every standard view on a
corpus we did not generate, compared row for row with the general form.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import carelake as cl
from carelake.fhir import compile_view, run_view, standard_views
from carelake.fhir._compile import _ViewCompiler
from carelake.fhir._typed import Shape, Untyped

VIEW = {
    "resource": "Patient",
    "select": [
        {
            "column": [
                {"name": "id", "path": "getResourceKey()"},
                {"name": "gender", "path": "gender", "collection": True},
                {"name": "names", "path": "name.count()", "type": "integer"},
                {"name": "family", "path": "name.family", "collection": True},
                {"name": "marital", "path": "maritalStatus.coding.code.first()"},
            ]
        }
    ],
}

# One resource per line, as written: some follow R4's shapes, some break them in ways the struct cannot hold.
LINES = [
    '{"resourceType":"Patient","id":"fits","gender":"female","name":[{"family":"Ada"}],'
    '"maritalStatus":{"coding":[{"code":"M"}]}}',
    '{"resourceType":"Patient","id":"name-object","name":{"family":"Bo"}}',
    '{"resourceType":"Patient","id":"marital-list","maritalStatus":[{"coding":[{"code":"S"}]}]}',
    '{"resourceType":"Patient","id":"gender-list","gender":["male","other"]}',
    '{"resourceType":"Patient","id":"escaped-key","n\\u0061me":[{"family":"Cy"}]}',
    '{"resourceType":"Patient","id":"null-item","name":[null,{"family":"Di"}]}',
    '{"resourceType":"Patient","id":"spaced", "name" : [ {"family" : "Ed"} ] , "gender" :"male"}',
    '{"resourceType":"Patient","id":"gender-number","gender":5}',
    '{"resourceType":"Patient","id":"gender-object","gender":{"text":"f"}}',
    '{"resourceType":"Patient","id":"code-boolean","maritalStatus":{"coding":[{"code":true}]}}',
    '{"resourceType":"Patient","id":"family-number","name":[{"family":-2}]}',
]

EXPECTED = {
    "fits": {"gender": ["female"], "names": 1, "family": ["Ada"], "marital": "M"},
    "name-object": {"gender": [], "names": 1, "family": ["Bo"], "marital": None},
    "marital-list": {"gender": [], "names": 0, "family": [], "marital": "S"},
    "gender-list": {"gender": ["male", "other"], "names": 0, "family": [], "marital": None},
    "escaped-key": {"gender": [], "names": 1, "family": ["Cy"], "marital": None},
    "null-item": {"gender": [], "names": 1, "family": ["Di"], "marital": None},
    "spaced": {"gender": ["male"], "names": 1, "family": ["Ed"], "marital": None},
    # Strings are read as text in the struct; anything else under their names is read the general way.
    "gender-number": {"gender": ["5"], "names": 0, "family": [], "marital": None},
    "gender-object": {"gender": ['{"text":"f"}'], "names": 0, "family": [], "marital": None},
    "code-boolean": {"gender": [], "names": 0, "family": [], "marital": "true"},
    "family-number": {"gender": [], "names": 1, "family": ["-2"], "marital": None},
}


def _general(view: dict[str, Any]) -> str:
    return _ViewCompiler(view).compile(None)


def test_the_view_is_read_typed() -> None:
    sql = compile_view(VIEW)
    assert "cl_fp_typed(" in sql and "cl_fp_parse(" in sql
    assert "cl_fp_typed(" not in _general(VIEW)


def test_resources_that_break_the_shapes_are_read_the_general_way(engine: str, tmp_path: Path) -> None:
    source = tmp_path / "patients.ndjson"
    source.write_text("\n".join(LINES) + "\n")
    rows = {r.pop("id"): r for r in run_view(VIEW, source=source, engine=engine).to_pylist()}
    assert rows == EXPECTED


def test_misfit_pattern_flags_what_the_struct_cannot_hold() -> None:
    compiler = _ViewCompiler(VIEW, typed=True)
    assert compiler.compiled.rows.columns
    assert compiler.shape is not None
    pattern = re.compile(compiler.shape.misfit_pattern())
    flagged = {json.loads(line.replace("\\u0061", "a"))["id"] for line in LINES if pattern.search(line)}
    # The escaped key is left to the general way by contains('\u').
    misfits = {"name-object", "marital-list", "gender-list", "gender-number", "gender-object", "code-boolean"}
    assert flagged == misfits | {"family-number"}
    assert json.loads(compiler.shape.structure()) == {
        "id": "VARCHAR",
        "gender": "VARCHAR",
        "name": [{"family": "VARCHAR"}],
        "maritalStatus": {"coding": [{"code": "VARCHAR"}]},
    }


def test_a_name_read_both_as_list_and_object_is_always_flagged() -> None:
    shape = Shape.root("Patient")
    shape.read("name")  # HumanName list
    shape.read("contact").read("name")  # one HumanName
    pattern = re.compile(shape.misfit_pattern())
    assert pattern.search('{"name":[{"family":"x"}]}') and pattern.search('{"contact":[{"name":{"family":"y"}}]}')


CONDITIONS = [
    '{"resourceType":"Condition","id":"fits","code":{"coding":[{"code":"c1"}]}}',
    # Condition.evidence.code is a list: under that name a list is no misfit, and the struct's text leaf
    # (Coding.code) cannot hold one, so the pattern sends the resource the general way.
    '{"resourceType":"Condition","id":"evidence","code":{"coding":[{"code":"c2"}]},'
    '"evidence":[{"code":[{"coding":[{"code":"e"}]}]}]}',
    '{"resourceType":"Condition","id":"code-list","code":{"coding":[{"code":["c3","c4"]}]}}',
]


def test_a_text_leaf_whose_name_is_a_list_elsewhere(engine: str, tmp_path: Path) -> None:
    view = {
        "resource": "Condition",
        "select": [{"column": [{"name": "id", "path": "id"}, {"name": "code", "path": "code.coding.code.first()"}]}],
    }
    compiler = _ViewCompiler(view, typed=True)
    assert compiler.compiled.rows.columns
    shape = compiler.shape
    assert shape is not None
    assert json.loads(shape.structure())["code"] == {"coding": [{"code": "VARCHAR"}]}
    pattern = re.compile(shape.misfit_pattern())
    assert [json.loads(line)["id"] for line in CONDITIONS if pattern.search(line)] == ["evidence", "code-list"]
    source = tmp_path / "conditions.ndjson"
    source.write_text("\n".join(CONDITIONS) + "\n")
    rows = {r["id"]: r["code"] for r in run_view(view, source=source, engine=engine).to_pylist()}
    assert rows == {"fits": "c1", "evidence": "c2", "code-list": "c3"}


def test_views_that_need_whole_elements_are_compiled_the_general_way() -> None:
    for path in ("name = name", "name.distinct().count()", "name.join(',')"):
        view = {"resource": "Patient", "select": [{"column": [{"name": "x", "path": path}]}]}
        with pytest.raises(Untyped):
            _ViewCompiler(view, typed=True).compiled  # noqa: B018
        assert "cl_fp_typed(" not in compile_view(view)
    with pytest.raises(Untyped):
        Shape.root("NotAResource")


@pytest.fixture(scope="module")
def synthea(tmp_path_factory: pytest.TempPathFactory, testdata: Path) -> cl.Lake:
    path = tmp_path_factory.mktemp("typed") / "lake"
    cl.ingest_fhir([testdata / "synthea-fhir-r4"], lake=path)
    return cl.open_lake(path)


@pytest.mark.parametrize("name", sorted(v["name"] for v in standard_views()))
def test_standard_views_typed_equal_general_on_synthea(synthea: cl.Lake, name: str) -> None:
    view = next(v for v in standard_views() if v["name"] == name)
    typed = compile_view(view)
    assert "cl_fp_typed(" in typed
    eng = synthea.connect("duckdb")
    try:
        a, b = (eng.query(f"SELECT * FROM ({sql}) AS v").to_pylist() for sql in (typed, _general(view)))
    finally:
        eng.close()
    key = lambda r: json.dumps(r, sort_keys=True, default=str)  # noqa: E731
    assert len(a) > 0 or name == "family_history"
    assert sorted(a, key=key) == sorted(b, key=key)


def test_the_model_names_every_primitive_as_fhir_does() -> None:
    # Typed reading picks text leaves by these names, and quality its format checks: fhir.resources calls
    # base64Binary "encodedBytes" and uuid "uuidVersion", which neither would recognise.
    from carelake.fhir._model import PRIMITIVE_TYPES, members
    from carelake.sources.fhir._r4 import r4_resource_types

    found: set[str] = set()
    seen: set[str] = set()
    todo = sorted(r4_resource_types())
    while todo:
        type_ = todo.pop()
        if type_ in seen:
            continue
        seen.add(type_)
        for member in members(type_).values():
            if member.primitive:
                found.add(member.type)
            elif members(member.type):
                todo.append(member.type)
    assert found <= PRIMITIVE_TYPES
    assert {"base64Binary", "uuid", "decimal", "dateTime"} <= found
    assert members("Attachment")["data"].type == "base64Binary"
