"""carelake's cl_fp_* SQL functions (FHIRPath collections) give the same answers on DuckDB and Spark."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from carelake.engine import make_engine
from carelake.engine._functions import FUNCTIONS
from carelake.errors import QueryError

DOC = (
    '{"id": "p1", "name": [{"family": "F", "given": ["a", "b"]}, {"family": null}], "active": true, '
    '"n": 1.25, "i": 7, "o": {"x": 1}, "s": "text", "nul": null, "arr": [1, null, "two"], '
    '"zs": [1.0, 1.25, 3], "z3": 2.500}'
)


def _texts(c: str) -> str:
    return f"list_transform({c}, lambda _v: cl_fp_json(_v))"


R = "cl_fp_parse(t)"
STRUCTURE = {"name": [{"family": "JSON"}], "o": {"x": "JSON"}, "arr": "JSON", "nope": "JSON", "nul": "JSON"}
TYPED = f"cl_fp_typed(t, '{json.dumps(STRUCTURE)}')"
EXPRESSIONS: dict[str, tuple[str, Any]] = {
    "get array": (_texts(f"cl_fp_get({R}, 'name')"), ['{"family":"F","given":["a","b"]}', '{"family":null}']),
    "get object": (_texts(f"cl_fp_get({R}, 'o')"), ['{"x":1}']),
    "get missing": (_texts(f"cl_fp_get({R}, 'nope')"), []),
    "get json null": (_texts(f"cl_fp_get({R}, 'nul')"), []),
    "get drops nulls": (_texts(f"cl_fp_get({R}, 'arr')"), ["1", '"two"']),
    "members like get": (
        _texts(f"cl_fp_member(cl_fp_members({R}, ['nope', 'arr', 'name', 'nul', 'o']), 1)"),
        ["1", '"two"'],
    ),
    "member array": (
        _texts(f"cl_fp_member(cl_fp_members({R}, ['nope', 'arr', 'name']), 2)"),
        ['{"family":"F","given":["a","b"]}', '{"family":null}'],
    ),
    "member missing and null": (
        f"[cl_fp_count(cl_fp_member(cl_fp_members({R}, ['nope', 'nul']), 0)), "
        f"cl_fp_count(cl_fp_member(cl_fp_members({R}, ['nope', 'nul']), 1))]",
        [0, 0],
    ),
    "typed elements like get": (
        _texts(f"cl_fp_elements(struct_extract({TYPED}, 'arr'))"),
        ["1", '"two"'],
    ),
    "typed list of structs": (
        f"list_transform(struct_extract({TYPED}, 'name'), lambda _n: cl_fp_str(cl_fp_at("
        "cl_fp_elements(struct_extract(_n, 'family')), 0)))",
        ["F", None],
    ),
    "typed object and missing": (
        f"[cl_fp_count(cl_fp_elements(struct_extract(struct_extract({TYPED}, 'o'), 'x'))), "
        f"cl_fp_count(cl_fp_elements(struct_extract({TYPED}, 'nope'))), "
        f"cl_fp_count(cl_fp_elements(struct_extract({TYPED}, 'nul')))]",
        [1, 0, 0],
    ),
    "get on a string": (_texts("cl_fp_get(cl_fp_of('x'), 'id')"), []),
    "get on no element": (_texts("cl_fp_get(cl_fp_null(), 'id')"), []),
    "nested": (
        f"list_transform(flatten(list_transform(cl_fp_get({R}, 'name'), lambda _n: cl_fp_get(_n, 'given'))), "
        "lambda _g: cl_fp_str(_g))",
        ["a", "b"],
    ),
    "kinds": (
        f"[cl_fp_kind({R}), cl_fp_kind(cl_fp_at(cl_fp_get({R}, 's'), 0)), cl_fp_kind(cl_fp_at(cl_fp_get({R}, 'n'), 0)),"
        f" cl_fp_kind(cl_fp_at(cl_fp_get({R}, 'active'), 0)), cl_fp_kind(cl_fp_null())]",
        ["object", "string", "number", "boolean", None],
    ),
    "str": (f"cl_fp_str(cl_fp_at(cl_fp_get({R}, 's'), 0))", "text"),
    "num": (f"cl_fp_num(cl_fp_at(cl_fp_get({R}, 'n'), 0))", 1.25),
    "int": (f"cl_fp_int(cl_fp_at(cl_fp_get({R}, 'i'), 0))", 7),
    "bool": (f"[cl_fp_bool(cl_fp_at(cl_fp_get({R}, 'active'), 0)), cl_fp_bool(cl_fp_of('true'))]", [True, None]),
    "scale": (f"cl_fp_scale(cl_fp_at(cl_fp_get({R}, 'n'), 0))", 2),
    # As written (FHIR decimals keep their precision), also inside a lambda; see test_scale_keeps_zeros.
    "scale as written": (f"list_transform(cl_fp_get({R}, 'zs'), lambda _z: cl_fp_scale(_z))", [1, 2, 0]),
    "of": (_texts("[cl_fp_of('x'), cl_fp_of(CAST(2 AS BIGINT)), cl_fp_of(TRUE)]"), ['"x"', "2", "true"]),
    "count": (f"cl_fp_count(cl_fp_get({R}, 'name'))", 2),
    "at out of range": (f"cl_fp_at(cl_fp_get({R}, 'name'), 5) IS NULL", True),
    "slice": (_texts(f"cl_fp_slice(cl_fp_get({R}, 'arr'), 1, 5)"), ['"two"']),
    "slice empty": (_texts(f"cl_fp_slice(cl_fp_get({R}, 'arr'), 0, 0)"), []),
    "indexed": (f"list_transform(cl_fp_indexed(cl_fp_get({R}, 'arr')), lambda _s: _s.i)", [0, 1]),
    "indexed or null": ("list_transform(cl_fp_indexed_or_null(cl_fp_empty()), lambda _s: _s.e IS NULL)", [True]),
    "iterate": (
        "cl_fp_iterate([CAST(1 AS BIGINT)], lambda _a, _n: list_concat(_a, [CAST(_n AS BIGINT)]), 3)",
        [1, 0, 1, 2],
    ),
    "one": (f"cl_fp_str(cl_fp_one(cl_fp_get({R}, 's'), 'boom'))", "text"),
    "truthy": (
        f"[cl_fp_truthy(cl_fp_get({R}, 'active')), cl_fp_truthy(cl_fp_get({R}, 's')), cl_fp_truthy(cl_fp_empty())]",
        [True, True, None],
    ),
    "where": (f"[cl_fp_where(cl_fp_get({R}, 'active'), 'boom'), cl_fp_where(cl_fp_empty(), 'boom')]", [True, False]),
    "element equals": (
        "[cl_fp_element_equals(cl_fp_of(1), cl_fp_of(1.0)), cl_fp_element_equals(cl_fp_of('1'), cl_fp_of(1)), "
        "cl_fp_element_equals(cl_fp_of('a'), cl_fp_null())]",
        [True, False, None],
    ),
    "equals": (
        f"[cl_fp_equals(cl_fp_get({R}, 'arr'), cl_fp_get({R}, 'arr')), cl_fp_equals(cl_fp_get({R}, 'arr'), "
        f"cl_fp_get({R}, 's')), cl_fp_equals(cl_fp_empty(), cl_fp_get({R}, 's'))]",
        [True, False, None],
    ),
    "compare": ("[cl_fp_compare(cl_fp_of(2), cl_fp_of(10)), cl_fp_compare(cl_fp_of('2'), cl_fp_of('10'))]", [-1, 1]),
    "distinct": (_texts("cl_fp_distinct([cl_fp_of(1), cl_fp_of('a'), cl_fp_of(1)])"), ["1", '"a"']),
}


@pytest.fixture(scope="module", params=["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def results(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path: Path = tmp_path_factory.mktemp("fn") / "docs.parquet"
    pq.write_table(pa.table({"t": [DOC]}), path)
    eng = make_engine(request.param)
    eng.register_parquet("docs", [path])
    names = list(EXPRESSIONS)
    sql = "SELECT " + ", ".join(f"{EXPRESSIONS[n][0]} AS c{i}" for i, n in enumerate(names)) + " FROM docs"
    row = eng.query(sql).to_pylist()[0]
    return {n: row[f"c{i}"] for i, n in enumerate(names)}


@pytest.mark.parametrize("name", list(EXPRESSIONS))
def test_function(name: str, results: dict[str, Any]) -> None:
    assert results[name] == EXPRESSIONS[name][1]


def test_errors_carry_the_message(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"t": [DOC]}), path)
    eng = make_engine(engine)
    eng.register_parquet("docs", [path])
    with pytest.raises(QueryError, match="several names"):
        eng.query(f"SELECT cl_fp_one(cl_fp_get({R}, 'name'), 'several names') IS NULL AS x FROM docs")
    with pytest.raises(QueryError, match="not a boolean"):
        eng.query(f"SELECT cl_fp_where(cl_fp_get({R}, 's'), 'not a boolean') AS x FROM docs")


def test_fits_reads_typed_only_what_the_struct_holds_and_only_on_duckdb(engine: str) -> None:
    eng = make_engine(engine)
    texts = ['{"a":[1]}', '{"a":{}}', '{"a":null}', "{bad", '{"\\u0061":[1]}']
    tests = ", ".join(f"cl_fp_fits('{t}', '\"a\"\\s*:\\s*{{') AS c{i}" for i, t in enumerate(texts))
    row = eng.query(f"SELECT {tests}").to_pylist()[0]
    # The pattern flags an object under "a"; a JSON null and a \u escape are read the general way. Invalid JSON
    # passes: cl_fp_typed gives NULL for it, and the compiler reads it the general way too.
    expected = [True, False, False, True, False] if engine == "duckdb" else [False] * 5
    assert [row[f"c{i}"] for i in range(len(texts))] == expected
    if engine == "duckdb":
        not_json = TYPED.replace("(t,", "('{bad',")
        assert eng.query(f"SELECT {not_json} IS NULL AS x").to_pylist() == [{"x": True}]


def test_every_fhirpath_function_is_tested() -> None:
    used = " ".join(sql for sql, _ in EXPRESSIONS.values())
    apart = {"cl_fp_error", "cl_fp_fits"}  # tested above: an error, and a test that differs by engine on purpose
    missing = [n for n in FUNCTIONS if n.startswith("cl_fp_") and n + "(" not in used and n not in apart]
    assert missing == []


def test_scale_keeps_every_trailing_zero(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if engine == "duckdb":
        # DuckDB's JSON reader (yyjson) writes a number back as the shortest double: 2.500 becomes 2.5.
        # Only one trailing zero survives (1.0 stays 1.0). docs/views.md lists this gap.
        request.applymarker(pytest.mark.xfail(strict=True, reason="DuckDB re-writes 2.500 as 2.5"))
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"t": [DOC]}), path)
    eng = make_engine(engine)
    eng.register_parquet("docs", [path])
    scale = eng.query(f"SELECT cl_fp_scale(cl_fp_at(cl_fp_get({R}, 'z3'), 0)) AS s FROM docs").column("s")
    assert scale.to_pylist() == [3]
