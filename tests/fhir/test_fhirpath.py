"""The FHIRPath parser: precedence, literals, and that any text either parses or names the problem."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carelake.fhir import ViewDefinitionError, compile_view, run_view
from carelake.fhir._fhirpath import (
    Binary,
    Call,
    Constant,
    Indexer,
    Literal,
    Member,
    TypeOp,
    Unary,
    Variable,
    parse,
)


def test_paths_functions_and_indexers() -> None:
    assert parse("name[0].given.first()") == Call(
        Member(Indexer(Member(None, "name"), Literal(0, "integer")), "given"), "first", ()
    )
    assert parse("where(use = %u)") == Call(None, "where", (Binary("=", Member(None, "use"), Constant("u")),))
    assert parse("$this.`div`") == Member(Variable("this"), "div")
    assert parse("%`odd name`") == Constant("odd name")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a or b and c", Binary("or", Member(None, "a"), Binary("and", Member(None, "b"), Member(None, "c")))),
        ("a = b or c", Binary("or", Binary("=", Member(None, "a"), Member(None, "b")), Member(None, "c"))),
        ("a | b = c", Binary("=", Binary("|", Member(None, "a"), Member(None, "b")), Member(None, "c"))),
        ("1 + 2 * 3", Binary("+", Literal(1, "integer"), Binary("*", Literal(2, "integer"), Literal(3, "integer")))),
        ("a - b - c", Binary("-", Binary("-", Member(None, "a"), Member(None, "b")), Member(None, "c"))),
        ("-a.b", Unary("-", Member(Member(None, "a"), "b"))),
        ("a implies b or c", Binary("implies", Member(None, "a"), Binary("or", Member(None, "b"), Member(None, "c")))),
        ("x is FHIR.Quantity", TypeOp("is", Member(None, "x"), "FHIR.Quantity")),
        ("a < b = true", Binary("=", Binary("<", Member(None, "a"), Member(None, "b")), Literal(True, "boolean"))),
    ],
)
def test_precedence(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"'it\'s \u00e9'", Literal("it's é", "string")),
        ("1.50", Literal("1.50", "decimal")),
        ("7L", Literal(7, "integer")),
        ("{}", Literal(None, "empty")),
        ("@2020-01", Literal("2020-01", "date")),
        ("@2020-01-02T10:30:00.5+02:00", Literal("2020-01-02T10:30:00.5+02:00", "dateTime")),
        ("@T10:30", Literal("10:30", "time")),
        ("4 'mg'", Literal("4", "quantity", unit="mg")),
        ("2 days", Literal("2", "quantity", unit="days")),
    ],
)
def test_literals(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize("text", ["", "a.", "(a", "a b", "@@", "a[1", "'open", "$nope", "where(,)", "a..b"])
def test_syntax_errors_name_the_element(text: str) -> None:
    with pytest.raises(ViewDefinitionError, match="cannot parse FHIRPath") as info:
        parse(text, element="select[0].forEach")
    assert info.value.element == "select[0].forEach"


_names = st.sampled_from(["name", "given", "family", "use", "value", "code", "id", "extension"])
_leaf = st.one_of(
    _names,
    st.sampled_from(["'x'", "1", "2.5", "true", "%rowIndex", "$this", "{}", "@2020-01-01"]),
)


def _expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, _names).map(lambda t: f"{t[0]}.{t[1]}"),
            st.tuples(inner, st.sampled_from(["first()", "exists()", "empty()", "count()", "join(',')"])).map(
                lambda t: f"{t[0]}.{t[1]}"
            ),
            st.tuples(inner, inner).map(lambda t: f"{t[0]}.where({t[1]} = 'a')"),
            st.tuples(inner, st.sampled_from(["=", "!=", "<", "and", "or", "+", "|", "implies"]), inner).map(
                lambda t: f"({t[0]} {t[1]} {t[2]})"
            ),
            st.tuples(inner, st.integers(0, 3)).map(lambda t: f"{t[0]}[{t[1]}]"),
        )

    return st.recursive(_leaf, extend, max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(_expressions())
def test_generated_expressions_compile(text: str) -> None:
    # Anything built from the supported grammar parses and compiles to SQL for both collection modes.
    for collection in (True, False):
        view = {"resource": "Patient", "select": [{"column": [{"name": "v", "path": text, "collection": collection}]}]}
        assert "SELECT" in compile_view(view)


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"use": "a", "family": "F", "given": ["x", "y"]}, {"given": ["z"]}],
    "extension": [{"url": "u", "valueCode": "c"}],
}


@settings(max_examples=60, deadline=None)
@given(_expressions())
def test_generated_expressions_run(text: str) -> None:
    # ... and the SQL runs: a result, or a ViewDefinitionError for a value FHIRPath rejects at run time.
    view = {"resource": "Patient", "select": [{"column": [{"name": "v", "path": text, "collection": True}]}]}
    try:
        run_view(view, resources=[PATIENT])
    except ViewDefinitionError as exc:
        assert "expected a single value" in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab.()[]'=<>|+-*/%$@ 019,{}`\\", max_size=20))
def test_any_text_parses_or_raises_a_view_error(text: str) -> None:
    try:
        parse(text)
    except ViewDefinitionError as exc:
        assert "FHIRPath" in str(exc)
