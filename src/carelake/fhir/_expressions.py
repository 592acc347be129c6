"""FHIRPath syntax trees → carelake SQL expressions over collections of JSON elements.

A FHIRPath value compiles to one of two shapes:

* :class:`Coll` — a SQL list of JSON elements (DuckDB ``JSON[]``, Spark ``array<variant>``), the
  general case: whatever a path into the resource yields. ``one`` carries the element itself when the
  compiler knows there is at most one (the resource, a ``forEach`` element, ``first()``), which keeps
  the SQL short.
  ``shape`` is set when the elements are typed structs instead (see ``_typed``): only navigation,
  filtering and picking accept those; anything else raises :class:`Untyped`. ``text`` is set when they are
  SQL text, the values of a typed struct's string leaves: conversions read those directly, and anything
  that needs JSON elements gets them as JSON strings (:func:`json_elements`).
* :class:`Scalar` — zero or one plain SQL value with a known FHIRPath type (a literal, a constant,
  a comparison, ``count()``, ``join()``); SQL NULL is the empty collection.

Element-level work (children, kinds, conversions) goes through the ``cl_fp_*`` functions of
``carelake.engine._functions``; list work is plain DuckDB list SQL that sqlglot translates for Spark.
Nothing here evaluates anything: every function returns SQL text.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from dataclasses import replace as _replace

from carelake.fhir._errors import ViewDefinitionError
from carelake.fhir._fhirpath import Binary, Call, Constant, Indexer, Literal, Member, Node, TypeOp, Unary, Variable
from carelake.fhir._model import INTEGER_TYPES, NUMERIC_TYPES, PRIMITIVE_TYPES
from carelake.fhir._typed import Leaf, Shape, Untyped

# A runtime failure raised from SQL starts with this, so the caller can turn it back into a ViewDefinitionError.
RUNTIME_ERROR_MARKER = "carelake view error: "


# How many levels repeat() follows; deeper nesting is cut off (see docs/views.md).
REPEAT_DEPTH = 32


def sql_string(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def scalar_type(fhir_type: str) -> str:
    """The Scalar type that carries a FHIR primitive type."""
    if fhir_type in INTEGER_TYPES:
        return "integer"
    if fhir_type == "instant":
        return "dateTime"
    if fhir_type in {"decimal", "boolean", "date", "dateTime", "time"}:
        return fhir_type
    return "string"


@dataclass(frozen=True)
class Coll:
    """A collection of JSON elements; ``one`` is its only element (or NULL) when it holds at most one.

    With ``shape``, the elements are structs of that shape instead of JSON; with ``text``, SQL text."""

    sql: str
    one: str | None = None
    type: str | None = None
    shape: Shape | None = None
    text: bool = False


@dataclass(frozen=True)
class Scalar:
    """Zero or one SQL value of a FHIRPath type; NULL is the empty collection."""

    sql: str
    type: str


Value = Coll | Scalar

EMPTY = Coll("cl_fp_empty()", one="cl_fp_null()")


def single(element: str, type_: str | None = None, shape: Shape | None = None, text: bool = False) -> Coll:
    """The collection holding one element (none when the element is NULL)."""
    empty = "[]" if shape is not None or text else "cl_fp_empty()"
    sql = f"CASE WHEN {element} IS NULL THEN {empty} ELSE [{element}] END"
    return Coll(sql, one=element, type=type_, shape=shape, text=text)


def like(coll: Coll, element: str) -> Coll:
    """The collection holding one element of the same form as those of ``coll`` (none when it is NULL)."""
    return single(element, coll.type, coll.shape, coll.text)


def first_element(coll: Coll) -> str:
    """The first element of a collection (NULL when empty)."""
    return coll.one if coll.one is not None else f"cl_fp_at({coll.sql}, 0)"


def json_elements(value: Value) -> Value:
    """``value`` as JSON elements: what needs whole JSON elements reads it through this.

    Typed structs cannot be (:class:`Untyped`); text elements become the JSON strings they were read from.
    """
    if isinstance(value, Coll):
        if value.shape is not None:
            raise Untyped(value.shape.type)
        if value.text:
            one = f"cl_fp_of({value.one})" if value.one is not None else None
            return Coll(f"list_transform({value.sql}, lambda _cl_s: cl_fp_of(_cl_s))", one=one, type=value.type)
    return value


def text_of(coll: Coll) -> str:
    """The first element of a collection as SQL text (NULL when empty)."""
    return convert_element(first_element(coll), "string", coll.text)


@dataclass(frozen=True)
class Scope:
    """What a FHIRPath expression is evaluated against."""

    focus: Value
    root: str
    resource_type: str
    row_index: str
    constants: Mapping[str, Scalar]
    element: str
    key: str = "NULL"
    root_shape: Shape | None = None
    names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def var(self) -> str:
        """A fresh lambda variable name."""
        return f"_cl_{next(self.names)}"

    def at(self, focus: Value) -> Scope:
        return _replace(self, focus=focus)

    def error_message(self, what: str) -> str:
        """SQL text of a runtime error message naming the view element and the resource by type/id."""
        locator = f"coalesce({self.key}, '?')"
        prefix = sql_string(f"{RUNTIME_ERROR_MARKER}{self.element}: {what} (resource {self.resource_type}/")
        return f"{prefix} || {locator} || ')'"

    def fail(self, message: str) -> ViewDefinitionError:
        return ViewDefinitionError(message, element=self.element)


# -- conversions -----------------------------------------------------------------------------------


def as_coll(value: Value) -> Coll:
    if isinstance(value, Coll):
        return value
    return Coll(
        f"CASE WHEN {value.sql} IS NULL THEN cl_fp_empty() ELSE [cl_fp_of({value.sql})] END",
        one=f"cl_fp_of({value.sql})",
        type=value.type,
    )


def element_of(coll: Coll, scope: Scope) -> str:
    """The only element of a collection; a runtime error when there are several."""
    if coll.one is not None:
        return coll.one
    return f"cl_fp_one({coll.sql}, {scope.error_message('expected a single value but found several')})"


def convert_element(element: str, type_: str, text: bool = False) -> str:
    """A JSON element (with ``text``, a JSON string's value as SQL text) as a SQL value of a Scalar type."""
    if text:  # as the JSON string would convert: numbers parsed from the text, never a boolean
        if type_ in ("integer", "decimal"):
            return f"TRY_CAST({element} AS {sql_type(type_)})"
        return "CAST(NULL AS BOOLEAN)" if type_ == "boolean" else element
    if type_ == "integer":
        return f"cl_fp_int({element})"
    if type_ == "decimal":
        return f"cl_fp_num({element})"
    if type_ == "boolean":
        return f"cl_fp_bool({element})"
    return f"cl_fp_str({element})"


_SQL_OF = {"integer": "BIGINT", "decimal": "DOUBLE", "boolean": "BOOLEAN"}


def sql_type(type_: str) -> str:
    return _SQL_OF.get(type_, "VARCHAR")


def as_scalar(value: Value, type_: str, scope: Scope) -> Scalar:
    """A value as one SQL value of the given Scalar type."""
    if isinstance(value, Coll) and value.text:
        return Scalar(convert_element(element_of(value, scope), type_, text=True), type_)
    json_elements(value)
    if isinstance(value, Scalar):
        if value.type == type_ or sql_type(value.type) == sql_type(type_):
            return Scalar(value.sql, type_)
        if sql_type(type_) == "VARCHAR":
            return Scalar(f"CAST({value.sql} AS VARCHAR)", type_)
        return Scalar(f"TRY_CAST({value.sql} AS {sql_type(type_)})", type_)
    return Scalar(convert_element(element_of(value, scope), type_), type_)


def natural_type(value: Value) -> str | None:
    """The Scalar type a value is known to have, if any."""
    if isinstance(value, Scalar):
        return value.type
    return scalar_type(value.type) if value.type in PRIMITIVE_TYPES else None


def let(value_sql: str, body: Callable[[str], str], scope: Scope) -> str:
    """Evaluate ``value_sql`` once and use it several times in ``body``."""
    v = scope.var()
    return f"cl_fp_at(list_transform([{value_sql}], lambda {v}: {body(v)}), 0)"


def to_bool(value: Value, scope: Scope) -> str:
    """FHIRPath's singleton evaluation as a boolean: SQL TRUE/FALSE, or NULL for empty."""
    value = json_elements(value)
    if isinstance(value, Scalar):
        if value.type == "boolean":
            return value.sql
        return f"CASE WHEN {value.sql} IS NULL THEN NULL ELSE TRUE END"
    if value.one is not None:
        e = value.one
        return f"CASE WHEN {e} IS NULL THEN NULL WHEN cl_fp_kind({e}) = 'boolean' THEN cl_fp_bool({e}) ELSE TRUE END"
    return f"cl_fp_truthy({value.sql})"


# -- the compiler ----------------------------------------------------------------------------------


def compile_path(node: Node, scope: Scope) -> Value:
    """Compile a FHIRPath tree in a scope."""
    if isinstance(node, Literal):
        return _literal(node, scope)
    if isinstance(node, Member):
        return _member(node, scope)
    if isinstance(node, Call):
        from carelake.fhir._library import compile_call  # the function library builds on this module

        return compile_call(node, scope)
    if isinstance(node, Indexer):
        base = as_coll(compile_path(node.target, scope))
        index = as_scalar(compile_path(node.index, scope.at(scope.focus)), "integer", scope).sql
        return _replace(base, sql=f"cl_fp_slice({base.sql}, {index}, 1)", one=f"cl_fp_at({base.sql}, {index})")
    if isinstance(node, Binary):
        return _binary(node, scope)
    if isinstance(node, Unary):
        operand = compile_path(node.operand, scope)
        type_ = natural_type(operand) if natural_type(operand) in ("integer", "decimal") else "decimal"
        number = as_scalar(operand, type_, scope)
        return number if node.op == "+" else Scalar(f"(-{number.sql})", type_)
    if isinstance(node, TypeOp):
        return _type_op(node, scope)
    if isinstance(node, Variable):
        if node.name == "this":
            return scope.focus
        raise scope.fail(f"${node.name} is not supported in views")
    if isinstance(node, Constant):
        return _constant(node, scope)
    raise scope.fail(f"unsupported FHIRPath construct {type(node).__name__}")


def _literal(node: Literal, scope: Scope) -> Value:
    if node.type == "empty":
        return EMPTY
    if node.type == "string":
        return Scalar(sql_string(str(node.value)), "string")
    if node.type == "boolean":
        return Scalar("TRUE" if node.value else "FALSE", "boolean")
    if node.type == "integer":
        return Scalar(f"CAST({node.value} AS BIGINT)", "integer")
    if node.type == "decimal":
        return Scalar(f"CAST({node.value} AS DOUBLE)", "decimal")
    if node.type in ("date", "dateTime", "time"):
        return Scalar(sql_string(str(node.value)), node.type)
    raise scope.fail(f"{node.type} literals are not supported in views")


def _constant(node: Constant, scope: Scope) -> Value:
    if node.name == "rowIndex":
        return Scalar(scope.row_index, "integer")
    if node.name in ("resource", "rootResource"):
        return single(scope.root, scope.resource_type, scope.root_shape)
    if node.name == "context":
        return scope.focus
    if node.name in scope.constants:
        return scope.constants[node.name]
    known = ", ".join(sorted(scope.constants)) or "none"
    raise scope.fail(f"undefined constant %{node.name} (constants defined: {known})")


def children(base: Coll, name: str, scope: Scope, type_: str | None = None) -> Coll:
    if base is EMPTY or base.text:  # a string has no children
        return EMPTY
    if base.shape is not None:
        return _struct_children(base, base.shape, name, scope, type_)
    key = sql_string(name)
    if base.one is not None:
        return Coll(f"cl_fp_get({base.one}, {key})", type=type_)
    v = scope.var()
    return Coll(f"flatten(list_transform({base.sql}, lambda {v}: cl_fp_get({v}, {key})))", type=type_)


def _struct_children(base: Coll, shape: Shape, name: str, scope: Scope, type_: str | None) -> Coll:
    """Member ``name`` of typed elements: a struct field, read as ``cl_fp_get`` reads the JSON member."""
    inner = shape.read(name)

    if isinstance(inner, Leaf) and inner.kind == "absent":
        return EMPTY

    def of(element: str) -> Coll:
        value = f"struct_extract({element}, {sql_string(name)})"
        if isinstance(inner, Leaf):  # one value (NULL for none), or else whatever the JSON member holds
            if inner.kind in ("one", "text"):
                return single(value, type_, text=inner.kind == "text")
            return Coll(f"cl_fp_elements({value})", type=type_)
        if inner.repeats:  # a list without null items: the misfit pattern flags those
            return Coll(f"coalesce({value}, [])", type=type_, shape=inner)
        return single(value, type_, inner)

    if base.one is not None:
        return of(base.one)
    v = scope.var()
    first = of(v)
    if first.one is not None:  # at most one each: keep the present ones, without a list per element
        kept = f"list_filter(list_transform({base.sql}, lambda {v}: {first.one}), lambda {v}: {v} IS NOT NULL)"
        return Coll(kept, type=type_, shape=first.shape, text=first.text)
    sql = f"flatten(list_transform({base.sql}, lambda {v}: {first.sql}))"
    return Coll(sql, type=type_, shape=first.shape, text=first.text)


def _check_name(name: str, scope: Scope) -> None:
    if not name.replace("_", "a").isalnum() or not name.isascii():
        raise scope.fail(f"element name {name!r} is not supported: use letters, digits and underscores")


def _member(node: Member, scope: Scope) -> Value:
    if node.target is None and node.name[:1].isupper():
        # A type name at the start of a path: the resource itself when it names the view's type.
        if node.name == scope.resource_type:
            return scope.focus
        return EMPTY
    base = compile_path(node.target, scope) if node.target is not None else scope.focus
    if isinstance(base, Scalar):
        return EMPTY
    _check_name(node.name, scope)
    return children(base, node.name, scope)


def normalize_type(name: str) -> str:
    """A type specifier without its namespace, FHIRPath system types as FHIR primitive names."""
    for prefix in ("FHIR.", "System."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return {"String": "string", "Boolean": "boolean", "Integer": "integer", "Decimal": "decimal",
            "Date": "date", "DateTime": "dateTime", "Time": "time"}.get(name, name)  # fmt: skip


def type_name(node: Node, scope: Scope) -> str:
    """The type specifier written as a function argument (``ofType(Quantity)``, ``FHIR.Patient``)."""
    parts: list[str] = []
    current: Node | None = node
    while isinstance(current, Member):
        parts.append(current.name)
        current = current.target
    if current is not None or not parts:
        raise scope.fail("expected a type name")
    return normalize_type(".".join(reversed(parts)))


def of_type(target: Node | None, type_name: str, scope: Scope) -> Value:
    """``x.ofType(T)``.

    Without a schema, a member ``x`` may be a choice element (``value`` → ``valueQuantity``) or a plain
    one (``active``): the result is the choice element ``x[T]`` plus the elements of ``x`` of type T.
    """
    if isinstance(target, Member) and not target.name[:1].isupper():
        base = compile_path(target.target, scope) if target.target is not None else scope.focus
        if isinstance(base, Scalar):
            return EMPTY
        _check_name(target.name, scope)
        choice = children(base, target.name + type_name[:1].upper() + type_name[1:], scope, type_name)
        if choice.shape is not None:
            # Typed: the choice element alone. A bare member holding a resource of that type is not FHIR.
            return choice
        plain = _type_filter(children(base, target.name, scope), type_name, scope)
        if plain is EMPTY:
            return choice
        if choice.text:  # a string-like type: the plain member's JSON strings join the choice's text as text
            v = scope.var()
            strings = f"list_transform({plain.sql}, lambda {v}: cl_fp_str({v}))"
            return Coll(f"list_concat({choice.sql}, {strings})", type=type_name, text=True)
        return Coll(f"list_concat({choice.sql}, {plain.sql})", type=type_name)
    base = compile_path(target, scope) if target is not None else scope.focus
    if isinstance(base, Scalar):
        return base if scalar_type(type_name) == base.type else EMPTY
    return _type_filter(base, type_name, scope)


def _type_filter(base: Coll, type_name: str, scope: Scope) -> Coll:
    """The elements that can be of a type, judged by their JSON kind (resources by resourceType)."""
    if base is EMPTY:
        return EMPTY
    base = json_elements(base)
    assert isinstance(base, Coll)
    v = scope.var()
    if type_name[:1].isupper():
        test = f"cl_fp_str(cl_fp_at(cl_fp_get({v}, 'resourceType'), 0)) = {sql_string(type_name)}"
    elif type_name in NUMERIC_TYPES:
        test = f"cl_fp_kind({v}) = 'number'"
    elif type_name == "boolean":
        test = f"cl_fp_kind({v}) = 'boolean'"
    else:
        test = f"cl_fp_kind({v}) = 'string'"
    return Coll(f"list_filter({base.sql}, lambda {v}: {test})", type=type_name)


def _type_op(node: TypeOp, scope: Scope) -> Value:
    filtered = of_type(node.operand, normalize_type(node.type_name), scope)
    if node.op == "as":
        return filtered
    if isinstance(filtered, Scalar):
        return Scalar(f"({filtered.sql} IS NOT NULL)", "boolean")
    return Scalar(f"(cl_fp_count({filtered.sql}) > 0)", "boolean")


# -- operators -------------------------------------------------------------------------------------


def _equals(left: Value, right: Value, scope: Scope) -> str:
    if isinstance(left, Scalar) and isinstance(right, Scalar):
        a, b = _common(left, right, scope)
        return f"({a} = {b})"
    if isinstance(left, Coll) and isinstance(right, Coll):
        left, right = json_elements(left), json_elements(right)
        assert isinstance(left, Coll) and isinstance(right, Coll)
        if left.one is not None and right.one is not None:
            return f"cl_fp_element_equals({left.one}, {right.one})"
        return f"cl_fp_equals({left.sql}, {right.sql})"
    scalar, coll = (left, right) if isinstance(left, Scalar) else (right, left)
    assert isinstance(scalar, Scalar) and isinstance(coll, Coll)
    target = _comparison_type(scalar.type)
    if coll.one is not None:
        return f"({convert_element(coll.one, target, coll.text)} = {as_scalar(scalar, target, scope).sql})"
    other = as_scalar(scalar, target, scope).sql
    return let(
        coll.sql,
        lambda c: (
            f"CASE WHEN cl_fp_count({c}) = 0 THEN NULL WHEN cl_fp_count({c}) > 1 THEN FALSE "
            f"ELSE {convert_element(f'cl_fp_at({c}, 0)', target, coll.text)} = {other} END"
        ),
        scope,
    )


def _comparison_type(type_: str) -> str:
    return type_ if type_ in ("integer", "decimal", "boolean") else "string"


def _common(left: Scalar, right: Scalar, scope: Scope) -> tuple[str, str]:
    """Two scalars in one comparable SQL type."""
    if sql_type(left.type) == sql_type(right.type):
        return left.sql, right.sql
    if {left.type, right.type} <= {"integer", "decimal"}:
        return as_scalar(left, "decimal", scope).sql, as_scalar(right, "decimal", scope).sql
    return as_scalar(left, "string", scope).sql, as_scalar(right, "string", scope).sql


def _order(op: str, left: Value, right: Value, scope: Scope) -> str:
    if isinstance(left, Coll) and isinstance(right, Coll):
        left, right = json_elements(left), json_elements(right)
        assert isinstance(left, Coll) and isinstance(right, Coll)
        return f"(cl_fp_compare({element_of(left, scope)}, {element_of(right, scope)}) {op} 0)"
    if isinstance(left, Scalar) and isinstance(right, Scalar):
        a, b = _common(left, right, scope)
        return f"({a} {op} {b})"
    scalar = left if isinstance(left, Scalar) else right
    assert isinstance(scalar, Scalar)
    target = _comparison_type(scalar.type)
    a, b = as_scalar(left, target, scope).sql, as_scalar(right, target, scope).sql
    return f"({a} {op} {b})"


def number(value: Value, scope: Scope) -> Scalar:
    type_ = natural_type(value)
    return as_scalar(value, type_ if type_ in ("integer", "decimal") else "decimal", scope)


def _arithmetic(op: str, left: Value, right: Value, scope: Scope) -> Scalar:
    if op == "&":
        a, b = as_scalar(left, "string", scope).sql, as_scalar(right, "string", scope).sql
        return Scalar(f"(coalesce({a}, '') || coalesce({b}, ''))", "string")
    if op == "+" and "string" in (natural_type(left), natural_type(right)):
        a, b = as_scalar(left, "string", scope).sql, as_scalar(right, "string", scope).sql
        return Scalar(f"({a} || {b})", "string")
    a, b = number(left, scope), number(right, scope)
    both_integer = a.type == "integer" and b.type == "integer"
    if op == "/":
        return Scalar(f"(CAST({a.sql} AS DOUBLE) / NULLIF(CAST({b.sql} AS DOUBLE), 0))", "decimal")
    if op == "div":
        q = f"({a.sql} / NULLIF({b.sql}, 0))"
        return Scalar(f"CAST(CASE WHEN {q} >= 0 THEN floor({q}) ELSE ceil({q}) END AS BIGINT)", "integer")
    if op == "mod":
        return Scalar(f"({a.sql} % NULLIF({b.sql}, 0))", "integer" if both_integer else "decimal")
    return Scalar(f"({a.sql} {op} {b.sql})", "integer" if both_integer else "decimal")


def _binary(node: Binary, scope: Scope) -> Value:
    op = node.op
    # Comparisons and conversions read text elements directly; the other operators need JSON elements.
    raw_left, raw_right = compile_path(node.left, scope), compile_path(node.right, scope)
    left, right = json_elements(raw_left), json_elements(raw_right)
    if op in ("=", "!="):
        eq = _equals(raw_left, raw_right, scope)
        return Scalar(eq if op == "=" else f"(NOT {eq})", "boolean")
    if op in ("and", "or", "xor", "implies"):
        a, b = to_bool(left, scope), to_bool(right, scope)
        sql = {"and": f"({a} AND {b})", "or": f"({a} OR {b})", "xor": f"({a} <> {b})"}.get(op, f"((NOT {a}) OR {b})")
        return Scalar(sql, "boolean")
    if op in ("~", "!~"):
        a, b = as_scalar(left, "string", scope).sql, as_scalar(right, "string", scope).sql
        eq = f"coalesce(lower({a}) = lower({b}), {a} IS NULL AND {b} IS NULL)"
        return Scalar(eq if op == "~" else f"(NOT {eq})", "boolean")
    if op in ("<", "<=", ">", ">="):
        return Scalar(_order(op, left, right, scope), "boolean")
    if op == "|":
        return Coll(f"cl_fp_distinct(list_concat({as_coll(left).sql}, {as_coll(right).sql}))")
    if op in ("in", "contains"):
        item, coll = (left, right) if op == "in" else (right, left)
        element = element_of(as_coll(item), scope)
        v = scope.var()
        texts = f"list_transform({as_coll(coll).sql}, lambda {v}: cl_fp_json({v}))"
        return Scalar(f"CASE WHEN {element} IS NULL THEN NULL ELSE list_contains({texts}, cl_fp_json({element})) END",
                      "boolean")  # fmt: skip
    if op in ("+", "-", "*", "/", "div", "mod", "&"):
        return _arithmetic(op, left, right, scope)
    raise scope.fail(f"unsupported FHIRPath operator {op!r}")
