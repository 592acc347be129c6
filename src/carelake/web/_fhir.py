"""A read-only FHIR R4 API over the lake's current resources: read, search, $everything, CapabilityStatement.

Search supports ``patient``/``subject`` (``Patient/123`` or ``123``), ``_id``, ``_lastUpdated`` (with the
``eq``, ``gt``, ``ge``, ``lt`` and ``le`` prefixes), ``_count`` (default 50, at most 500) and ``_offset`` for
paging; results are searchset Bundles with ``total`` and ``self``/``next`` links. Errors are OperationOutcomes
with the HTTP status that fits. Who may see what is decided by the caller (:mod:`carelake.web._app`).
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from carelake.fhir._events import sql_literal
from carelake.web._data import valid_id

if TYPE_CHECKING:
    from carelake.lake import Lake

FHIR_JSON = "application/fhir+json"
DEFAULT_COUNT, MAX_COUNT = 50, 500
SEARCH_PARAMETERS = ("patient", "subject", "_id", "_lastUpdated", "_count", "_offset")
_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_DATE = re.compile(r"^(eq|gt|ge|lt|le)?(\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?)?)?)$")
_OPERATORS = {"eq": "=", "gt": ">", "ge": ">=", "lt": "<", "le": "<=", None: "="}


class FhirError(Exception):
    """An error the API returns as an OperationOutcome."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.code, self.message)


def operation_outcome(code: str, message: str, severity: str = "error") -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code,
                                                           "diagnostics": message}]}  # fmt: skip


def capability_statement(lake: Lake, base: str) -> dict[str, Any]:
    """What this server can do: read and search of every resource type the lake holds."""
    types = [r["resource_type"] for r in lake.sql(
        "SELECT DISTINCT resource_type FROM resources ORDER BY 1").to_pylist()]  # fmt: skip
    search = [
        {
            "name": n,
            "type": "reference"
            if n in ("patient", "subject")
            else "date"
            if n == "_lastUpdated"
            else "token"
            if n == "_id"
            else "number",
        }
        for n in SEARCH_PARAMETERS[:4]
    ]
    resources = [{"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}], "searchParam": search}
                 for t in types]  # fmt: skip
    patient = next((r for r in resources if r["type"] == "Patient"), None)
    if patient is not None:
        patient["operation"] = [
            {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}
        ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "software": {"name": "carelake"},
        "implementation": {"description": "carelake read-only FHIR API", "url": base},
        "rest": [{"mode": "server", "security": {"description": "Bearer token or session cookie; roles decide "
                                                                "which patients a user may see."},
                  "resource": resources}],
    }  # fmt: skip


def read(lake: Lake, resource_type: str, id_: str) -> dict[str, Any]:
    """One current resource, or a 404 OperationOutcome."""
    _check_type(resource_type)
    if not valid_id(id_):
        raise FhirError(400, "invalid", f"{id_!r} is not a valid FHIR id")
    rows = lake.sql(f"""SELECT resource, patient_id FROM resources
                        WHERE resource_type = {sql_literal(resource_type)} AND id = {sql_literal(id_)}""").to_pylist()
    if not rows:
        raise FhirError(404, "not-found", f"{resource_type}/{id_} is not known")
    return json.loads(rows[0]["resource"])


def patient_of(lake: Lake, resource_type: str, id_: str) -> str | None:
    """Whose a resource is (the Patient's own id for a Patient), for access decisions before reading it."""
    if resource_type == "Patient":
        return id_
    if not valid_id(id_):
        return None
    rows = lake.sql(f"""SELECT patient_id FROM resources
                        WHERE resource_type = {sql_literal(resource_type)} AND id = {sql_literal(id_)}""").to_pylist()
    return rows[0]["patient_id"] if rows else None


def search_patient(params: dict[str, str]) -> str | None:
    """The patient a search is restricted to (``patient`` or ``subject``), as a bare id."""
    value = params.get("patient") or params.get("subject")
    if value is None:
        return None
    value = value.removeprefix("Patient/")
    if not valid_id(value):
        raise FhirError(400, "invalid", f"{value!r} is not a valid patient id")
    return value


def search(lake: Lake, resource_type: str, params: dict[str, str], base: str) -> dict[str, Any]:
    """A searchset Bundle of current resources of one type, paged."""
    _check_type(resource_type)
    unknown = sorted(set(params) - set(SEARCH_PARAMETERS))
    if unknown:
        raise FhirError(400, "not-supported", f"search parameter(s) {', '.join(unknown)} are not supported; "
                                              f"supported: {', '.join(SEARCH_PARAMETERS)}")  # fmt: skip
    where = [f"resource_type = {sql_literal(resource_type)}"]
    patient = search_patient(params)
    if patient is not None:
        where.append(f"id = {sql_literal(patient)}" if resource_type == "Patient" else
                     f"patient_id = {sql_literal(patient)}")  # fmt: skip
    if "_id" in params:
        ids = params["_id"].split(",")
        if not all(valid_id(i) for i in ids):
            raise FhirError(400, "invalid", "_id must be comma-separated FHIR ids")
        where.append(f"id IN ({', '.join(sql_literal(i) for i in ids)})")
    if "_lastUpdated" in params:
        match = _DATE.match(params["_lastUpdated"])
        if not match:
            raise FhirError(400, "invalid", "_lastUpdated must be a FHIR date, optionally prefixed: ge2024-01-01")
        where.append(f"last_updated {_OPERATORS[match.group(1)]} CAST({sql_literal(match.group(2))} AS TIMESTAMPTZ)")
    return _bundle(lake, " AND ".join(where), params, f"{base}/{resource_type}", base)


def everything(lake: Lake, patient: str, params: dict[str, str], base: str) -> dict[str, Any]:
    """``Patient/{id}/$everything``: the patient and every current resource that is theirs, paged."""
    if not valid_id(patient):
        raise FhirError(400, "invalid", f"{patient!r} is not a valid FHIR id")
    read(lake, "Patient", patient)  # 404 when unknown
    pid = sql_literal(patient)
    where = f"((resource_type = 'Patient' AND id = {pid}) OR patient_id = {pid})"
    paging = {k: v for k, v in params.items() if k in ("_count", "_offset")}
    return _bundle(lake, where, paging, f"{base}/Patient/{patient}/$everything", base)


def _bundle(lake: Lake, where: str, params: dict[str, str], url: str, base: str) -> dict[str, Any]:
    count = _int(params.get("_count"), DEFAULT_COUNT, "_count", 0, MAX_COUNT)
    offset = _int(params.get("_offset"), 0, "_offset", 0, 10**9)
    total = lake.sql(f"SELECT count(*) AS n FROM resources WHERE {where}").column("n")[0].as_py()
    rows = lake.sql(f"""SELECT resource_type, id, resource FROM resources WHERE {where}
                        ORDER BY resource_type <> 'Patient', resource_type, id
                        LIMIT {count} OFFSET {offset}""").to_pylist()
    kept = {k: v for k, v in params.items() if k not in ("_offset",)}
    links = [{"relation": "self", "url": f"{url}?{urlencode(kept | {'_offset': offset})}"}]
    if offset + count < total:
        links.append({"relation": "next", "url": f"{url}?{urlencode(kept | {'_offset': offset + count})}"})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": [{"fullUrl": f"{base}/{r['resource_type']}/{r['id']}", "resource": json.loads(r["resource"]),
                   "search": {"mode": "match"}} for r in rows],
    }  # fmt: skip


def _int(value: str | None, default: int, name: str, low: int, high: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise FhirError(400, "invalid", f"{name} must be a whole number from {low} to {high}")
    return int(value)


def _check_type(resource_type: str) -> None:
    if not _TYPE.match(resource_type):
        raise FhirError(400, "invalid", f"{resource_type!r} is not a FHIR resource type")
