"""FHIRPath beyond the conformance suite: each expression, compiled to SQL, gives the same value on every engine."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from carelake.fhir import ViewDefinitionError, compile_view, run_view
from carelake.fhir._fhirpath import Call, parse
from carelake.fhir._library import FUNCTIONS

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "active": True,
    "gender": "female",
    "birthDate": "1970-06",
    "name": [
        {"use": "official", "family": "Smith", "given": ["Ann", "Bea"]},
        {"use": "nickname", "given": ["Annie"]},
        {"use": "old", "family": "Jones", "given": ["Ann"]},
    ],
    "telecom": [{"system": "phone", "value": " 555-0100 "}],
    "multipleBirthInteger": 2,
    "generalPractitioner": [
        {"reference": "Practitioner/pr1"},
        {"reference": "https://example.org/fhir/Organization/o1/_history/3"},
    ],
    "extension": [{"url": "http://example.org/score", "valueDecimal": 2.50}],
}

# (FHIRPath, column type, collection, expected value for PATIENT)
CASES: list[tuple[str, str, bool, Any]] = [
    ("name.given", "string", True, ["Ann", "Bea", "Annie", "Ann"]),
    ("name.given.distinct()", "string", True, ["Ann", "Bea", "Annie"]),
    ("name.given.count()", "integer", False, 4),
    ("name.last().family", "string", False, "Jones"),
    ("name.tail().use", "code", True, ["nickname", "old"]),
    ("name.skip(1).take(1).use", "code", True, ["nickname"]),
    ("name.take(0).use", "code", True, []),
    ("name.where(family.exists()).count()", "integer", False, 2),
    ("name.select(given.first())", "string", True, ["Ann", "Annie", "Ann"]),
    ("name.exists(use = 'old')", "boolean", False, True),
    ("name.all(given.exists())", "boolean", False, True),
    ("name.all(family.exists())", "boolean", False, False),
    ("Patient.name.family.first()", "string", False, "Smith"),
    ("Observation.status", "string", True, []),
    ("%resource.id", "id", False, "p1"),
    ("name.given.first() | name.given.last()", "string", True, ["Ann"]),
    ("name.given.first().combine(name.given.last())", "string", True, ["Ann", "Ann"]),
    ("'Ann' in name.given", "boolean", False, True),
    ("name.given contains 'Zed'", "boolean", False, False),
    ("gender.upper()", "string", False, "FEMALE"),
    ("gender.length()", "integer", False, 6),
    ("gender.substring(1, 3)", "string", False, "ema"),
    ("gender.startsWith('fe') and gender.endsWith('male')", "boolean", False, True),
    ("gender.contains('ema')", "boolean", False, True),
    ("gender.indexOf('male')", "integer", False, 2),
    ("gender.replace('fe', 'Fe')", "string", False, "Female"),
    ("gender.matches('^f.m')", "boolean", False, True),
    ("gender.replaceMatches('[aeiou]', '_')", "string", False, "f_m_l_"),
    ("telecom.value.trim()", "string", False, "555-0100"),
    ("gender & '-' & {}", "string", False, "female-"),
    ("gender + '!'", "string", False, "female!"),
    ("gender ~ 'FEMALE'", "boolean", False, True),
    ("gender != 'male'", "boolean", False, True),
    ("multipleBirth.ofType(integer) * 3 - 1", "integer", False, 5),
    ("multipleBirth.ofType(integer) / 4", "decimal", False, 0.5),
    ("7 div 2", "integer", False, 3),
    ("-7 div 2", "integer", False, -3),
    ("7 mod 4", "integer", False, 3),
    ("(1.5).round()", "decimal", False, 2.0),
    ("(2.7).floor()", "integer", False, 2),
    ("(-4).abs()", "integer", False, 4),
    ("(16).sqrt()", "decimal", False, 4.0),
    ("1 / 0", "decimal", False, None),
    ("'12'.toInteger() + 1", "integer", False, 13),
    ("multipleBirth.ofType(integer).toString()", "string", False, "2"),
    ("multipleBirth.ofType(integer) >= 2 and multipleBirth.ofType(integer) < 3", "boolean", False, True),
    ("birthDate > @1969-12", "boolean", False, True),
    ("active.not()", "boolean", False, False),
    ("active xor false", "boolean", False, True),
    ("false implies {}", "boolean", False, True),
    ("{} implies true", "boolean", False, True),
    ("{} and false", "boolean", False, False),
    ("{} or true", "boolean", False, True),
    ("{} or false", "boolean", False, None),
    ("iif(active, 'yes', 'no')", "string", False, "yes"),
    ("iif(gender = 'male', 'm')", "string", False, None),
    ("active is boolean", "boolean", False, True),
    ("gender.empty()", "boolean", False, False),
    ("multipleBirth.ofType(integer).exists()", "boolean", False, True),
    ("multipleBirth.ofType(boolean).exists()", "boolean", False, False),
    ("extension('http://example.org/score').value.ofType(decimal)", "decimal", False, 2.5),
    ("generalPractitioner.getReferenceKey()", "string", True, ["pr1", "o1"]),
    ("generalPractitioner.getReferenceKey(Organization)", "string", True, ["o1"]),
    ("generalPractitioner.first().getReferenceKey(Organization)", "string", False, None),
    ("getResourceKey()", "string", False, "p1"),
    ("birthDate.highBoundary()", "date", False, "1970-06-30"),
    ("@2020.lowBoundary()", "date", False, "2020-01-01"),
    ("@2020-02.highBoundary()", "date", False, "2020-02-29"),
    ("@T10:30.highBoundary()", "time", False, "10:30:59.999"),
    ("@2020-01-01T10:00Z.lowBoundary()", "dateTime", False, "2020-01-01T10:00:00.000Z"),
    ("(2.50).lowBoundary()", "decimal", False, 2.45),
    ("name.where($this.use = 'old').family", "string", False, "Jones"),
    ("name.given.where($this = 'Ann').count()", "integer", False, 2),
    ("name.given.allTrue()", "boolean", False, False),
    ("active.allTrue() and active.anyTrue()", "boolean", False, True),
    ("name.given.isDistinct()", "boolean", False, False),
    ("name[1].given.single()", "string", False, "Annie"),
    ("name.given[10]", "string", False, None),
    ("name.family = name.family", "boolean", False, True),
    ("name.given.join(' ')", "string", False, "Ann Bea Annie Ann"),
    ("active.allFalse() or active.anyFalse()", "boolean", False, False),
    ("(2.1).ceiling() + (-2.7).truncate()", "integer", False, 1),
    ("(0).exp() + (1).ln() + (2).power(3)", "decimal", False, 9.0),
    ("gender.hasValue() and 'ABC'.lower() = 'abc'", "boolean", False, True),
    ("'2.5'.toDecimal() * 2", "decimal", False, 5.0),
    ("name.use.union(name.use)", "code", True, ["official", "nickname", "old"]),
]


def _calls(node: object) -> set[str]:
    names = {node.name} if isinstance(node, Call) else set()
    for value in vars(node).values() if dataclasses.is_dataclass(node) else ():
        for child in value if isinstance(value, tuple) else (value,):
            names |= _calls(child)
    return names


def test_every_function_is_exercised() -> None:
    used = set().union(*(_calls(parse(path)) for path, *_ in CASES))
    assert set(FUNCTIONS) - used == set()


def _view(path: str, type_: str, collection: bool, name: str = "v") -> dict[str, Any]:
    column = {"name": name, "path": path, "type": type_, "collection": collection}
    return {"resource": "Patient", "select": [{"column": [column]}]}


@pytest.fixture(scope="module", params=["duckdb", pytest.param("spark", marks=[pytest.mark.spark, pytest.mark.slow])])
def values(request: pytest.FixtureRequest) -> dict[str, Any]:
    # Views of ten expressions each, one column per expression: few queries keep Spark quick
    # (Spark's planning time grows faster than the number of columns).
    columns = [{"name": f"c{i}", "path": p, "type": t, "collection": c} for i, (p, t, c, _) in enumerate(CASES)]
    values: dict[str, Any] = {}
    for start in range(0, len(columns), 10):
        view = {"resource": "Patient", "select": [{"column": columns[start : start + 10]}]}
        values.update(run_view(view, resources=[PATIENT], engine=request.param).to_pylist()[0])
    return values


@pytest.mark.parametrize("i", range(len(CASES)), ids=[c[0] for c in CASES])
def test_expression(i: int, values: dict[str, Any]) -> None:
    expected = CASES[i][3]
    value = values[f"c{i}"]
    if isinstance(expected, float):
        assert value == pytest.approx(expected)
    else:
        assert value == expected
        assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("name.foo(", "cannot parse FHIRPath"),
        ("name.resolve()", r"unsupported FHIRPath function resolve\(\)"),
        ("name.first(1)", r"first\(\) takes 0 argument\(s\), got 1"),
        ("%nope", "undefined constant %nope"),
        ("5 'mg'", "quantity literals are not supported"),
        ("$index", r"\$index is not supported"),
    ],
)
def test_bad_expressions_name_the_element(path: str, message: str) -> None:
    with pytest.raises(ViewDefinitionError, match=message) as info:
        compile_view(_view(path, "string", True))
    assert str(info.value).startswith("select[0].column[0].path: ")
    assert info.value.element == "select[0].column[0].path"
