"""FHIRPath ``lowBoundary()`` / ``highBoundary()``: the range a value of limited precision stands for.

* decimal: half a unit of the last written digit either side (``1.0`` → 0.95 … 1.05);
* date: the first / last day of the year or month written (``1970-06`` → 1970-06-01 … 1970-06-30);
* dateTime: the first / last millisecond, and without a zone the earliest (+14:00) / latest (-12:00) one;
* time: the first / last millisecond (``12:34`` → 12:34:00.000 … 12:34:59.999).

Dates and times stay ISO text, as FHIR writes them. When the compiler knows the value's type (from
``ofType()``) it computes that one boundary; otherwise the kind and shape of the value decide at run time
and the result is text (a ``decimal`` column casts it back to a number).
"""

from __future__ import annotations

from carelake.fhir._expressions import (
    Coll,
    Scalar,
    Scope,
    Value,
    as_scalar,
    element_of,
)
from carelake.fhir._model import NUMERIC_TYPES

_DATE = "'^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?'"
_TIME = "'T([0-9:.]+)'"
_ZONE = "'(Z|[+-][0-9]{2}:[0-9]{2})\\z'"  # \z, not $: Java's $ (Spark) also matches before a final newline


def _decimal(low: bool, number: str, scale: str) -> str:
    sign = "-" if low else "+"
    return f"({number} {sign} 0.5 * power(10.0, -({scale})))"


def _date(low: bool, text: str) -> str:
    if low:
        return f"({text} || substr('0000-01-01', length({text}) + 1))"
    return (
        f"CASE length({text}) WHEN 4 THEN {text} || '-12-31' "
        f"WHEN 7 THEN CAST(last_day(CAST({text} || '-01' AS DATE)) AS VARCHAR) ELSE {text} END"
    )


def _time(low: bool, text: str) -> str:
    template = "'00:00:00.000'" if low else "'23:59:59.999'"
    return f"({text} || substr({template}, length({text}) + 1))"


def _date_time(low: bool, text: str) -> str:
    date = f"regexp_extract({text}, {_DATE}, 0)"
    time = f"regexp_extract({text}, {_TIME}, 1)"
    zone = f"regexp_extract({text}, {_ZONE}, 1)"
    default_zone = "'+14:00'" if low else "'-12:00'"
    return (
        f"CASE WHEN {text} IS NULL THEN NULL ELSE {_date(low, date)} || 'T' || {_time(low, time)} || "
        f"CASE WHEN {zone} = '' THEN {default_zone} ELSE {zone} END END"
    )


def boundary(low: bool, value: Value, scope: Scope) -> Scalar:
    """The low or high boundary of a single value."""
    type_ = value.type
    if isinstance(value, Scalar):
        if type_ in ("integer", "decimal"):
            text = f"CAST(CAST({value.sql} AS DOUBLE) AS VARCHAR)"
            scale = f"length(split_part({text}, '.', 2))"
            return Scalar(_decimal(low, f"CAST({value.sql} AS DOUBLE)", scale), "decimal")
        text = value.sql
    else:
        assert isinstance(value, Coll)
        element = element_of(value, scope)
        if type_ in NUMERIC_TYPES:
            return Scalar(_decimal(low, f"cl_fp_num({element})", f"cl_fp_scale({element})"), "decimal")
        if type_ not in ("date", "dateTime", "instant", "time"):
            return _dynamic(low, element, scope)
        text = as_scalar(value, "string", scope).sql
    if type_ == "date":
        return Scalar(_date(low, text), "date")
    if type_ == "time":
        return Scalar(_time(low, text), "time")
    return Scalar(_date_time(low, text), "dateTime")


def _dynamic(low: bool, element: str, scope: Scope) -> Scalar:
    """Boundary of an element whose type the compiler does not know: decided by its kind and shape."""
    v, t = scope.var(), scope.var()
    number = f"CAST({_decimal(low, f'cl_fp_num({v}.e)', f'cl_fp_scale({v}.e)')} AS VARCHAR)"
    text = f"{v}.t"
    by_shape = (
        f"CASE WHEN regexp_matches({text}, '^[0-9]{{2}}:') THEN {_time(low, text)} "
        f"WHEN contains({text}, 'T') THEN {_date_time(low, text)} ELSE {_date(low, text)} END"
    )
    body = f"CASE {v}.k WHEN 'number' THEN {number} WHEN 'string' THEN {by_shape} END"
    bound = f"{{'e': {t}, 'k': cl_fp_kind({t}), 't': cl_fp_str({t})}}"
    return Scalar(
        f"cl_fp_at(list_transform(list_transform([{element}], lambda {t}: {bound}), lambda {v}: {body}), 0)",
        "string",
    )
