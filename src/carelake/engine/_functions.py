"""carelake's SQL functions: the few JSON operations DuckDB and Spark spell differently.

carelake SQL is DuckDB SQL plus these ``cl_`` functions. DuckDB gets them as macros;
for Spark, each call is rewritten into Spark's own functions before sqlglot translates
the rest. Path arguments are JSONPath literals (``'$.subject.reference'``); the plural
functions take a list literal of paths and parse the document once, on DuckDB and on Spark
(where every path reads one ``try_parse_json`` of the document, which Spark computes once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_DUCK_KIND = (
    "CASE WHEN k IS NULL THEN NULL WHEN k = 'OBJECT' THEN 'object' WHEN k = 'ARRAY' THEN 'array' "
    "WHEN k = 'VARCHAR' THEN 'string' WHEN k = 'BOOLEAN' THEN 'boolean' WHEN k = 'NULL' THEN 'null' "
    "ELSE 'number' END"
)


_IDENT = '{"system":"VARCHAR","value":"VARCHAR"}'


def _spark_kind(doc: str, path: str) -> str:
    s = f"schema_of_variant(try_variant_get(try_parse_json({doc}), {path}))"
    return (
        f"(CASE WHEN {s} IS NULL THEN NULL WHEN {s} LIKE 'OBJECT%' THEN 'object' WHEN {s} LIKE 'ARRAY%' "
        f"THEN 'array' WHEN {s} = 'STRING' THEN 'string' WHEN {s} = 'BOOLEAN' THEN 'boolean' "
        f"WHEN {s} = 'VOID' THEN 'null' ELSE 'number' END)"
    )


def _spark_text(doc: str, path: str) -> str:
    """The text at a path, read from the document's one parsed variant.

    A variant keeps an object's members sorted by name, so an object or array (and a string that looks like
    one) is read again from the text, where its members stay in their written order, as on DuckDB."""
    text = f"try_variant_get(try_parse_json({doc}), {path}, 'string')"
    return f"(CASE WHEN {text} LIKE '{{%' OR {text} LIKE '[%' THEN get_json_object({doc}, {path}) ELSE {text} END)"


def _paths(arg: Any) -> list[str]:
    from sqlglot import exp

    if not isinstance(arg, exp.Array):
        raise ValueError("the paths argument must be a list literal like ['$.a', '$.b']")
    return [p.sql(dialect="spark") for p in arg.expressions]


# name -> (DuckDB macro parameters, DuckDB body, Spark builder from the argument nodes)
FUNCTIONS: dict[str, tuple[str, str, Callable[[list[Any]], str]]] = {
    # Is the text valid JSON?
    "cl_json_valid": ("t", "json_valid(t)", lambda a: f"(try_parse_json({a[0].sql('spark')}) IS NOT NULL)"),
    # The JSON kind at each path: object, array, string, number, boolean, null; NULL when absent.
    "cl_json_kinds": (
        "t, ps",
        f"list_transform(json_type(t, ps), lambda k: {_DUCK_KIND})",
        lambda a: "array(" + ", ".join(_spark_kind(a[0].sql("spark"), p) for p in _paths(a[1])) + ")",
    ),
    # The value at each path as text (strings unescaped); NULL when absent or JSON null. On Spark the paths read
    # one parsed variant: get_json_object parsed the text again for each, 3.3 times slower for ingestion's 39
    # paths (see _spark_text). Spark's variant refuses a document that repeats a member name, as ingestion's
    # validity check on Spark already does.
    "cl_json_strings": (
        "t, ps",
        "json_extract_string(t, ps)",
        lambda a: "array(" + ", ".join(_spark_text(a[0].sql("spark"), p) for p in _paths(a[1])) + ")",
    ),
    # The member names of a JSON object (a resource's top-level elements).
    "cl_json_keys": ("t", "json_keys(t)", lambda a: f"json_object_keys({a[0].sql('spark')})"),
    # A resource's top-level identifier (an array, or one object where the cardinality is 0..1)
    # as a list of (system, value) structs.
    "cl_json_identifiers": (
        "t",
        "CASE json_type(t, '$.identifier') "
        f"WHEN 'ARRAY' THEN from_json(json_extract(t, '$.identifier'), '[{_IDENT}]') "
        f"WHEN 'OBJECT' THEN [from_json(json_extract(t, '$.identifier'), '{_IDENT}')] END",
        lambda a: (
            f"from_json(get_json_object({a[0].sql('spark')}, '$.identifier'), "
            "'array<struct<system:string,value:string>>')"
        ),
    ),
}


def duckdb_macros() -> list[str]:
    """The statements that define carelake's functions in a DuckDB connection."""
    return [f"CREATE OR REPLACE MACRO {name}({params}) AS {body}" for name, (params, body, _) in FUNCTIONS.items()]


def rewrite_for_spark(tree: Any) -> Any:
    """Replace every ``cl_`` call in a sqlglot tree with its Spark expression."""
    import sqlglot
    from sqlglot import exp

    def replace(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and node.name.lower() in FUNCTIONS:
            return sqlglot.parse_one(FUNCTIONS[node.name.lower()][2](list(node.expressions)), read="spark")
        return node

    return tree.transform(replace)


# --- FHIRPath collections (used by carelake.fhir to compile SQL-on-FHIR views) ----------------------
# A FHIRPath collection is a list of JSON elements: DuckDB ``JSON[]``, Spark ``array<variant>``. Every
# function below that touches an element is engine-specific; the rest of the compiled SQL is plain list
# SQL (filter, transform, flatten, concat) that sqlglot translates. Lambda variables inside bodies start
# with ``_cl_`` so they never capture a caller's names. An element that is SQL NULL is "no element".

_NUMBER_KINDS = "('BIGINT', 'UBIGINT', 'DOUBLE', 'HUGEINT', 'UHUGEINT')"


def _sp(node: Any) -> str:
    """An argument node as Spark SQL, with any ``cl_`` calls inside it rewritten too."""
    return rewrite_for_spark(node).sql(dialect="spark")


def _key(node: Any) -> str:
    """A member name argument: a string literal of letters, digits and underscores."""
    import re

    from sqlglot import exp

    if not isinstance(node, exp.Literal) or not node.is_string or not re.fullmatch(r"[A-Za-z0-9_]+", node.name):
        raise ValueError("the member argument must be a string literal of letters, digits and underscores")
    return node.name


def _portable(params: str, body: str) -> tuple[str, str, Callable[[list[Any]], str]]:
    """A function written once in carelake SQL over other ``cl_`` functions: DuckDB gets it as a macro,
    Spark gets the same body with the arguments substituted and every ``cl_`` call rewritten."""
    names = [p.strip() for p in params.split(",") if p.strip()]

    def build(args: list[Any]) -> str:
        import sqlglot
        from sqlglot import exp

        if len(args) != len(names):
            raise ValueError(f"expected {len(names)} arguments, got {len(args)}")
        bound = dict(zip(names, args, strict=True))
        tree = sqlglot.parse_one(body, read="duckdb")

        def substitute(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Column) and not node.table and node.name in bound:
                return bound[node.name].copy()
            return node

        return _sp(tree.transform(substitute))

    return params, body, build


def _spark_typed(doc: str, structure: Any) -> str:
    """``from_json`` with a ``json_transform`` structure as its schema: primitives stay variants, text strings."""
    import json

    def ddl(node: Any) -> str:
        if node in ("JSON", "VARCHAR"):
            return "VARIANT" if node == "JSON" else "STRING"
        if isinstance(node, list):
            return f"ARRAY<{ddl(node[0])}>"
        return "STRUCT<" + ", ".join(f"`{name}`: {ddl(inner)}" for name, inner in node.items()) + ">"

    return f"from_json({doc}, '{ddl(json.loads(structure.name))}')"


def _spark_element_kind(e: str) -> str:
    head = f"regexp_extract(schema_of_variant({e}), '^[A-Z]+', 0)"
    return (
        f"CASE {head} WHEN 'OBJECT' THEN 'object' WHEN 'ARRAY' THEN 'array' WHEN 'STRING' THEN 'string' "
        "WHEN 'BOOLEAN' THEN 'boolean' WHEN 'VOID' THEN 'null' WHEN 'DECIMAL' THEN 'number' WHEN 'BIGINT' "
        "THEN 'number' WHEN 'INT' THEN 'number' WHEN 'SMALLINT' THEN 'number' WHEN 'TINYINT' THEN 'number' "
        "WHEN 'DOUBLE' THEN 'number' WHEN 'FLOAT' THEN 'number' END"
    )


FUNCTIONS.update(
    {
        # Resource text -> its root element (NULL when the text is not JSON).
        "cl_fp_parse": (
            "t",
            "CASE WHEN json_valid(t) THEN CAST(t AS JSON) END",
            lambda a: f"try_parse_json({_sp(a[0])})",
        ),
        # The children of element e under member k, arrays flattened, JSON nulls dropped.
        "cl_fp_get": (
            "e, k",
            "CASE WHEN json_type(e, '$.' || k) = 'ARRAY' "
            "THEN list_filter(CAST(json_extract(e, '$.' || k || '[*]') AS JSON[]), "
            "lambda _cl_x: json_type(_cl_x) <> 'NULL') "
            "WHEN json_type(e, '$.' || k) IS NULL OR json_type(e, '$.' || k) = 'NULL' THEN CAST([] AS JSON[]) "
            "ELSE [json_extract(e, '$.' || k)] END",
            lambda a: (
                f"filter(coalesce(try_variant_get({_sp(a[0])}, '$.{_key(a[1])}', 'array<variant>'), "
                f"array(variant_get({_sp(a[0])}, '$.{_key(a[1])}'))), "
                "_cl_x -> _cl_x IS NOT NULL AND NOT is_variant_null(_cl_x))"
            ),
        ),
        # The root members a view reads, each as cl_fp_get gives it, from one parse of the document (DuckDB
        # re-parses a JSON text on every access, so the compiler reads each member once through these).
        "cl_fp_members": (
            "e, ks",
            "json_extract(e, list_transform(ks, lambda _cl_k: '$.' || _cl_k))",
            lambda a: "array(" + ", ".join(FUNCTIONS["cl_fp_get"][2]([a[0], k]) for k in a[1].expressions) + ")",
        ),
        # A member's value as cl_fp_get gives it: the elements of an array, one value, or none for null.
        "cl_fp_elements": (
            "v",
            "CASE WHEN v IS NULL OR json_type(v) = 'NULL' THEN CAST([] AS JSON[]) "
            "WHEN json_type(v) = 'ARRAY' THEN list_filter(CAST(v AS JSON[]), "
            "lambda _cl_x: json_type(_cl_x) <> 'NULL') ELSE [v] END",
            lambda a: (
                f"filter(coalesce(try_variant_get({_sp(a[0])}, '$', 'array<variant>'), array({_sp(a[0])})), "
                "_cl_x -> _cl_x IS NOT NULL AND NOT is_variant_null(_cl_x))"
            ),
        ),
        # Member i (0-based) of cl_fp_members, as a collection.
        "cl_fp_member": ("ms, i", "cl_fp_elements(ms[i + 1])", lambda a: f"get({_sp(a[0])}, {_sp(a[1])})"),
        # May resource text t be read typed? No misfit: no match of pattern p (see fhir._typed), no JSON null
        # (typed lists keep null items) and no \u escape (which could hide a key from p). Spark: never.
        "cl_fp_fits": (
            "t, p",
            "NOT (contains(t, '\\u') OR contains(t, 'null') OR regexp_matches(t, p))",
            lambda a: "FALSE",
        ),
        # Resource text -> a struct of the members a view reads (a json_transform structure; see fhir._typed);
        # NULL for text that is not JSON (cheaper than testing it first with json_valid).
        "cl_fp_typed": ("t, s", "try(json_transform(t, s))", lambda a: _spark_typed(_sp(a[0]), a[1])),
        # An element's kind: object, array, string, number, boolean, null.
        "cl_fp_kind": (
            "e",
            "CASE json_type(e) WHEN 'OBJECT' THEN 'object' WHEN 'ARRAY' THEN 'array' WHEN 'VARCHAR' THEN 'string' "
            f"WHEN 'BOOLEAN' THEN 'boolean' WHEN 'NULL' THEN 'null' ELSE CASE WHEN json_type(e) IN {_NUMBER_KINDS} "
            "THEN 'number' END END",
            lambda a: _spark_element_kind(_sp(a[0])),
        ),
        # An element as text: strings unquoted, numbers and booleans as written, objects as JSON.
        "cl_fp_str": ("e", "json_extract_string(e, '$')", lambda a: f"CAST({_sp(a[0])} AS STRING)"),
        # An element as a number (NULL when it is not one).
        "cl_fp_num": (
            "e",
            "TRY_CAST(json_extract_string(e, '$') AS DOUBLE)",
            lambda a: f"try_variant_get({_sp(a[0])}, '$', 'double')",
        ),
        "cl_fp_int": (
            "e",
            "TRY_CAST(json_extract_string(e, '$') AS BIGINT)",
            lambda a: f"try_variant_get({_sp(a[0])}, '$', 'bigint')",
        ),
        # An element as a boolean (NULL unless it is a JSON boolean).
        "cl_fp_bool": (
            "e",
            "CASE WHEN json_type(e) = 'BOOLEAN' THEN json_extract_string(e, '$') = 'true' END",
            lambda a: (
                f"CASE WHEN schema_of_variant({_sp(a[0])}) = 'BOOLEAN' "
                f"THEN variant_get({_sp(a[0])}, '$', 'boolean') END"
            ),
        ),
        # An element as JSON text.
        "cl_fp_json": ("e", "CAST(e AS VARCHAR)", lambda a: f"to_json({_sp(a[0])})"),
        # A SQL scalar as an element.
        "cl_fp_of": ("v", "to_json(v)", lambda a: f"CAST({_sp(a[0])} AS VARIANT)"),
        # Digits after the decimal point of a number element, as written. Spark's SQL functions drop trailing
        # zeros, so Spark reads the scale with carelake's Java function (engine/VariantScale.java).
        "cl_fp_scale": (
            "e",
            f"CASE WHEN json_type(e) IN {_NUMBER_KINDS} AND contains(CAST(e AS VARCHAR), '.') "
            "THEN length(split_part(split_part(lower(CAST(e AS VARCHAR)), 'e', 1), '.', 2)) ELSE 0 END",
            lambda a: f"coalesce(cl_variant_scale({_sp(a[0])}), 0)",
        ),
        # The empty collection, and no element.
        "cl_fp_empty": ("", "CAST([] AS JSON[])", lambda a: "CAST(array() AS array<variant>)"),
        "cl_fp_null": ("", "CAST(NULL AS JSON)", lambda a: "CAST(NULL AS VARIANT)"),
        # How many elements.
        "cl_fp_count": ("c", "len(c)", lambda a: f"size({_sp(a[0])})"),
        # The element at a 0-based index, NULL when out of range.
        "cl_fp_at": ("c, i", "CASE WHEN i >= 0 THEN c[i + 1] END", lambda a: f"get({_sp(a[0])}, {_sp(a[1])})"),
        # n elements from 0-based position s.
        "cl_fp_slice": (
            "c, s, n",
            "CASE WHEN s >= 0 AND n > 0 THEN list_slice(c, s + 1, s + n) ELSE list_slice(c, 1, 0) END",
            lambda a: (
                f"CASE WHEN {_sp(a[1])} >= 0 AND {_sp(a[2])} > 0 THEN slice({_sp(a[0])}, {_sp(a[1])} + 1, "
                f"{_sp(a[2])}) ELSE slice({_sp(a[0])}, 1, 0) END"
            ),
        ),
        # Each element with its 0-based position: a list of {e, i}.
        "cl_fp_indexed": (
            "c",
            "list_transform(c, lambda _cl_v, _cl_i: {'e': _cl_v, 'i': CAST(_cl_i - 1 AS BIGINT)})",
            lambda a: f"transform({_sp(a[0])}, (_cl_v, _cl_i) -> named_struct('e', _cl_v, 'i', CAST(_cl_i AS BIGINT)))",
        ),
        # Like cl_fp_indexed, but an empty collection gives one {e: NULL, i: 0} (forEachOrNull).
        "cl_fp_indexed_or_null": (
            "c",
            "list_transform(CASE WHEN len(c) = 0 THEN [NULL] ELSE c END, "
            "lambda _cl_v, _cl_i: {'e': _cl_v, 'i': CAST(_cl_i - 1 AS BIGINT)})",
            lambda a: (
                f"transform(CASE WHEN size({_sp(a[0])}) = 0 THEN array(NULL) ELSE {_sp(a[0])} END, "
                "(_cl_v, _cl_i) -> named_struct('e', _cl_v, 'i', CAST(_cl_i AS BIGINT)))"
            ),
        ),
        # Apply f(state, step) n times to init (n a literal): the loop behind FHIRPath repeat().
        "cl_fp_iterate": (
            "init, f, n",
            "list_reduce(range(n), f, init)",
            lambda a: f"aggregate(sequence(0, {_sp(a[2])} - 1), {_sp(a[0])}, {_sp(a[1])})",
        ),
        # Fail the query with a message.
        "cl_fp_error": ("m", "error(m)", lambda a: f"raise_error({_sp(a[0])})"),
        # The only element (NULL when empty); fail with message m when there are several.
        "cl_fp_one": (
            "c, m",
            "list_transform([c], lambda _cl_one: CASE WHEN len(_cl_one) > 1 THEN error(m) ELSE _cl_one[1] END)[1]",
            lambda a: (
                f"get(transform(array({_sp(a[0])}), _cl_one -> CASE WHEN size(_cl_one) > 1 "
                f"THEN raise_error({_sp(a[1])}) ELSE get(_cl_one, 0) END), 0)"
            ),
        ),
    }
)

FUNCTIONS.update(
    {
        # FHIRPath singleton evaluation in a boolean context: empty -> NULL, a boolean -> itself, else true.
        "cl_fp_truthy": _portable(
            "c",
            "cl_fp_at(list_transform([cl_fp_at(c, 0)], lambda _cl_t: CASE WHEN _cl_t IS NULL THEN NULL "
            "WHEN cl_fp_kind(_cl_t) = 'boolean' THEN cl_fp_bool(_cl_t) ELSE TRUE END), 0)",
        ),
        # A view's where: empty -> false, one boolean -> itself (NULL -> false), anything else fails with m.
        "cl_fp_where": _portable(
            "c, m",
            "cl_fp_at(list_transform([c], lambda _cl_w: CASE WHEN cl_fp_count(_cl_w) = 0 THEN FALSE "
            "WHEN cl_fp_count(_cl_w) = 1 AND cl_fp_kind(cl_fp_at(_cl_w, 0)) = 'boolean' "
            "THEN coalesce(cl_fp_bool(cl_fp_at(_cl_w, 0)), FALSE) ELSE cl_fp_error(m) END), 0)",
        ),
        # FHIRPath = on two elements: numbers by value, other kinds by text; NULL when either is missing.
        "cl_fp_element_equals": _portable(
            "a, b",
            "cl_fp_at(list_transform([{'a': a, 'b': b}], lambda _cl_ee: CASE "
            "WHEN _cl_ee.a IS NULL OR _cl_ee.b IS NULL THEN NULL "
            "WHEN cl_fp_kind(_cl_ee.a) = 'number' AND cl_fp_kind(_cl_ee.b) = 'number' "
            "THEN cl_fp_num(_cl_ee.a) = cl_fp_num(_cl_ee.b) "
            "WHEN cl_fp_kind(_cl_ee.a) <> cl_fp_kind(_cl_ee.b) THEN FALSE "
            "ELSE cl_fp_str(_cl_ee.a) = cl_fp_str(_cl_ee.b) END), 0)",
        ),
        # FHIRPath = on two collections: empty -> NULL, else same size and pairwise equal.
        "cl_fp_equals": _portable(
            "l, r",
            "cl_fp_at(list_transform([{'l': l, 'r': r}], lambda _cl_eq: CASE "
            "WHEN cl_fp_count(_cl_eq.l) = 0 OR cl_fp_count(_cl_eq.r) = 0 THEN NULL "
            "WHEN cl_fp_count(_cl_eq.l) <> cl_fp_count(_cl_eq.r) THEN FALSE "
            "WHEN cl_fp_count(_cl_eq.l) = 1 THEN cl_fp_element_equals(cl_fp_at(_cl_eq.l, 0), cl_fp_at(_cl_eq.r, 0)) "
            "ELSE list_transform(_cl_eq.l, lambda _cl_x: cl_fp_json(_cl_x)) "
            "= list_transform(_cl_eq.r, lambda _cl_x: cl_fp_json(_cl_x)) END), 0)",
        ),
        # Order two elements: -1, 0, 1; numbers by value, anything else by text; NULL when either is missing.
        "cl_fp_compare": _portable(
            "a, b",
            "cl_fp_at(list_transform([{'a': a, 'b': b}], lambda _cl_cmp: CASE "
            "WHEN _cl_cmp.a IS NULL OR _cl_cmp.b IS NULL THEN NULL "
            "WHEN cl_fp_kind(_cl_cmp.a) = 'number' AND cl_fp_kind(_cl_cmp.b) = 'number' "
            "THEN sign(cl_fp_num(_cl_cmp.a) - cl_fp_num(_cl_cmp.b)) "
            "WHEN cl_fp_str(_cl_cmp.a) < cl_fp_str(_cl_cmp.b) THEN -1 "
            "WHEN cl_fp_str(_cl_cmp.a) > cl_fp_str(_cl_cmp.b) THEN 1 ELSE 0 END), 0)",
        ),
        # The collection without repeated elements (first occurrence kept, order kept).
        "cl_fp_distinct": _portable(
            "c",
            "cl_fp_at(list_transform([c], lambda _cl_d: list_transform(list_filter(cl_fp_indexed(_cl_d), "
            "lambda _cl_s: NOT list_contains(list_transform(cl_fp_slice(_cl_d, 0, _cl_s.i), "
            "lambda _cl_y: cl_fp_json(_cl_y)), cl_fp_json(_cl_s.e))), lambda _cl_s: _cl_s.e)), 0)",
        ),
    }
)

FUNCTIONS.update(
    {
        # A FHIR date, dateTime or instant (text) as a UTC timestamp, a partial date at the start of its precision
        # ('2019' -> 2019-01-01); NULL when it is not one. Ingestion keys bronze by it; cohorts compare times by it.
        "cl_fhir_time": _portable(
            "t",
            "CASE length(t) WHEN 4 THEN TRY_CAST(t || '-01-01' AS TIMESTAMPTZ) "
            "WHEN 7 THEN TRY_CAST(t || '-01' AS TIMESTAMPTZ) ELSE TRY_CAST(t AS TIMESTAMPTZ) END",
        ),
    }
)
