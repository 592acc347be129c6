"""A tamper-evident, append-only access log: who looked at what, when, and whether they were let in.

HIPAA's audit controls (45 CFR 164.312(b)) ask that access to health data be recorded and that the record
can be examined; this module keeps that record for the web app inside the lake::

    <lake>/audit/audit-log.jsonl   one JSON event per line, never rewritten or deleted by carelake
    <lake>/audit/head.json         {"seq": n, "hash": h} of the last event, replaced atomically
    <lake>/audit/.audit.lock       flock taken around every append

Each event carries ``prev``, the hash of the event before it (64 zeros for the first), and ``hash``, the SHA-256
of its own canonical JSON (sorted keys, without ``hash``). Editing, removing, reordering or copying a line breaks
the chain; cutting events off the end disagrees with the head. :meth:`AuditLog.verify` names the first problem
and its line. The chain proves the log is *internally* consistent: someone able to rewrite the whole folder can
forge a new consistent chain, so keep copies of ``head.json`` elsewhere (a backup, a ticket) to anchor it.

Appends take an exclusive ``flock`` (threads and processes), check that the head and the last line agree, write
one line with ``O_APPEND``, ``fsync`` it, then replace the head. A crash between the line and the head leaves a
last event that links to the head; the next append accepts it and moves the head on, while :meth:`verify` reports
the gap until then. Any other disagreement makes appends refuse (fail closed) instead of building on damage.

FHIR R4 AuditEvent mapping (:meth:`AuditLog.to_fhir`), after IHE Basic Audit Log Patterns (BALP):

==========  =====================================  =====================================  ======
action      type                                   subtype                                action
==========  =====================================  =====================================  ======
read        audit-event-type ``rest``              restful-interaction ``read``           R
search      audit-event-type ``rest``              restful-interaction ``search-type``    E
export      audit-event-type ``rest``              restful-interaction ``operation``      E
login       DCM 110114 User Authentication         DCM 110122 Login                       E
logout      DCM 110114 User Authentication         DCM 110123 Logout                      E
admin       DCM 110113 Security Alert              DCM 110136 Security Roles Changed      E
==========  =====================================  =====================================  ======

* ``outcome``: success ``0``, denied ``4`` (minor failure), failure ``8`` (serious failure).
* One agent, the user: ``who.identifier``, ``role.text`` = the carelake role, ``requestor`` true; for read, search
  and export its ``type`` is v3-ParticipationType ``IRCP`` (information recipient), BALP's user type for
  query/retrieve. ``network`` holds the client address, type ``2`` (IP address) or ``1`` (machine name). BALP's
  separate client/server device agents are left out: the log has no device identity to put in them.
* ``source``: observer ``carelake``, security-source-type ``4`` (Application Server).
* ``entity``: the patient (audit-entity-type ``1`` Person, object-role ``1`` Patient); the resource when it is not
  that same patient (``what.reference`` when it reads like ``Type/id``, else ``what.display`` for a page or API
  path; type ``2`` System Object, role ``4`` Domain Resource); for a search with detail, the query (type ``2``,
  role ``24`` Query, ``query`` = base64 of the detail), as in BALP's Query profile.
* The detail of any other action (a reason for a denial, what an admin changed) goes to ``outcomeDesc``.
* ``id`` is ``audit-<seq>``; ``recorded`` is the event time. No ``meta``, no extensions.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import orjson

from carelake.errors import ConfigError, LakeError
from carelake.lake._catalog import fsync_dir
from carelake.sources.fhir._r4 import ID_PATTERN

AUDIT_DIR = "audit"
LOG_FILE = "audit-log.jsonl"
HEAD_FILE = "head.json"
LOCK_FILE = ".audit.lock"
GENESIS = "0" * 64

ACTIONS = ("login", "logout", "read", "search", "export", "admin")
OUTCOMES = ("success", "denied", "failure")
FIELDS = ("seq", "time", "who", "role", "action", "outcome", "client", "resource", "patient", "detail", "prev")
_OPTIONAL = ("client", "resource", "patient", "detail")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_REFERENCE = re.compile(rf"[A-Z][A-Za-z]+/{ID_PATTERN.pattern}")
_TAIL_CHUNK = 64 * 1024

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_REST = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "RESTful Operation",
}
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_AUTHENTICATION = {"system": _DCM, "code": "110114", "display": "User Authentication"}
_TYPES: dict[str, tuple[dict[str, str], dict[str, str], str]] = {
    "read": (_REST, {"system": _INTERACTION, "code": "read", "display": "read"}, "R"),
    "search": (_REST, {"system": _INTERACTION, "code": "search-type", "display": "search type"}, "E"),
    "export": (_REST, {"system": _INTERACTION, "code": "operation", "display": "operation"}, "E"),
    "login": (_AUTHENTICATION, {"system": _DCM, "code": "110122", "display": "Login"}, "E"),
    "logout": (_AUTHENTICATION, {"system": _DCM, "code": "110123", "display": "Logout"}, "E"),
    "admin": (
        {"system": _DCM, "code": "110113", "display": "Security Alert"},
        {"system": _DCM, "code": "110136", "display": "Security Roles Changed"},
        "E",
    ),
}
_OUTCOMES = {"success": "0", "denied": "4", "failure": "8"}
_OUTCOME_TEXT = {"denied": "access denied", "failure": "the request failed"}
_RECIPIENT = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "code": "IRCP",
            "display": "information recipient",
        }
    ]
}
_SOURCE = {
    "observer": {"display": "carelake"},
    "type": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
            "code": "4",
            "display": "Application Server",
        }
    ],
}
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_PERSON = {"system": _ENTITY_TYPE, "code": "1", "display": "Person"}
_SYSTEM_OBJECT = {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"}
_PATIENT_ROLE = {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"}
_RESOURCE_ROLE = {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
_QUERY_ROLE = {"system": _OBJECT_ROLE, "code": "24", "display": "Query"}

_RECOVER_HINT = (
    "run AuditLog(lake).verify() to find the damage; keep the audit folder as evidence and move it aside "
    "to start a new chain"
)


@dataclass
class AuditVerification:
    """The verdict on a log: ``ok``, how many events checked out, and the first problem with its 1-based line."""

    ok: bool
    events: int
    problem: str | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON reports and API answers."""
        return asdict(self)


class AuditLog:
    """The lake's access log: append events, read them back, verify the chain, export FHIR AuditEvents.

    Examples:
        >>> log = AuditLog(lake_root)  # doctest: +SKIP
        >>> log.record(who="alice", role="analyst", action="read", outcome="success", patient="123")  # doctest: +SKIP
        >>> log.verify().ok  # doctest: +SKIP
        True
    """

    def __init__(self, lake_root: str | Path) -> None:
        self.lake_root = Path(lake_root)
        self.folder = self.lake_root / AUDIT_DIR
        self.path = self.folder / LOG_FILE
        self.head_path = self.folder / HEAD_FILE

    def record(
        self,
        *,
        who: str,
        role: str,
        action: Literal["login", "logout", "read", "search", "export", "admin"],
        outcome: Literal["success", "denied", "failure"],
        client: str | None = None,
        resource: str | None = None,
        patient: str | None = None,
        detail: str | None = None,
    ) -> dict[str, Any]:
        """Append one event under the lock and return it (with ``seq``, ``time``, ``prev`` and ``hash``)."""
        if action not in ACTIONS:
            raise ConfigError(f"unknown audit action {action!r}", hint=f"use one of {', '.join(ACTIONS)}")
        if outcome not in OUTCOMES:
            raise ConfigError(f"unknown audit outcome {outcome!r}", hint=f"use one of {', '.join(OUTCOMES)}")
        for name, value in (("who", who), ("role", role)):
            if not isinstance(value, str):  # empty is allowed: a login attempt without a user name is still recorded
                raise ConfigError(f"audit field {name!r} must be a string", hint="name the user and their role")
        optional = {"client": client, "resource": resource, "patient": patient, "detail": detail}
        for name, value in optional.items():
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"audit field {name!r} must be a string or None", hint="pass text, or leave it out")
        if not self.lake_root.is_dir():
            raise LakeError(f"no lake at {self.lake_root}", hint="create the lake before recording access to it")
        self.folder.mkdir(exist_ok=True)
        with self._locked(fcntl.LOCK_EX):
            seq, prev = self._last()
            event: dict[str, Any] = {
                "seq": seq + 1,
                "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "who": who,
                "role": role,
                "action": action,
                "outcome": outcome,
                **optional,
                "prev": prev,
            }
            event["hash"] = _hash(event)
            self._append(orjson.dumps(event) + b"\n")
            self._write_head(event["seq"], event["hash"])
        return event

    def events(self) -> Iterator[dict[str, Any]]:
        """Every event in file order, streamed up to the last complete append; run :meth:`verify` to trust them."""
        size, _ = self._snapshot()
        for number, raw in _lines(self.path, size):
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise LakeError(
                    f"the audit log {self.path} is damaged: line {number} is not JSON", hint=_RECOVER_HINT
                ) from exc
            if not isinstance(event, dict):
                raise LakeError(
                    f"the audit log {self.path} is damaged: line {number} is not an event", hint=_RECOVER_HINT
                )
            yield event

    def verify(self) -> AuditVerification:
        """Re-read the whole log (streaming, constant memory) and report the first break in the chain, or ok.

        Head and log size are read together under a shared lock, then the log is checked up to that size without
        the lock, so appends go on during a long verification and never read as damage.
        """
        size, head = self._snapshot()
        count, last_hash = 0, GENESIS
        for number, raw in _lines(self.path, size):
            problem, event = self._check(raw, number, count + 1, last_hash, size)
            if problem is not None or event is None:
                return AuditVerification(ok=False, events=count, problem=problem, line=number)
            count, last_hash = event["seq"], event["hash"]
        return _check_head(head, count, last_hash)

    def to_fhir(self) -> Iterator[dict[str, Any]]:
        """Each event as a FHIR R4 AuditEvent (BALP patterns; see the module docstring for the mapping)."""
        for event in self.events():
            yield _audit_event(event)

    # -- appending ---------------------------------------------------------------------------------------------

    def _last(self) -> tuple[int, str]:
        """The seq and hash to chain onto; the lock is held. Refuses when the head and the log disagree."""
        head = _read_head(self.head_path)
        size = self.path.stat().st_size if self.path.exists() else 0
        if head is None:
            if size:
                raise LakeError(
                    f"the audit head {self.head_path} is missing but the audit log {self.path} is not empty",
                    hint=_RECOVER_HINT,
                )
            self._write_head(0, GENESIS)  # so a crash after the first line leaves a head to link to
            return 0, GENESIS
        if not size:
            if head == (0, GENESIS):
                return head
            raise LakeError(
                f"the audit log {self.path} is empty or missing but its head says {head[0]} events", hint=_RECOVER_HINT
            )
        tail = _last_line(self.path)
        if not tail.endswith(b"\n"):
            raise LakeError(f"the audit log {self.path} ends in a cut-off line", hint=_RECOVER_HINT)
        try:
            last = orjson.loads(tail)
            seq, digest, prev = last["seq"], last["hash"], last["prev"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise LakeError(f"the last line of the audit log {self.path} is damaged", hint=_RECOVER_HINT) from exc
        if (seq, digest) == head:
            return head
        # An append that wrote its line but crashed before replacing the head: the line links to the head.
        if seq == head[0] + 1 and prev == head[1] and _hash(_without_hash(last)) == digest:
            return seq, digest
        raise LakeError(
            f"the audit log {self.path} does not match its head (last event {seq}, head {head[0]})",
            hint=_RECOVER_HINT,
        )

    def _append(self, line: bytes) -> None:
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            view = memoryview(line)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.folder)

    def _write_head(self, seq: int, digest: str) -> None:
        tmp = self.folder / f".{HEAD_FILE}.tmp"
        with tmp.open("wb") as handle:
            handle.write(orjson.dumps({"seq": seq, "hash": digest}))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.head_path)
        fsync_dir(self.folder)

    # -- locking and reading ------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self, operation: int) -> Iterator[None]:
        """Hold ``flock(operation)`` on the lock file; a shared lock on a folder we cannot write is skipped."""
        try:
            handle = self.folder.joinpath(LOCK_FILE).open("ab")
        except OSError:
            if operation == fcntl.LOCK_EX:
                raise
            handle = None
        if handle is None:
            yield  # a read-only copy of the log: nobody can append to it through us
            return
        with handle:
            fcntl.flock(handle.fileno(), operation)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _snapshot(self) -> tuple[int, bytes | None]:
        """Log size and raw head, read together between appends (so they describe the same moment)."""
        if not self.folder.is_dir():
            return 0, None
        with self._locked(fcntl.LOCK_SH):
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            try:
                head = self.head_path.read_bytes()
            except FileNotFoundError:
                head = None
        return size, head

    # -- verifying ---------------------------------------------------------------------------------------------

    def _check(
        self, raw: bytes, number: int, expected: int, last_hash: str, size: int
    ) -> tuple[str | None, dict[str, Any] | None]:
        """What is wrong with one line, given the chain so far (lines 1..number-1 hold events 1..expected-1)."""
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return f"line {number} is not valid JSON (damaged or edited)", None
        if not isinstance(event, dict) or not isinstance(event.get("hash"), str):
            return f"line {number} is not an audit event (it has no hash)", None
        if _hash(_without_hash(event)) != event["hash"]:
            seq = event.get("seq")
            said = "" if seq == expected else f"; its seq now reads {seq!r}"
            return f"event {expected} was edited (its hash does not match its content{said})", None
        malformed = _malformed(event)
        if malformed:
            return f"line {number} is not a valid audit event ({malformed})", None
        seq = event["seq"]
        if seq > expected:
            found = self._find(expected, after=number, size=size)
            if found is not None:
                return f"events {expected} and {seq} are out of order (event {expected} is at line {found})", None
            if seq == expected + 1:
                return f"event {expected} is missing (removed)", None
            return f"events {expected} to {seq - 1} are missing (removed)", None
        if seq < expected:
            return f"event {seq} appears twice (lines {seq} and {number}): a line was copied or moved", None
        if event["prev"] != last_hash:
            if expected == 1:
                return "event 1 does not start the chain (its prev is not 64 zeros): earlier events were removed", None
            problem = (
                f"event {expected} does not link to event {expected - 1}: one of them was edited and rehashed, "
                "or replaced"
            )
            return problem, None
        if not raw.endswith(b"\n"):
            return f"line {number} is cut short (it has no line end)", None
        return None, event

    def _find(self, seq: int, *, after: int, size: int) -> int | None:
        """The line holding event ``seq`` after line ``after``, streaming; None if it is nowhere."""
        for number, raw in _lines(self.path, size):
            if number <= after:
                continue
            try:
                event = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(event, dict) and event.get("seq") == seq:
                return number
        return None


def _check_head(raw: bytes | None, count: int, last_hash: str) -> AuditVerification:
    """Compare the head (as read with the log size) to the last event verified."""
    try:
        head = _parse_head(raw)
    except ValueError:
        return AuditVerification(ok=False, events=count, problem=f"the head file {HEAD_FILE} is damaged")
    if head is None:
        if count:
            problem = f"the head file {HEAD_FILE} is missing but the log holds {count} events (it was deleted)"
            return AuditVerification(ok=False, events=count, problem=problem)
        return AuditVerification(ok=True, events=0)
    head_seq, head_hash = head
    if head_seq > count:
        if count == 0:
            problem = f"the log has no events but its head says {head_seq} (events removed)"
        else:
            problem = f"the log ends at event {count} but its head says {head_seq} (events removed from the end)"
        return AuditVerification(ok=False, events=count, problem=problem, line=count + 1)
    if head_seq < count:
        problem = (
            f"the log goes on to event {count} but its head says {head_seq} (an append was interrupted before "
            "its head was updated, or events were added outside carelake)"
        )
        return AuditVerification(ok=False, events=count, problem=problem, line=head_seq + 1)
    if head_hash != last_hash:
        problem = f"event {count} does not match the head (it was edited and rehashed, or replaced)"
        return AuditVerification(ok=False, events=count, problem=problem, line=count or None)
    return AuditVerification(ok=True, events=count)


def _lines(path: Path, size: int) -> Iterator[tuple[int, bytes]]:
    """(1-based number, raw line) for the first ``size`` bytes of ``path``, one line in memory at a time."""
    if size <= 0:
        return
    with path.open("rb") as handle:
        left = size
        for number, raw in enumerate(handle, 1):
            if len(raw) >= left:
                yield number, raw[:left]
                return
            left -= len(raw)
            yield number, raw


def _hash(event: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON (sorted keys) of an event without its ``hash``."""
    return hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _without_hash(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "hash"}


def _malformed(event: dict[str, Any]) -> str | None:
    """Which field breaks the event schema, or None; checked after the hash so edits read as edits."""
    keys = set(event) - {"hash"}
    if keys != set(FIELDS):
        missing, extra = sorted(set(FIELDS) - keys), sorted(keys - set(FIELDS))
        return "; ".join(part for part in (_listed("missing", missing), _listed("unexpected", extra)) if part)
    seq = event["seq"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return "seq is not a positive integer"
    for name in ("time", "who", "role"):
        if not isinstance(event[name], str):
            return f"{name} is not text"
    if event["action"] not in ACTIONS:
        return "unknown action"
    if event["outcome"] not in OUTCOMES:
        return "unknown outcome"
    for name in _OPTIONAL:
        if event[name] is not None and not isinstance(event[name], str):
            return f"{name} is not text"
    if not isinstance(event["prev"], str) or not _HEX64.fullmatch(event["prev"]):
        return "prev is not a SHA-256 hash"
    return None


def _listed(label: str, names: list[str]) -> str:
    return f"{label} fields: {', '.join(names)}" if names else ""


def _read_head(path: Path) -> tuple[int, str] | None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return _parse_head(raw)
    except ValueError as exc:
        raise LakeError(f"the audit head {path} is damaged", hint=_RECOVER_HINT) from exc


def _parse_head(raw: bytes | None) -> tuple[int, str] | None:
    """``(seq, hash)`` from head.json bytes; None when absent; ValueError when damaged."""
    if raw is None:
        return None
    head = orjson.loads(raw)  # JSONDecodeError is a ValueError
    if not isinstance(head, dict) or set(head) != {"seq", "hash"}:
        raise ValueError("head.json must hold exactly seq and hash")
    seq, digest = head["seq"], head["hash"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(digest, str):
        raise ValueError("head.json holds a bad seq or hash")
    return seq, digest


def _last_line(path: Path) -> bytes:
    """The file's last line (with its newline, if any), read backwards in chunks: constant work per append."""
    with path.open("rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        position, tail = end, b""
        while position > 0:
            step = min(_TAIL_CHUNK, position)
            position -= step
            handle.seek(position)
            tail = handle.read(step) + tail
            cut = tail.rfind(b"\n", 0, len(tail) - 1)
            if cut >= 0:
                return tail[cut + 1 :]
        return tail


def _audit_event(event: dict[str, Any]) -> dict[str, Any]:
    """One log event as a FHIR R4 AuditEvent resource (plain dict)."""
    action = event["action"]
    event_type, subtype, code = _TYPES[action]
    agent: dict[str, Any] = {
        "who": {"identifier": {"value": event["who"]}} if event["who"] else {"display": "unnamed user"},
        "requestor": True,
    }
    if event["role"]:
        agent["role"] = [{"text": event["role"]}]
    if action in ("read", "search", "export"):
        agent = {"type": _RECIPIENT, **agent}
    if event["client"]:
        agent["network"] = {"address": event["client"], "type": _network_type(event["client"])}
    resource: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"audit-{event['seq']}",
        "type": event_type,
        "subtype": [subtype],
        "action": code,
        "recorded": event["time"],
        "outcome": _OUTCOMES[event["outcome"]],
        "agent": [agent],
        "source": _SOURCE,
    }
    detail = event["detail"]
    if detail and action != "search":
        resource["outcomeDesc"] = detail
    elif event["outcome"] in _OUTCOME_TEXT:
        resource["outcomeDesc"] = _OUTCOME_TEXT[event["outcome"]]
    entities = []
    patient_reference = f"Patient/{event['patient']}" if event["patient"] else None
    if patient_reference:
        entities.append({"what": {"reference": patient_reference}, "type": _PERSON, "role": _PATIENT_ROLE})
    target = event["resource"]
    if target and target != patient_reference:
        what = {"reference": target} if _REFERENCE.fullmatch(target) else {"display": target}
        entities.append({"what": what, "type": _SYSTEM_OBJECT, "role": _RESOURCE_ROLE})
    if detail and action == "search":
        query = base64.b64encode(detail.encode("utf-8")).decode("ascii")
        entities.append({"type": _SYSTEM_OBJECT, "role": _QUERY_ROLE, "query": query})
    if entities:
        resource["entity"] = entities
    return resource


def _network_type(address: str) -> str:
    """``2`` for an IP address, ``1`` for a machine name (audit-event-network-type)."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return "1"
    return "2"
