"""One FHIR record in, either a bronze row or a quarantine verdict out.

The verdict (rule + message) is separate from the reaction: the ingest job
decides to quarantine. Messages name what is wrong, never the record's content.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from carelake.sources.fhir._r4 import ID_PATTERN, r4_resource_types


@dataclass(frozen=True)
class Problem:
    """Why a record cannot be stored: a rule id and a message free of the record's content."""

    rule: str
    message: str


def check(obj: Any, *, assigned_id: str | None = None) -> Problem | None:
    """Structural checks ingestion needs before a record can be keyed; deeper validation is the quality suite's."""
    if not isinstance(obj, dict):
        return Problem("not-an-object", f"expected a JSON object, found a JSON {_json_type(obj)}")
    if "resourceType" not in obj:
        return Problem("missing-resourceType", "the object has no resourceType, so it is not a FHIR resource")
    resource_type = obj["resourceType"]
    if not isinstance(resource_type, str):
        return Problem(
            "invalid-resourceType", f"resourceType must be a string, found a JSON {_json_type(resource_type)}"
        )
    if resource_type not in r4_resource_types():
        hint = difflib.get_close_matches(resource_type, r4_resource_types(), n=1)
        named = f" {resource_type!r}" if re.fullmatch(r"[A-Za-z]{1,64}", resource_type) else ""
        suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
        return Problem("unknown-resourceType", f"resourceType{named} is not a FHIR R4 resource type{suggestion}")
    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, dict):
        return Problem("invalid-meta", f"meta must be an object, found a JSON {_json_type(meta)}")
    if "id" not in obj:
        if assigned_id is None:
            return Problem("missing-id", f"the {resource_type} has no id; NDJSON and standalone resources need one")
        return None
    rid = obj["id"]
    if not isinstance(rid, str):
        return Problem("invalid-id", f"the {resource_type} id must be a string, found a JSON {_json_type(rid)}")
    if not ID_PATTERN.fullmatch(rid):
        return Problem("invalid-id", f"the {resource_type} id (length {len(rid)}) does not match [A-Za-z0-9-.]{{1,64}}")
    return None


RULE_MESSAGES = {
    "blank-line": "the line is empty; NDJSON has one resource per line",
    "invalid-json": "invalid JSON",
    "not-an-object": "expected a JSON object",
    "missing-resourceType": "the object has no resourceType, so it is not a FHIR resource",
    "invalid-resourceType": "resourceType must be a string",
    "unknown-resourceType": "resourceType is not a FHIR R4 resource type",
    "invalid-meta": "meta must be an object",
    "missing-id": "the resource has no id; NDJSON and standalone resources need one",
    "invalid-id": "the id must be a string matching [A-Za-z0-9-.]{1,64}",
}


def describe(rule: str, text: str, *, assigned_id: str | None = None) -> Problem:
    """The message for a record SQL found breaking ``rule``: as precise as a re-parse can make it."""
    if rule == "blank-line":
        return Problem(rule, RULE_MESSAGES[rule])
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        where = f"column {exc.colno}" if exc.lineno == 1 else f"line {exc.lineno} column {exc.colno}"
        return Problem(rule, f"invalid JSON at {where}: {exc.msg}")
    problem = check(value, assigned_id=assigned_id)
    if problem is not None and problem.rule == rule:
        return problem
    return Problem(rule, RULE_MESSAGES.get(rule, rule))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
        type(value), type(value).__name__
    )


@dataclass(frozen=True)
class BundleEntry:
    """A resource taken out of a Bundle, with bundle-local references already rewritten."""

    index: int
    resource: dict[str, Any] | None
    assigned_id: str | None
    problem: Problem | None


def unpack_bundle(bundle: dict[str, Any]) -> Iterator[BundleEntry]:
    """Yield each entry's resource, rewriting ``urn:uuid:``/``urn:oid:`` and fullUrl references to Type/id.

    Inside a transaction the server assigns ids; carelake keeps the resource's own id
    or, for POST entries without one, the UUID of its ``urn:uuid:`` fullUrl, so that
    re-ingesting the same bundle gives the same ids.
    """
    entries = bundle.get("entry")
    if entries is None:
        return
    if not isinstance(entries, list):
        yield BundleEntry(0, None, None, Problem("invalid-bundle", "Bundle.entry must be an array"))
        return
    mapping: dict[str, str] = {}
    keyed: list[tuple[int, Any, str | None]] = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        assigned = None
        if isinstance(resource, dict):
            full_url = entry.get("fullUrl")
            assigned = _assigned_id(resource, entry)
            rtype = resource.get("resourceType")
            rid = resource.get("id") if isinstance(resource.get("id"), str) else assigned
            if isinstance(full_url, str) and isinstance(rtype, str) and rid:
                mapping[full_url] = f"{rtype}/{rid}"
        keyed.append((index, entry, assigned))
    for index, entry, assigned in keyed:
        if not isinstance(entry, dict):
            yield BundleEntry(index, None, None, Problem("invalid-entry", f"entry {index} is not an object"))
            continue
        resource = entry.get("resource")
        if resource is None:
            method = (entry.get("request") or {}).get("method") if isinstance(entry.get("request"), dict) else None
            rule = "unsupported-delete" if method == "DELETE" else "entry-without-resource"
            message = (
                f"entry {index} is a DELETE request; carelake keeps history and does not apply deletes"
                if method == "DELETE"
                else f"entry {index} has no resource"
            )
            yield BundleEntry(index, None, None, Problem(rule, message))
            continue
        if mapping and isinstance(resource, dict):
            _rewrite(resource, mapping)
        yield BundleEntry(index, resource, assigned, None)


def _assigned_id(resource: dict[str, Any], entry: dict[str, Any]) -> str | None:
    if "id" in resource:
        return None
    full_url = entry.get("fullUrl")
    if isinstance(full_url, str) and full_url.startswith("urn:uuid:"):
        candidate = full_url[len("urn:uuid:") :]
        if ID_PATTERN.fullmatch(candidate):
            return candidate
    request = entry.get("request")
    if isinstance(request, dict) and request.get("method") == "PUT" and isinstance(request.get("url"), str):
        tail = request["url"].split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if ID_PATTERN.fullmatch(tail) and tail != resource.get("resourceType"):
            return tail
    return None


def _rewrite(node: Any, mapping: dict[str, str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in mapping:
                node[key] = mapping[value]
            elif isinstance(value, dict | list):
                _rewrite(value, mapping)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, dict | list):
                _rewrite(item, mapping)
