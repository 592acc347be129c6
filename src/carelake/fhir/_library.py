"""The FHIRPath function library: each function compiles its input collection to SQL.

One handler per function name in ``FUNCTIONS``; a name missing there is a ViewDefinitionError
("unsupported FHIRPath function"). Handlers get the compiled input (the value left of the dot, or
the focus) and the scope, and compile their arguments themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from carelake.fhir._boundaries import boundary
from carelake.fhir._expressions import (
    EMPTY,
    Coll,
    Scalar,
    Scope,
    Value,
    as_coll,
    as_scalar,
    children,
    compile_path,
    element_of,
    json_elements,
    like,
    number,
    of_type,
    sql_string,
    sql_type,
    text_of,
    to_bool,
    type_name,
)
from carelake.fhir._fhirpath import Call, Node


def _arity(node: Call, low: int, high: int, scope: Scope) -> None:
    if not low <= len(node.args) <= high:
        want = str(low) if low == high else f"{low} to {high}"
        raise scope.fail(f"{node.name}() takes {want} argument(s), got {len(node.args)}")


def _lambda(coll: Coll, node: Node, scope: Scope) -> tuple[str, Value]:
    """A variable for each element of ``coll`` and ``node`` compiled with that element as $this."""
    v = scope.var()
    return v, compile_path(node, scope.at(like(coll, v)))


def compile_call(node: Call, scope: Scope) -> Value:
    """Compile ``target.name(args)``."""
    name = node.name
    if name == "ofType":
        _arity(node, 1, 1, scope)
        return of_type(node.target, type_name(node.args[0], scope), scope)
    if name == "getResourceKey":
        _arity(node, 0, 0, scope)
        if node.target is None:
            return Scalar(scope.key, "string")
        base = as_coll(compile_path(node.target, scope))
        ids = children(like(base, element_of(base, scope)), "id", scope)
        return Scalar(text_of(ids), "string")
    value = compile_path(node.target, scope) if node.target is not None else scope.focus
    handler = FUNCTIONS.get(name)
    if handler is None:
        raise scope.fail(f"unsupported FHIRPath function {name}()")
    return handler(node, value, scope)


def _fn_where(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 1, 1, scope)
    coll = as_coll(value)
    v, criteria = _lambda(coll, node.args[0], scope)
    kept = f"list_filter({coll.sql}, lambda {v}: coalesce({to_bool(criteria, scope)}, FALSE))"
    return replace(coll, sql=kept, one=None)


def _fn_select(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 1, 1, scope)
    coll = as_coll(value)
    v, projection = _lambda(coll, node.args[0], scope)
    projected = as_coll(projection)
    sql = f"flatten(list_transform({coll.sql}, lambda {v}: {projected.sql}))"
    return Coll(sql, shape=projected.shape, text=projected.text)


def _fn_exists(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 1, scope)
    if node.args:
        value = _fn_where(node, value, scope)
    if isinstance(value, Scalar):
        return Scalar(f"({value.sql} IS NOT NULL)", "boolean")
    if value.one is not None:  # at most one element, never a JSON null: present or not
        return Scalar(f"({value.one} IS NOT NULL)", "boolean")
    return Scalar(f"(cl_fp_count({value.sql}) > 0)", "boolean")


def _fn_empty(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 0, scope)
    if isinstance(value, Scalar):
        return Scalar(f"({value.sql} IS NULL)", "boolean")
    if value.one is not None:
        return Scalar(f"({value.one} IS NULL)", "boolean")
    return Scalar(f"(cl_fp_count({value.sql}) = 0)", "boolean")


def _fn_all(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 1, 1, scope)
    coll = as_coll(value)
    v, criteria = _lambda(coll, node.args[0], scope)
    failing = f"list_filter({coll.sql}, lambda {v}: NOT coalesce({to_bool(criteria, scope)}, FALSE))"
    return Scalar(f"(cl_fp_count({failing}) = 0)", "boolean")


def _truth_test(expected: bool, every: bool) -> Callable[[Call, Value, Scope], Value]:
    def handler(node: Call, value: Value, scope: Scope) -> Value:
        _arity(node, 0, 0, scope)
        coll = as_coll(json_elements(value))
        v = scope.var()
        test = f"cl_fp_bool({v}) = {'TRUE' if expected else 'FALSE'}"
        if every:
            return Scalar(f"(cl_fp_count(list_filter({coll.sql}, lambda {v}: NOT coalesce({test}, FALSE))) = 0)",
                          "boolean")  # fmt: skip
        return Scalar(f"(cl_fp_count(list_filter({coll.sql}, lambda {v}: coalesce({test}, FALSE))) > 0)", "boolean")

    return handler


def _fn_count(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 0, scope)
    if isinstance(value, Scalar):
        return Scalar(f"CASE WHEN {value.sql} IS NULL THEN CAST(0 AS BIGINT) ELSE CAST(1 AS BIGINT) END", "integer")
    return Scalar(f"CAST(cl_fp_count({value.sql}) AS BIGINT)", "integer")


def _fn_first(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 0, scope)
    if isinstance(value, Scalar) or value.one is not None:
        return value
    return replace(value, sql=f"cl_fp_slice({value.sql}, 0, 1)", one=f"cl_fp_at({value.sql}, 0)")


def _fn_last(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 0, scope)
    if isinstance(value, Scalar) or value.one is not None:
        return value
    last = f"cl_fp_count({value.sql}) - 1"
    return replace(value, sql=f"cl_fp_slice({value.sql}, {last}, 1)", one=f"cl_fp_at({value.sql}, {last})")


def _fn_single(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 0, scope)
    if isinstance(value, Scalar) or value.one is not None:
        return value
    return like(value, element_of(value, scope))


def _fn_skip(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 1, 1, scope)
    coll = as_coll(value)
    n = as_scalar(compile_path(node.args[0], scope), "integer", scope).sql
    return replace(coll, sql=f"cl_fp_slice({coll.sql}, greatest({n}, 0), cl_fp_count({coll.sql}))", one=None)


def _fn_tail(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 0, scope)
    coll = as_coll(value)
    return replace(coll, sql=f"cl_fp_slice({coll.sql}, 1, cl_fp_count({coll.sql}))", one=None)


def _fn_take(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 1, 1, scope)
    coll = as_coll(value)
    n = as_scalar(compile_path(node.args[0], scope), "integer", scope).sql
    return replace(coll, sql=f"cl_fp_slice({coll.sql}, 0, {n})", one=None)


def _fn_distinct(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 0, scope)
    value = json_elements(value)
    if isinstance(value, Scalar):
        return value
    return Coll(f"cl_fp_distinct({value.sql})", type=value.type)


def _fn_is_distinct(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 0, scope)
    value = json_elements(value)
    if isinstance(value, Scalar):
        return Scalar("TRUE", "boolean")
    return Scalar(f"(cl_fp_count(cl_fp_distinct({value.sql})) = cl_fp_count({value.sql}))", "boolean")


def _fn_union(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 1, 1, scope)
    other = as_coll(json_elements(compile_path(node.args[0], scope)))
    combined = f"list_concat({as_coll(json_elements(value)).sql}, {other.sql})"
    return Coll(combined if node.name == "combine" else f"cl_fp_distinct({combined})")


def _fn_not(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 0, scope)
    return Scalar(f"(NOT {to_bool(value, scope)})", "boolean")


def _fn_iif(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 2, 3, scope)
    condition = to_bool(compile_path(node.args[0], scope), scope)
    then = compile_path(node.args[1], scope)
    otherwise = compile_path(node.args[2], scope) if len(node.args) == 3 else EMPTY
    if isinstance(then, Scalar) and isinstance(otherwise, Scalar) and sql_type(then.type) == sql_type(otherwise.type):
        return Scalar(f"CASE WHEN {condition} THEN {then.sql} ELSE {otherwise.sql} END", then.type)
    a, b = as_coll(then), as_coll(otherwise)
    if a.shape is not b.shape or a.text != b.text:  # elements of two forms: both as JSON
        a, b = as_coll(json_elements(a)), as_coll(json_elements(b))
    one = f"CASE WHEN {condition} THEN {a.one} ELSE {b.one} END" if a.one and b.one else None
    return Coll(f"CASE WHEN {condition} THEN {a.sql} ELSE {b.sql} END", one=one, shape=a.shape, text=a.text)


def _fn_extension(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 1, 1, scope)
    url = as_scalar(compile_path(node.args[0], scope), "string", scope).sql
    if isinstance(value, Scalar):
        return EMPTY
    extensions = children(value, "extension", scope)
    v = scope.var()
    urls = children(like(extensions, v), "url", scope)
    kept = f"list_filter({extensions.sql}, lambda {v}: {text_of(urls)} = {url})"
    return Coll(kept, shape=extensions.shape)


def _fn_join(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 1, scope)
    separator = as_scalar(compile_path(node.args[0], scope), "string", scope).sql if node.args else "''"
    value = json_elements(value)
    if isinstance(value, Scalar):
        return Scalar(f"coalesce(CAST({value.sql} AS VARCHAR), '')", "string")
    v = scope.var()
    return Scalar(f"array_to_string(list_transform({value.sql}, lambda {v}: cl_fp_str({v})), {separator})", "string")


def _fn_get_reference_key(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 1, scope)
    wanted = type_name(node.args[0], scope) if node.args else None
    if isinstance(value, Scalar):
        return EMPTY
    v = scope.var()

    def reference_of(element: str) -> str:
        return text_of(children(like(value, element), "reference", scope))

    reference = reference_of(v)
    # \z, not $: Java's $ (Spark) also matches before a final newline, RE2's $ (DuckDB) only at the end.
    pattern = "'([A-Za-z]+)/([A-Za-z0-9.-]+)(/_history/[A-Za-z0-9.-]+)?\\z'"
    key = f"NULLIF(regexp_extract({reference}, {pattern}, 2), '')"
    kept = f"regexp_extract({reference}, {pattern}, 1) = {sql_string(wanted)}" if wanted else f"{key} IS NOT NULL"
    if value.one is not None:
        e = value.one
        ref_one = reference_of(e)
        key_one = f"NULLIF(regexp_extract({ref_one}, {pattern}, 2), '')"
        if wanted:
            key_one = f"CASE WHEN regexp_extract({ref_one}, {pattern}, 1) = {sql_string(wanted)} THEN {key_one} END"
        return Scalar(key_one, "string")
    keys = f"list_transform(list_filter({value.sql}, lambda {v}: coalesce({kept}, FALSE)), lambda {v}: cl_fp_of({key}))"
    return Coll(keys, type="string")


def _string_function(
    arity: tuple[int, int], build: Callable[[str, list[str]], str], result: str = "string"
) -> Callable[[Call, Value, Scope], Value]:
    def handler(node: Call, value: Value, scope: Scope) -> Value:
        _arity(node, arity[0], arity[1], scope)
        text = as_scalar(value, "string", scope).sql
        args = [as_scalar(compile_path(a, scope), _ARG_TYPES.get((node.name, i), "string"), scope).sql
                for i, a in enumerate(node.args)]  # fmt: skip
        return Scalar(build(text, args), result)

    return handler


_ARG_TYPES = {("substring", 0): "integer", ("substring", 1): "integer"}


def _substring(text: str, args: list[str]) -> str:
    start = args[0]
    body = f"substring({text}, {start} + 1, {args[1]})" if len(args) > 1 else f"substring({text}, {start} + 1)"
    return f"CASE WHEN {start} >= 0 AND {start} < length({text}) THEN {body} END"


def _math(
    build: Callable[[str, list[str]], str], result: str = "decimal", arity: tuple[int, int] = (0, 0)
) -> Callable[[Call, Value, Scope], Value]:
    def handler(node: Call, value: Value, scope: Scope) -> Value:
        _arity(node, arity[0], arity[1], scope)
        operand = number(value, scope)
        args = [number(compile_path(a, scope), scope).sql for a in node.args]
        type_ = operand.type if result == "same" else result
        return Scalar(build(operand.sql, args), type_)

    return handler


def _convert(target: str) -> Callable[[Call, Value, Scope], Value]:
    def handler(node: Call, value: Value, scope: Scope) -> Value:
        _arity(node, 0, 0, scope)
        if target == "string":
            return as_scalar(value, "string", scope)
        text = as_scalar(value, "string", scope).sql
        return Scalar(f"TRY_CAST({text} AS {sql_type(target)})", target)

    return handler


def _fn_boundary(node: Call, value: Value, scope: Scope) -> Value:
    _arity(node, 0, 1, scope)
    return boundary(node.name == "lowBoundary", json_elements(value), scope)


FUNCTIONS: dict[str, Callable[[Call, Value, Scope], Value]] = {
    "where": _fn_where,
    "select": _fn_select,
    "exists": _fn_exists,
    "empty": _fn_empty,
    "all": _fn_all,
    "allTrue": _truth_test(True, every=True),
    "anyTrue": _truth_test(True, every=False),
    "allFalse": _truth_test(False, every=True),
    "anyFalse": _truth_test(False, every=False),
    "hasValue": _fn_exists,
    "count": _fn_count,
    "first": _fn_first,
    "last": _fn_last,
    "single": _fn_single,
    "skip": _fn_skip,
    "tail": _fn_tail,
    "take": _fn_take,
    "distinct": _fn_distinct,
    "isDistinct": _fn_is_distinct,
    "union": _fn_union,
    "combine": _fn_union,
    "not": _fn_not,
    "iif": _fn_iif,
    "extension": _fn_extension,
    "join": _fn_join,
    "getReferenceKey": _fn_get_reference_key,
    "lowBoundary": _fn_boundary,
    "highBoundary": _fn_boundary,
    "startsWith": _string_function((1, 1), lambda s, a: f"starts_with({s}, {a[0]})", "boolean"),
    "endsWith": _string_function((1, 1), lambda s, a: f"ends_with({s}, {a[0]})", "boolean"),
    "contains": _string_function((1, 1), lambda s, a: f"contains({s}, {a[0]})", "boolean"),
    "matches": _string_function((1, 1), lambda s, a: f"regexp_matches({s}, {a[0]})", "boolean"),
    "replace": _string_function((2, 2), lambda s, a: f"replace({s}, {a[0]}, {a[1]})"),
    "replaceMatches": _string_function((2, 2), lambda s, a: f"regexp_replace({s}, {a[0]}, {a[1]}, 'g')"),
    "indexOf": _string_function((1, 1), lambda s, a: f"CAST(strpos({s}, {a[0]}) - 1 AS BIGINT)", "integer"),
    "substring": _string_function((1, 2), _substring),
    "lower": _string_function((0, 0), lambda s, a: f"lower({s})"),
    "upper": _string_function((0, 0), lambda s, a: f"upper({s})"),
    "trim": _string_function((0, 0), lambda s, a: f"trim({s})"),
    "length": _string_function((0, 0), lambda s, a: f"CAST(length({s}) AS BIGINT)", "integer"),
    "toString": _convert("string"),
    "toInteger": _convert("integer"),
    "toDecimal": _convert("decimal"),
    "abs": _math(lambda n, a: f"abs({n})", "same"),
    "ceiling": _math(lambda n, a: f"CAST(ceil({n}) AS BIGINT)", "integer"),
    "floor": _math(lambda n, a: f"CAST(floor({n}) AS BIGINT)", "integer"),
    "truncate": _math(lambda n, a: f"CAST(CASE WHEN {n} >= 0 THEN floor({n}) ELSE ceil({n}) END AS BIGINT)", "integer"),
    "round": _math(lambda n, a: f"round(CAST({n} AS DOUBLE), {a[0] if a else 0})", arity=(0, 1)),
    "sqrt": _math(lambda n, a: f"CASE WHEN {n} >= 0 THEN sqrt({n}) END"),
    "ln": _math(lambda n, a: f"CASE WHEN {n} > 0 THEN ln({n}) END"),
    "exp": _math(lambda n, a: f"exp({n})"),
    "power": _math(lambda n, a: f"power(CAST({n} AS DOUBLE), {a[0]})", arity=(1, 1)),
}
