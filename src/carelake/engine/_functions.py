"""carelake's SQL functions: the few JSON operations DuckDB and Spark spell differently.

carelake SQL is DuckDB SQL plus these ``cl_`` functions. DuckDB gets them as macros;
for Spark, each call is rewritten into Spark's own functions before sqlglot translates
the rest. Path arguments are JSONPath literals (``'$.subject.reference'``); the plural
functions take a list literal of paths and parse the document once on DuckDB.
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
    # The value at each path as text (strings unescaped); NULL when absent or JSON null.
    "cl_json_strings": (
        "t, ps",
        "json_extract_string(t, ps)",
        lambda a: "array(" + ", ".join(f"get_json_object({a[0].sql('spark')}, {p})" for p in _paths(a[1])) + ")",
    ),
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
