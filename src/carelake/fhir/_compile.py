"""SQL-on-FHIR v2 ViewDefinition → one set-based SQL query (DuckDB dialect plus ``cl_`` functions).

The query reads ``resources`` (columns ``resource_type`` and ``resource``, the JSON text) and parses
each resource of the view's type once. Each ``select`` compiles to the rows it yields *per context
element*: a select made only of ``column`` yields one row, so its columns stay plain SQL expressions;
``forEach``/``forEachOrNull``/``repeat`` and ``unionAll`` yield a SQL list of row structs (built with
``list_transform`` over the elements, ``list_concat`` for unions), sibling selects multiply, and the
outer query unnests the list once. No per-resource Python, no correlated subqueries, no joins:
every engine that has lists, structs and lambdas runs it (DuckDB as written, Spark via sqlglot).

Column names become struct fields ``f_<name>``; ``%rowIndex`` is the 0-based position of the element
in the nearest enclosing ``forEach``/``forEachOrNull``/``repeat`` (0 at the top).

A view is compiled twice: over JSON elements (the general form, any view) and, where it only navigates,
filters and picks, over a struct shaped by the FHIR model (``_typed``). The query holds both and reads each
resource with one, chosen per row by whether its text fits the struct.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from carelake.fhir._errors import ViewDefinitionError
from carelake.fhir._expressions import (
    EMPTY,
    REPEAT_DEPTH,
    Coll,
    Scalar,
    Scope,
    Value,
    as_coll,
    as_scalar,
    children,
    compile_path,
    convert_element,
    json_elements,
    let,
    like,
    scalar_type,
    single,
    sql_string,
    sql_type,
    text_of,
)
from carelake.fhir._fhirpath import Call, Variable, parse
from carelake.fhir._prefilter import Required, required_text, text_filter
from carelake.fhir._typed import Shape, Untyped

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]+$")
_SELECT_KEYS = {"column", "select", "forEach", "forEachOrNull", "repeat", "unionAll"}

# valueX of a ViewDefinition constant -> the Scalar type it becomes.
_CONSTANT_TYPES = {
    "valueBase64Binary": "string", "valueBoolean": "boolean", "valueCanonical": "string", "valueCode": "string",
    "valueDate": "date", "valueDateTime": "dateTime", "valueDecimal": "decimal", "valueId": "string",
    "valueInstant": "dateTime", "valueInteger": "integer", "valueInteger64": "integer", "valueOid": "string",
    "valuePositiveInt": "integer", "valueString": "string", "valueTime": "time", "valueUnsignedInt": "integer",
    "valueUri": "string", "valueUrl": "string", "valueUuid": "string",
}  # fmt: skip

# A ViewDefinition extension adding a column computed in SQL from the view's other columns: for what
# FHIRPath cannot say (a length of stay). Other SQL-on-FHIR runners ignore it and give the other columns.
SQL_COLUMN_URL = "https://carelake.dev/fhir/StructureDefinition/sql-column"

ROOT = "_cl_r"  # the parsed resource
TYPED_ROOT = "_cl_t"  # the resource read into a struct (see _typed)
FIT = "_cl_fit"  # whether the resource is read typed
KEY = "_cl_id"  # its id: getResourceKey(), and the locator in runtime error messages


@dataclass(frozen=True)
class Column:
    """An output column: its name, SQL type, and whether it holds a list."""

    name: str
    type: str
    collection: bool

    @property
    def sql_type(self) -> str:
        base = sql_type(scalar_type(self.type))
        return f"{base}[]" if self.collection else base

    @property
    def field(self) -> str:
        return f"f_{self.name}"


@dataclass
class _Rows:
    """The rows a select yields per context element: ``fixed`` columns × the product of ``lists``."""

    columns: list[Column] = field(default_factory=list)
    fixed: dict[str, str] = field(default_factory=dict)
    lists: list[tuple[str, list[Column]]] = field(default_factory=list)

    def extend(self, other: _Rows) -> None:
        self.columns += other.columns
        self.fixed.update(other.fixed)
        self.lists += other.lists


def _fail(element: str, message: str) -> ViewDefinitionError:
    return ViewDefinitionError(message, element=element or "view")


def _struct(pairs: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"'{name}': {sql}" for name, sql in pairs) + "}"


def _product(lists: list[tuple[str, list[Column]]], scope: Scope) -> tuple[str, list[Column]]:
    """Every combination of rows from several row lists."""
    rows, columns = lists[0]
    for other, other_columns in lists[1:]:
        a, b = scope.var(), scope.var()
        pairs = [(c.field, f"{a}.{c.field}") for c in columns] + [(c.field, f"{b}.{c.field}") for c in other_columns]
        rows = f"flatten(list_transform({rows}, lambda {a}: list_transform({other}, lambda {b}: {_struct(pairs)})))"
        columns = columns + other_columns
    return rows, columns


def _as_list(rows: _Rows, scope: Scope) -> str:
    """All of a select's rows as one SQL list of structs, fields in column order."""
    if not rows.lists:
        return "[" + _struct([(c.field, rows.fixed[c.name]) for c in rows.columns]) + "]"
    product, product_columns = _product(rows.lists, scope)
    if not rows.fixed and [c.name for c in product_columns] == [c.name for c in rows.columns]:
        return product
    v = scope.var()
    pairs = [(c.field, rows.fixed.get(c.name, f"{v}.{c.field}")) for c in rows.columns]
    return f"list_transform({product}, lambda {v}: {_struct(pairs)})"


class _ViewCompiler:
    def __init__(self, view: Any, resources: str = "resources", *, typed: bool = False) -> None:
        self.resources = resources
        if not isinstance(view, Mapping):
            raise _fail("", "a ViewDefinition must be a JSON object")
        self.view = view
        resource = view.get("resource")
        if not isinstance(resource, str) or not _RESOURCE_TYPE.match(resource):
            raise _fail("resource", 'the view must name the FHIR resource type it reads, e.g. "resource": "Patient"')
        self.resource_type = resource
        self.constants = self._constants(view.get("constant", []))
        self.shape = Shape.root(resource) if typed else None  # the struct the resources are read into
        self.root = TYPED_ROOT if typed else ROOT
        self.scope = Scope(
            focus=single(self.root, resource, self.shape),
            root=self.root,
            resource_type=resource,
            row_index="CAST(0 AS BIGINT)",
            constants=self.constants,
            element="",
            key=KEY,
            root_shape=self.shape,
        )
        self.names: set[str] = set()

    # -- pieces
    def _constants(self, constants: Any) -> dict[str, Scalar]:
        if not isinstance(constants, list):
            raise _fail("constant", "constant must be a list")
        result: dict[str, Scalar] = {}
        for i, constant in enumerate(constants):
            where = f"constant[{i}]"
            if not isinstance(constant, Mapping) or not isinstance(constant.get("name"), str):
                raise _fail(where, "a constant needs a name")
            name = constant["name"]
            if not _NAME.match(name):
                raise _fail(f"{where}.name", f"constant name {name!r} must be letters, digits and underscores")
            values = [k for k in constant if k.startswith("value")]
            if len(values) != 1 or values[0] not in _CONSTANT_TYPES:
                raise _fail(where, f"constant {name!r} needs exactly one value[x] (valueString, valueInteger, …)")
            key = values[0]
            result[name] = self._constant_value(f"{where}.{key}", constant[key], _CONSTANT_TYPES[key])
        return result

    @staticmethod
    def _constant_value(where: str, value: Any, type_: str) -> Scalar:
        if type_ == "boolean":
            if not isinstance(value, bool):
                raise _fail(where, "must be true or false")
            return Scalar("TRUE" if value else "FALSE", "boolean")
        if type_ == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise _fail(where, "must be an integer")
            return Scalar(f"CAST({value} AS BIGINT)", "integer")
        if type_ == "decimal":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _fail(where, "must be a number")
            return Scalar(f"CAST({value!r} AS DOUBLE)", "decimal")
        if not isinstance(value, str):
            raise _fail(where, "must be a string")
        return Scalar(sql_string(value), type_)

    def _path(self, text: Any, where: str, scope: Scope) -> Value:
        if not isinstance(text, str):
            raise _fail(where, f"a FHIRPath expression must be a string, not {type(text).__name__}")
        at = replace(scope, element=where)
        return compile_path(parse(text, element=where), at)

    def _column(self, column: Any, where: str, scope: Scope) -> tuple[Column, str]:
        if not isinstance(column, Mapping):
            raise _fail(where, "a column must be an object with name and path")
        name = column.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise _fail(f"{where}.name", f"column name {name!r} must start with a letter and use letters, digits, _")
        if name.lower() in self.names:
            raise _fail(f"{where}.name", f"column name {name!r} is used twice (names are compared ignoring case)")
        self.names.add(name.lower())
        type_ = column.get("type", "string")
        if not isinstance(type_, str):
            raise _fail(f"{where}.type", "type must be a FHIR type name like string or integer")
        collection = column.get("collection", False)
        if not isinstance(collection, bool):
            raise _fail(f"{where}.collection", "collection must be true or false")
        value = self._path(column.get("path"), f"{where}.path", scope)
        out = Column(name, type_, collection)
        return out, self._column_sql(value, out, replace(scope, element=f"{where}.path"))

    @staticmethod
    def _column_sql(value: Value, column: Column, scope: Scope) -> str:
        json_elements(value)  # no typed structs
        text = isinstance(value, Coll) and value.text
        target = scalar_type(column.type)
        base = sql_type(target)
        if column.collection:
            if isinstance(value, Scalar):
                item = as_scalar(value, target, scope).sql
                return f"CASE WHEN {item} IS NULL THEN CAST([] AS {base}[]) ELSE [CAST({item} AS {base})] END"
            v = scope.var()
            return f"CAST(list_transform({value.sql}, lambda {v}: {convert_element(v, target, text)}) AS {base}[])"
        if isinstance(value, Scalar):
            return f"CAST({as_scalar(value, target, scope).sql} AS {base})"
        element = value.one
        if element is None:
            several = scope.error_message('gave several values; set "collection": true on the column to keep them')
            element = f"cl_fp_one({value.sql}, {several})"
        return convert_element(element, target, text)  # already of the column's SQL type

    # -- selects
    def select(self, node: Any, where: str, scope: Scope) -> _Rows:
        if not isinstance(node, Mapping):
            raise _fail(where, "a select must be an object")
        unknown = [k for k in node if k not in _SELECT_KEYS and k not in ("description", "extension")]
        if unknown:
            raise _fail(where, f"unknown key {unknown[0]!r} (expected column, select, forEach, forEachOrNull, "
                        "repeat or unionAll)")  # fmt: skip
        iterators = [k for k in ("forEach", "forEachOrNull", "repeat") if k in node]
        if len(iterators) > 1:
            raise _fail(where, f"use only one of forEach, forEachOrNull and repeat (found {', '.join(iterators)})")
        if not iterators:
            return self.body(node, where, scope)
        key = iterators[0]
        filtered = self._root_filter(node[key], f"{where}.{key}", scope) if key == "forEach" else None
        if filtered is not None:
            # forEach: "where(…)" at the root iterates over the resource itself or nothing: evaluate the
            # columns on the resource (whose members are read once) instead of on a copy of it in a lambda.
            # The rows are only built where the condition holds.
            inner = self.body(node, where, scope)
            rows = f"CASE WHEN {filtered} THEN {_as_list(inner, scope)} ELSE [] END"
            return _Rows(columns=inner.columns, lists=[(rows, inner.columns)])
        if key == "repeat":
            elements = self.repeat(node["repeat"], f"{where}.repeat", scope)
        else:
            elements = as_coll(self._path(node[key], f"{where}.{key}", scope))
        v = scope.var()
        indexed = "cl_fp_indexed_or_null" if key == "forEachOrNull" else "cl_fp_indexed"
        inner_scope = replace(scope, focus=like(elements, f"{v}.e"), row_index=f"{v}.i")
        inner = self.body(node, where, inner_scope)
        each = f"{indexed}({elements.sql})"
        if not inner.lists:  # one row per element
            row = _struct([(c.field, inner.fixed[c.name]) for c in inner.columns])
            return _Rows(columns=inner.columns, lists=[(f"list_transform({each}, lambda {v}: {row})", inner.columns)])
        rows = f"flatten(list_transform({each}, lambda {v}: {_as_list(inner, scope)}))"
        return _Rows(columns=inner.columns, lists=[(rows, inner.columns)])

    def _root_filter(self, text: Any, where: str, scope: Scope) -> str | None:
        """The condition of a ``where(…)`` applied to the resource itself, or None for any other path."""
        if not isinstance(text, str) or getattr(scope.focus, "one", None) != self.root:
            return None
        tree = parse(text, element=where)
        if not (
            isinstance(tree, Call)
            and tree.name == "where"
            and tree.target in (None, Variable("this"))
            and len(tree.args) == 1
        ):
            return None
        at = replace(scope, element=where)
        return self._condition(compile_path(tree.args[0], at), where, at)

    def _condition(self, value: Value, element: str, scope: Scope) -> str:
        """A FHIRPath criterion as a SQL boolean: true only when it gives true."""
        value = json_elements(value)
        if isinstance(value, Scalar):
            if value.type != "boolean":
                raise _fail(element, f"a where path must give a boolean, not a {value.type}")
            return f"coalesce({value.sql}, FALSE)"
        if value is EMPTY:
            return "FALSE"
        message = scope.error_message("the path gave a non-boolean value")
        return f"cl_fp_where({value.sql}, {message})"

    def repeat(self, paths: Any, where: str, scope: Scope) -> Coll:
        """Every element reached by following the paths again and again, in depth-first order."""
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise _fail(where, "repeat must be a non-empty list of FHIRPath expressions")
        trees = [parse(p, element=f"{where}[{i}]") for i, p in enumerate(paths)]
        json_elements(scope.focus)  # elements of any depth: no struct type holds them

        def children(element: str) -> str:
            at = replace(scope, focus=single(element))
            parts = [as_coll(compile_path(t, replace(at, element=f"{where}[{i}]"))).sql for i, t in enumerate(trees)]
            result = parts[0]
            for part in parts[1:]:
                result = f"list_concat({result}, {part})"
            return result

        focus = as_coll(scope.focus)
        x, k, s, acc, n, k2 = (scope.var() for _ in range(6))
        if focus.one is not None:
            first = f"list_transform({children(focus.one)}, lambda {k}: {{'d': CAST(0 AS BIGINT), 'e': {k}}})"
        else:
            first = (
                f"flatten(list_transform({focus.sql}, lambda {x}: list_transform({children(x)}, "
                f"lambda {k}: {{'d': CAST(0 AS BIGINT), 'e': {k}}})))"
            )
        # Each round expands the elements found in the round before, inserting their children right after
        # them, so the list stays in depth-first order without sorting.
        grow = (
            f"flatten(list_transform({acc}, lambda {s}: CASE WHEN {s}.d = {n} THEN list_concat([{s}], "
            f"list_transform({children(f'{s}.e')}, lambda {k2}: {{'d': CAST({n} + 1 AS BIGINT), 'e': {k2}}})) "
            f"ELSE [{s}] END))"
        )
        states = f"cl_fp_iterate({first}, lambda {acc}, {n}: {grow}, {REPEAT_DEPTH})"
        too_deep = replace(scope, element=where).error_message(f"nested more than {REPEAT_DEPTH} levels deep")
        return Coll(
            let(
                states,
                lambda all_: (
                    f"CASE WHEN cl_fp_count(list_filter({all_}, lambda {s}: {s}.d >= {REPEAT_DEPTH})) > 0 "
                    f"THEN cl_fp_error({too_deep}) ELSE list_transform({all_}, lambda {s}: {s}.e) END"
                ),
                scope,
            )
        )

    def body(self, node: Mapping[str, Any], where: str, scope: Scope) -> _Rows:
        rows = _Rows()
        columns = node.get("column", [])
        if not isinstance(columns, list):
            raise _fail(f"{where}.column", "column must be a list")
        for i, column in enumerate(columns):
            out, sql = self._column(column, f"{where}.column[{i}]", scope)
            rows.columns.append(out)
            rows.fixed[out.name] = sql
        selects = node.get("select", [])
        if not isinstance(selects, list):
            raise _fail(f"{where}.select", "select must be a list")
        for i, sub in enumerate(selects):
            rows.extend(self.select(sub, f"{where}.select[{i}]" if where else f"select[{i}]", scope))
        if "unionAll" in node:
            rows.extend(self.union(node["unionAll"], f"{where}.unionAll", scope))
        return rows

    def union(self, branches: Any, where: str, scope: Scope) -> _Rows:
        if not isinstance(branches, list) or not branches:
            raise _fail(where, "unionAll must be a non-empty list of selects")
        names_before = set(self.names)
        lists: list[str] = []
        columns: list[Column] | None = None
        for i, branch in enumerate(branches):
            self.names = set(names_before)
            rows = self.select(branch, f"{where}[{i}]", scope)
            if columns is None:
                columns = rows.columns
            elif [(c.name, c.sql_type) for c in rows.columns] != [(c.name, c.sql_type) for c in columns]:
                raise _fail(
                    f"{where}[{i}]",
                    f"every unionAll branch needs the same columns in the same order with the same types: "
                    f"expected {[c.name for c in columns]}, found {[c.name for c in rows.columns]}",
                )
            lists.append(_as_list(rows, scope))
        assert columns is not None
        self.names = names_before | {c.name.lower() for c in columns}
        combined = lists[0]
        for other in lists[1:]:
            combined = f"list_concat({combined}, {other})"
        return _Rows(columns=list(columns), lists=[(combined, list(columns))])

    def where(self) -> list[str]:
        clauses = self.view.get("where", [])
        if not isinstance(clauses, list):
            raise _fail("where", 'where must be a list of {"path": ...}')
        conditions = []
        for i, clause in enumerate(clauses):
            element = f"where[{i}].path"
            if not isinstance(clause, Mapping):
                raise _fail(f"where[{i}]", "a where clause must be an object with a path")
            value = self._path(clause.get("path"), element, self.scope)
            conditions.append(self._condition(value, element, replace(self.scope, element=element)))
        return conditions

    def required_text(self) -> Required:
        """What the resource text must contain for every where clause to hold (see ``_prefilter``)."""
        strings = {
            c["name"]: c[key]
            for c in self.view.get("constant", [])
            for key in c
            if _CONSTANT_TYPES.get(key) == "string" and isinstance(c[key], str) and isinstance(c.get("name"), str)
        }
        clauses = self.view.get("where", [])
        return {texts for clause in clauses for texts in required_text(parse(clause["path"]), strings)}

    @cached_property
    def compiled(self) -> _Compiled:
        """The view's rows, where conditions and resource key, over this compiler's root (compiled once)."""
        selects = self.view.get("select")
        if not isinstance(selects, list) or not selects:
            raise _fail("select", "the view needs a non-empty select list")
        rows = self.body({"select": selects}, "", self.scope)
        if not rows.columns:
            raise _fail("select", "the view defines no columns")
        conditions = self.where()
        ids = children(self.scope.focus, "id", self.scope)
        return _Compiled(rows, conditions, text_of(ids))

    def selected(self) -> str:
        """SQL choosing the resources the view reads (of its type, holding the text its where needs)."""
        selected = f"resource_type = {sql_string(self.resource_type)}"
        prefilter = text_filter("resource", self.required_text())
        return f"{selected} AND {prefilter}" if prefilter else selected

    def query(self, typed: _ViewCompiler | None) -> tuple[str, list[Column]]:
        """The view's query and columns; with ``typed``, the resources that fit its struct are read by it.

        Each resource is read one way, chosen per row: both forms are in the one query, each under a CASE on
        whether the resource fits, so the rows of the typed form are never computed the general way.
        """
        general = self.compiled
        first = [f"{ROOT} IS NOT NULL"]  # the text was JSON
        if typed is None:
            parsed = f"(SELECT cl_fp_parse(resource) AS {ROOT} FROM {self.resources} WHERE {self.selected()})"
            source = f"(SELECT {ROOT}, {general.key} AS {KEY} FROM {parsed} AS _cl_parsed) AS _cl_source"
        else:
            assert typed.shape is not None
            # The struct is NULL where the text misfits or is not JSON: those resources are read the general way.
            struct = f"cl_fp_typed(resource, {sql_string(typed.shape.structure())})"
            read = (
                f"(SELECT resource, CASE WHEN {typed.shape.fits_sql('resource')} THEN {struct} END AS {TYPED_ROOT}"
                f" FROM {self.resources} WHERE {self.selected()}) AS _cl_read"
            )
            parsed = (
                f"(SELECT {TYPED_ROOT} IS NOT NULL AS {FIT}, {TYPED_ROOT}, CASE WHEN {TYPED_ROOT} IS NOT NULL"
                f" THEN NULL ELSE cl_fp_parse(resource) END AS {ROOT} FROM {read}) AS _cl_parsed"
            )
            key = f"CASE WHEN {FIT} THEN {typed.compiled.key} ELSE {general.key} END"
            source = f"(SELECT {FIT}, {TYPED_ROOT}, {ROOT}, {key} AS {KEY} FROM {parsed}) AS _cl_source"
        source, rows, conditions = _read_members_once(source, general.rows, first + general.conditions)
        if typed is not None:
            fast = typed.compiled
            rows = _either(FIT, (fast.rows, typed.scope), (rows, self.scope))
            conditions = [f"CASE WHEN {FIT} THEN {_all(fast.conditions)} ELSE {_all(conditions)} END"]
        filters = _all(conditions)
        if not rows.lists:
            outputs = ", ".join(f'{rows.fixed[c.name]} AS "{c.name}"' for c in rows.columns)
            return f"SELECT {outputs} FROM {source} WHERE {filters}", rows.columns
        product, _ = _product(rows.lists, self.scope)
        inner = [f"{sql} AS {_field(name)}" for name, sql in rows.fixed.items()]
        inner.append(f"unnest({product}) AS _cl_row")
        outputs = ", ".join(
            f'{_field(c.name)} AS "{c.name}"' if c.name in rows.fixed else f'_cl_row.{c.field} AS "{c.name}"'
            for c in rows.columns
        )
        sql = f"SELECT {outputs} FROM (SELECT {', '.join(inner)} FROM {source} WHERE {filters}) AS _cl_rows"
        return sql, rows.columns

    def sql_columns(self, columns: list[Column]) -> list[tuple[Column, str]]:
        """The view's carelake sql-column extensions: (column, SQL over the view's columns), checked."""
        import sqlglot
        from sqlglot import exp

        extensions = self.view.get("extension", [])
        if not isinstance(extensions, list):
            raise _fail("extension", "extension must be a list")
        known = {c.name.lower() for c in columns}
        result = []
        for i, extension in enumerate(extensions):
            if not isinstance(extension, Mapping) or extension.get("url") != SQL_COLUMN_URL:
                continue
            where = f"extension[{i}]"
            parts = {p.get("url"): p for p in extension.get("extension", []) if isinstance(p, Mapping)}
            name = parts.get("name", {}).get("valueString")
            type_ = parts.get("type", {}).get("valueCode", "string")
            sql = parts.get("sql", {}).get("valueString")
            if not isinstance(name, str) or not _NAME.match(name) or not isinstance(sql, str):
                raise _fail(where, "a sql-column needs a name (valueString, a SQL identifier) and sql (valueString)")
            if name.lower() in self.names:
                raise _fail(where, f"column name {name!r} is used twice (names are compared ignoring case)")
            try:
                tree = sqlglot.parse_one(sql, read="duckdb")
            except sqlglot.errors.ParseError as exc:
                raise _fail(where, f"cannot parse the SQL of column {name!r}: {exc.errors[0]['description']}") from None
            used = {c.name.lower() for c in tree.find_all(exp.Column)}
            if used - known:
                raise _fail(where, f"column {name!r} reads {sorted(used - known)[0]!r}, which the view does not define")
            self.names.add(name.lower())
            result.append((Column(name, type_, False), sql))
        return result

    def compile(self, typed: _ViewCompiler | None) -> str:
        """The whole query, with the carelake sql-column extensions; ``typed`` as in :meth:`query`."""
        base, columns = self.query(typed)
        added = self.sql_columns(columns)
        if not added:
            return base
        outputs = [f'"{c.name}"' for c in columns]
        outputs += [f'CAST(({sql}) AS {column.sql_type}) AS "{column.name}"' for column, sql in added]
        return f"SELECT {', '.join(outputs)} FROM ({base}) AS _cl_view"


_ROOT_MEMBER = re.compile(rf"cl_fp_get\({ROOT}, '([A-Za-z0-9_]+)'\)")


def _read_members_once(source: str, rows: _Rows, conditions: list[str]) -> tuple[str, _Rows, list[str]]:
    """Read every root member the view uses once per resource, in one parse, instead of at each use."""
    texts = [*rows.fixed.values(), *(sql for sql, _ in rows.lists), *conditions]
    members = sorted({m for text in texts for m in _ROOT_MEMBER.findall(text)})
    if not members:
        return source, rows, conditions

    def swap(text: str) -> str:
        return _ROOT_MEMBER.sub(lambda m: f"_cl_m_{m.group(1)}", text)

    listed = ", ".join(f"'{m}'" for m in members)
    each = ", ".join(f"cl_fp_member(_cl_ms, {i}) AS _cl_m_{m}" for i, m in enumerate(members))
    source = (
        f"(SELECT *, {each} FROM (SELECT *, cl_fp_members({ROOT}, [{listed}]) AS _cl_ms FROM {source}) AS _cl_read)"
        " AS _cl_members"
    )
    swapped = _Rows(
        columns=rows.columns,
        fixed={name: swap(sql) for name, sql in rows.fixed.items()},
        lists=[(swap(sql), columns) for sql, columns in rows.lists],
    )
    return source, swapped, [swap(c) for c in conditions]


@dataclass
class _Compiled:
    """A view compiled over one root, before the query around it is built."""

    rows: _Rows
    conditions: list[str]
    key: str


def _all(conditions: list[str]) -> str:
    return " AND ".join(conditions) or "TRUE"


def _either(test: str, when: tuple[_Rows, Scope], otherwise: tuple[_Rows, Scope]) -> _Rows:
    """Per row, the rows of ``when`` where ``test`` holds, else those of ``otherwise`` (same columns)."""
    (a, a_scope), (b, b_scope) = when, otherwise
    fixed = {name: f"CASE WHEN {test} THEN {sql} ELSE {b.fixed[name]} END" for name, sql in a.fixed.items()}
    lists = []
    if a.lists:
        (a_list, columns), (b_list, _) = _product(a.lists, a_scope), _product(b.lists, b_scope)
        lists.append((f"CASE WHEN {test} THEN {a_list} ELSE {b_list} END", columns))
    return _Rows(columns=a.columns, fixed=fixed, lists=lists)


def _field(name: str) -> str:
    return f"f_{name}"


def compile_view(view: Mapping[str, Any], *, resources: str = "resources") -> str:
    """Compile a SQL-on-FHIR v2 ViewDefinition to one SQL query over ``resources``.

    ``resources`` may name another table or subquery with the same columns (``resource_type``,
    ``resource``): a part of the lake, for an incremental refresh.

    The query is DuckDB SQL plus carelake's ``cl_`` functions (run it with an engine from
    :func:`carelake.engine.make_engine`, which defines them). An invalid view raises
    :class:`ViewDefinitionError` naming the offending element.

    Where the view allows it, the resources that follow the R4 model's shapes are read typed (see
    ``_typed``); the query holds both forms, and each resource is read by one of them.

    Examples:
        >>> sql = compile_view({"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]})
        >>> print(sql[: sql.index(",")])
        SELECT CASE WHEN _cl_fit THEN cl_fp_str(struct_extract(_cl_t
    """
    typed: _ViewCompiler | None
    try:
        typed = _ViewCompiler(view, resources, typed=True)
        typed.compiled  # noqa: B018 (compiling over the struct raises Untyped where it cannot be)
    except Untyped:
        typed = None
    return _ViewCompiler(view, resources).compile(typed)
