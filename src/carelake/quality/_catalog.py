"""The check catalog: check types from check_types.toml, their instances from the FHIR model and the tables
beside it. Data, not code per check: adding a check is adding a row."""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from carelake.quality._elements import Element, elements, json_members

HERE = Path(__file__).parent
SEVERITIES = ("fatal", "error", "warning")

# FHIR R4 primitive regexes (Datatypes §2.24.0.1), checked against a value's full text.
_YEAR = "([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
_MONTH_DAY = "(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
REGEX = {
    "id": r"[A-Za-z0-9\-\.]{1,64}",
    "code": r"[^\s]+( [^\s]+)*",
    "date": f"{_YEAR}(-{_MONTH_DAY})?)?",
    "dateTime": f"{_YEAR}(-{_MONTH_DAY}(T{_TIME}{_ZONE})?)?)?",
    "instant": f"{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{_TIME}{_ZONE}",
    "time": _TIME,
    "oid": r"urn:oid:[0-2](\.(0|[1-9][0-9]*))+",
    "uuid": "urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "integer": r"-?([0]|([1-9][0-9]*))",
    "positiveInt": r"\+?[1-9][0-9]*",
    "unsignedInt": r"[0]|([1-9][0-9]*)",
    "decimal": r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?",
    "uri": r"\S*",
    "url": r"\S*",
    "canonical": r"\S*",
    "string": r"[\s\S]+",
    "markdown": r"[\s\S]+",
    "base64Binary": r"(\s*([0-9a-zA-Z\+/=]){4}\s*)+",
}


@dataclass(frozen=True)
class CheckType:
    """One parameterised check (a row of check_types.toml)."""

    id: str
    category: str
    subcategory: str
    severity: str
    evaluator: str
    description: str
    rationale: str
    source: str
    threshold: float | None = None
    resource_type: str = ""  # for instances that do not name one
    field: str = ""
    instances: str | None = None
    where: str | None = None
    applies: str = "TRUE"
    violated: str = ""
    records: str = ""
    validator: str | None = None
    requires: str = ""  # a lake table the check reads besides its own (an OMOP check's omop_concept)
    match: tuple[str, ...] = ()  # parameters joining one `records` to all instances (check_types.toml)


@dataclass(frozen=True)
class Check:
    """One resolved check instance: a type applied to a resource type and field with its parameters."""

    id: str
    type: CheckType
    resource_type: str
    field: str
    threshold: float
    severity: str
    params: dict[str, Any] = field(default_factory=dict)
    paths: tuple[str, ...] = ()  # element checks: the JSON paths whose kinds/values the templates read


@cache
def check_types() -> dict[str, CheckType]:
    """Every check type, by id, in catalog order."""
    raw = tomllib.loads((HERE / "check_types.toml").read_text())
    return {
        name: CheckType(id=name, **{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()})
        for name, spec in raw.items()
    }


@cache
def _tables() -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = tomllib.loads((HERE / "instances.toml").read_text())
    with (HERE / "plausible_ranges.csv").open(newline="") as f:
        ranges = [{**row, "low": float(row["low"]), "high": float(row["high"])} for row in csv.DictReader(f)]
    tables["plausible_ranges"] = ranges
    units: dict[str, dict[str, Any]] = {}
    for row in ranges:
        entry = units.setdefault(row["loinc"], {"loinc": row["loinc"], "display": row["display"], "units": []})
        entry["units"].append(row["unit"])
    tables["plausible_units"] = list(units.values())
    with (HERE / "unit_conversions.csv").open(newline="") as f:
        tables["unit_conversions"] = list(csv.DictReader(f))
    return tables


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _check_id(type_id: str, resource_type: str, field: str) -> str:
    field = " ".join(field.split())
    return f"{type_id}:{resource_type}:{field}" if resource_type else f"{type_id}:{field}"


def build_checks(resource_types: Iterable[str], *, as_of: str, tables: Iterable[str] = ()) -> list[Check]:
    """Every check instance for a lake holding these resource types (and these OMOP ``tables``), in catalog
    order. The OMOP checks name their table where FHIR checks name a resource type."""
    present = sorted(set(resource_types))
    omop = sorted(t for t in tables if t.startswith("omop_"))
    checks: list[Check] = []
    for type_ in check_types().values():
        for resource_type, params, paths in _instances(type_, present, as_of, omop):
            field_name = type_.field.format(**params)
            threshold = float(params.get("threshold", type_.threshold if type_.threshold is not None else 0))
            checks.append(
                Check(
                    id=_check_id(type_.id, resource_type, field_name),
                    type=type_,
                    resource_type=resource_type,
                    field=field_name,
                    threshold=threshold,
                    severity=type_.severity,
                    params=params,
                    paths=paths,
                )
            )
    return checks


def _instances(
    type_: CheckType, present: list[str], as_of: str, omop: list[str]
) -> Iterable[tuple[str, dict[str, Any], tuple]]:
    name = type_.instances
    if type_.requires and type_.requires not in omop:
        return
    if name == "fhir_elements":
        for resource_type in present:
            yield from _element_instances(type_, resource_type)
    elif name == "resource_types":
        for resource_type in present:
            if json_members(resource_type):
                members = ", ".join(_literal(m) for m in sorted(json_members(resource_type)))
                yield resource_type, {"members": members, "element": "(any member)"}, ()
    elif name == "value_sets":
        yield from _value_set_instances(present)
    elif name == "expected_elements":
        for row in _tables()["expected_elements"]:
            if row["resource_type"] in present:
                yield row["resource_type"], {**row, "element": row["element"]}, (f"$.{row['element']}",)
    elif name == "reference_types":
        for resource_type in present:
            yield resource_type, {"resource_type": resource_type}, ()
    elif name is None:
        if not type_.resource_type or type_.resource_type in present or type_.resource_type in omop:
            yield type_.resource_type, {"as_of": as_of}, ()
    else:
        for row in _tables()[name]:
            params = {**row, "as_of": as_of}
            for key in ("codes", "units"):
                if isinstance(row.get(key), list) and not type_.match:  # matched instances keep their lists
                    params[key] = ", ".join(_literal(c) for c in row[key])
            resource_type = row.get("resource_type") or type_.resource_type
            needs = [f"omop_{row[k]}" for k in ("table", "target") if k in row and resource_type in omop]
            if resource_type in present or (resource_type in omop and all(t in omop for t in needs)):
                yield resource_type, params, ()


def _element_instances(type_: CheckType, resource_type: str) -> Iterable[tuple[str, dict[str, Any], tuple]]:
    found = elements(resource_type)
    if type_.where == "required":
        groups: dict[str, list[Element]] = {}
        for e in found:
            if e.choice and e.choice_required and e.path.count(".") == 1:
                groups.setdefault(e.choice, []).append(e)
            elif e.required and e.path.count(".") == 1:
                yield resource_type, {"element": e.name}, (e.path,)
        for choice, options in groups.items():
            yield resource_type, {"element": f"{choice}[x]"}, tuple(e.path for e in options)
        return
    for e in found:
        params = {"element": e.name, "repeats": "TRUE" if e.repeats else "FALSE", "json_kind": e.json_kind}
        if type_.where == "primitive" and not (e.primitive and not e.repeats):
            continue
        if type_.where == "formatted":
            if not e.primitive or e.repeats or e.type not in REGEX:
                continue
            params["regex"] = REGEX[e.type].replace("'", "''")
        if type_.where == "reference":
            if e.type != "Reference" or e.repeats or not e.targets:
                continue
            params["targets"] = ", ".join(_literal(t) for t in e.targets)
            yield resource_type, params, (e.path + ".reference",)
            continue
        yield resource_type, params, (e.path,)


def _value_set_instances(present: list[str]) -> Iterable[tuple[str, dict[str, Any], tuple]]:
    curated = {(r["resource_type"], r["element"]): r for r in _tables()["value_sets"]}
    for resource_type in present:
        for e in elements(resource_type):
            if e.values and not e.repeats and (resource_type, e.name) not in curated:
                codes = ", ".join(_literal(c) for c in e.values)
                yield resource_type, {"element": e.name, "codes": codes}, (e.path,)
    for (resource_type, element), row in curated.items():
        if resource_type in present:
            codes = ", ".join(_literal(c) for c in row["codes"])
            yield resource_type, {"element": element, "codes": codes}, (f"$.{element}",)
