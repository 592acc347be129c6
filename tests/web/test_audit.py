"""The audit log: hash chain, tamper detection with the right line, safe concurrent appends, FHIR AuditEvents."""

from __future__ import annotations

import base64
import hashlib
import itertools
import multiprocessing
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from carelake.errors import ConfigError, LakeError
from carelake.web._audit import AUDIT_DIR, AuditLog, AuditVerification

ZEROS = "0" * 64


def _digest(event: dict[str, Any]) -> str:
    """The documented hash, computed independently of the module."""
    body = {k: v for k, v in event.items() if k != "hash"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _log_file(root: Path) -> Path:
    return root / AUDIT_DIR / "audit-log.jsonl"


def _lines(root: Path) -> list[bytes]:
    return _log_file(root).read_bytes().splitlines(keepends=True)


def _write_lines(root: Path, lines: list[bytes]) -> None:
    _log_file(root).write_bytes(b"".join(lines))


def _filled(root: Path, n: int) -> AuditLog:
    log = AuditLog(root)
    for i in range(n):
        log.record(who=f"user{i % 3}", role="analyst", action="read", outcome="success", resource=f"Patient/p{i}")
    return log


def _append_many(root: str, worker: int, count: int) -> None:
    """Run in a spawned process: one writer among several."""
    log = AuditLog(root)
    for i in range(count):
        log.record(who=f"worker{worker}", role="clinician", action="search", outcome="success", detail=f"q={i}")


def test_record_then_verify_ok(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    event = log.record(who="alice", role="clinician", action="login", outcome="success", client="10.0.0.5")
    log.record(who="alice", role="clinician", action="read", outcome="success", resource="Patient/7", patient="7")
    result = log.verify()
    assert result == AuditVerification(ok=True, events=2, problem=None, line=None)
    assert result.to_dict() == {"ok": True, "events": 2, "problem": None, "line": None}
    assert event["seq"] == 1
    assert [e["action"] for e in log.events()] == ["login", "read"]


def test_empty_or_absent_log_verifies(tmp_path: Path) -> None:
    assert AuditLog(tmp_path / "nowhere").verify() == AuditVerification(ok=True, events=0)
    (tmp_path / AUDIT_DIR).mkdir()
    assert AuditLog(tmp_path).verify() == AuditVerification(ok=True, events=0)
    assert list(AuditLog(tmp_path).events()) == []


def test_events_carry_a_consecutive_hash_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.record(who="bob", role="admin", action="admin", outcome="success", detail="granted analyst to eve")
    log.record(who="bob", role="admin", action="search", outcome="denied", client="::1", detail="name=smith")
    log.record(who="bob", role="admin", action="logout", outcome="success")
    events = list(log.events())
    assert [e["seq"] for e in events] == [1, 2, 3]
    assert events[0]["prev"] == ZEROS
    for before, after in itertools.pairwise(events):
        assert after["prev"] == before["hash"]
    for event in events:
        assert list(event) == [
            *("seq", "time", "who", "role", "action", "outcome"),
            *("client", "resource", "patient", "detail", "prev", "hash"),
        ]
        assert event["hash"] == _digest(event)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["time"])
    assert events[1]["client"] == "::1" and events[1]["patient"] is None
    head = orjson.loads((tmp_path / AUDIT_DIR / "head.json").read_bytes())
    assert head == {"seq": 3, "hash": events[-1]["hash"]}


def test_appends_never_rewrite_earlier_bytes(tmp_path: Path) -> None:
    log = _filled(tmp_path, 5)
    before = _log_file(tmp_path).read_bytes()
    log.record(who="x", role="analyst", action="export", outcome="success")
    after = _log_file(tmp_path).read_bytes()
    assert after.startswith(before) and after.count(b"\n") == 6


def test_edited_middle_line_is_found(tmp_path: Path) -> None:
    log = _filled(tmp_path, 10)
    lines = _lines(tmp_path)
    lines[6] = lines[6].replace(b'"who":"user0"', b'"who":"mallory"')
    _write_lines(tmp_path, lines)
    result = log.verify()
    assert not result.ok
    assert result.line == 7 and result.events == 6
    assert result.problem is not None and result.problem.startswith("event 7 was edited")


def test_edited_and_rehashed_line_breaks_the_link(tmp_path: Path) -> None:
    log = _filled(tmp_path, 10)
    lines = _lines(tmp_path)
    event = orjson.loads(lines[4])
    event["patient"] = "someone-else"
    event["hash"] = _digest(event)
    lines[4] = orjson.dumps(event) + b"\n"
    _write_lines(tmp_path, lines)
    result = log.verify()
    assert (result.ok, result.line) == (False, 6)
    assert result.problem is not None and result.problem.startswith("event 6 does not link to event 5")


@pytest.mark.parametrize(
    ("removed", "problem"),
    [([4], "event 5 is missing (removed)"), ([4, 5, 6], "events 5 to 7 are missing (removed)")],
)
def test_removed_middle_lines_are_found(tmp_path: Path, removed: list[int], problem: str) -> None:
    log = _filled(tmp_path, 10)
    _write_lines(tmp_path, [line for i, line in enumerate(_lines(tmp_path)) if i not in removed])
    assert log.verify() == AuditVerification(ok=False, events=4, problem=problem, line=5)


def test_removed_first_line_is_found(tmp_path: Path) -> None:
    log = _filled(tmp_path, 4)
    _write_lines(tmp_path, _lines(tmp_path)[1:])
    assert log.verify() == AuditVerification(ok=False, events=0, problem="event 1 is missing (removed)", line=1)


def test_swapped_lines_are_out_of_order(tmp_path: Path) -> None:
    log = _filled(tmp_path, 6)
    lines = _lines(tmp_path)
    lines[2], lines[3] = lines[3], lines[2]
    _write_lines(tmp_path, lines)
    result = log.verify()
    assert (result.ok, result.line, result.events) == (False, 3, 2)
    assert result.problem == "events 3 and 4 are out of order (event 3 is at line 4)"


def test_copied_line_is_found(tmp_path: Path) -> None:
    log = _filled(tmp_path, 6)
    lines = _lines(tmp_path)
    lines.insert(4, lines[3])
    _write_lines(tmp_path, lines)
    result = log.verify()
    assert (result.ok, result.line) == (False, 5)
    assert result.problem is not None and result.problem.startswith("event 4 appears twice (lines 4 and 5)")


def test_truncated_end_is_found_through_the_head(tmp_path: Path) -> None:
    log = _filled(tmp_path, 11)
    _write_lines(tmp_path, _lines(tmp_path)[:9])
    assert log.verify() == AuditVerification(
        ok=False,
        events=9,
        problem="the log ends at event 9 but its head says 11 (events removed from the end)",
        line=10,
    )
    with pytest.raises(LakeError, match="does not match its head"):
        log.record(who="x", role="analyst", action="read", outcome="success")
    assert len(_lines(tmp_path)) == 9  # refused: nothing appended on top of the damage


def test_emptied_log_is_found_through_the_head(tmp_path: Path) -> None:
    log = _filled(tmp_path, 3)
    _write_lines(tmp_path, [])
    result = log.verify()
    assert (result.ok, result.line) == (False, 1)
    assert result.problem == "the log has no events but its head says 3 (events removed)"


def test_non_json_line_is_found(tmp_path: Path) -> None:
    log = _filled(tmp_path, 5)
    lines = _lines(tmp_path)
    lines[2] = b"this is not json\n"
    _write_lines(tmp_path, lines)
    result = log.verify()
    assert (result.ok, result.line, result.events) == (False, 3, 2)
    assert result.problem is not None and "line 3 is not valid JSON" in result.problem
    with pytest.raises(LakeError, match="line 3 is not JSON"):
        list(log.events())


def test_cut_off_last_line_is_found_and_blocks_appends(tmp_path: Path) -> None:
    log = _filled(tmp_path, 4)
    path = _log_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-10])
    result = log.verify()
    assert (result.ok, result.line) == (False, 4)
    with pytest.raises(LakeError, match="cut-off line"):
        log.record(who="x", role="analyst", action="read", outcome="success")


def test_missing_head_is_found_and_blocks_appends(tmp_path: Path) -> None:
    log = _filled(tmp_path, 3)
    (tmp_path / AUDIT_DIR / "head.json").unlink()
    result = log.verify()
    assert not result.ok and result.events == 3
    assert result.problem is not None and "head file head.json is missing" in result.problem
    with pytest.raises(LakeError, match=r"head .* is missing"):
        log.record(who="x", role="analyst", action="read", outcome="success")


def test_interrupted_append_is_reported_then_healed(tmp_path: Path) -> None:
    # A crash after the line was written but before the head moved leaves a last event that links to the head.
    log = _filled(tmp_path, 3)
    head = tmp_path / AUDIT_DIR / "head.json"
    old_head = head.read_bytes()
    log.record(who="x", role="analyst", action="read", outcome="success")
    head.write_bytes(old_head)
    result = log.verify()
    assert (result.ok, result.line) == (False, 4)
    assert result.problem is not None and result.problem.startswith("the log goes on to event 4 but its head says 3")
    log.record(who="x", role="analyst", action="read", outcome="success")
    assert log.verify() == AuditVerification(ok=True, events=5)


def test_record_needs_an_existing_lake(tmp_path: Path) -> None:
    with pytest.raises(LakeError, match="no lake at"):
        AuditLog(tmp_path / "absent").record(who="x", role="analyst", action="read", outcome="success")


@pytest.mark.parametrize(
    ("action", "outcome", "field"),
    [("delete", "success", "action"), ("READ", "success", "action"), ("read", "ok", "outcome")],
)
def test_unknown_action_or_outcome_is_refused(tmp_path: Path, action: str, outcome: str, field: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown audit {field}") as info:
        AuditLog(tmp_path).record(who="x", role="analyst", action=action, outcome=outcome)  # type: ignore[arg-type]
    choices = {"action": "login, logout, read, search, export, admin", "outcome": "success, denied, failure"}
    assert info.value.hint is not None and choices[field] in info.value.hint
    assert not _log_file(tmp_path).exists()


def test_concurrent_processes_keep_one_chain(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(tmp_path), w, 50)) for w in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    log = AuditLog(tmp_path)
    assert log.verify() == AuditVerification(ok=True, events=200)
    events = list(log.events())
    assert [e["seq"] for e in events] == list(range(1, 201))
    assert Counter(e["who"] for e in events) == {f"worker{w}": 50 for w in range(4)}


def test_concurrent_threads_keep_one_chain(tmp_path: Path) -> None:
    threads = [threading.Thread(target=_append_many, args=(str(tmp_path), w, 25)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert AuditLog(tmp_path).verify() == AuditVerification(ok=True, events=200)


def test_verify_streams_a_large_log(tmp_path: Path) -> None:
    folder = tmp_path / AUDIT_DIR
    folder.mkdir()
    prev = ZEROS
    with (folder / "audit-log.jsonl").open("wb") as handle:
        for seq in range(1, 20_001):
            event: dict[str, Any] = {
                "seq": seq,
                "time": "2025-01-01T00:00:00.000Z",
                "who": f"user{seq % 17}",
                "role": "analyst",
                "action": "search",
                "outcome": "success",
                "client": "10.0.0.1",
                "resource": "/api/patients",
                "patient": None,
                "detail": f"age>{seq % 90}",
                "prev": prev,
            }
            event["hash"] = prev = _digest(event)
            handle.write(orjson.dumps(event) + b"\n")
    (folder / "head.json").write_bytes(orjson.dumps({"seq": 20_000, "hash": prev}))
    log = AuditLog(tmp_path)
    started = time.perf_counter()
    assert log.verify() == AuditVerification(ok=True, events=20_000)
    assert time.perf_counter() - started < 5
    assert log.record(who="x", role="analyst", action="read", outcome="success")["prev"] == prev
    assert log.verify() == AuditVerification(ok=True, events=20_001)


def test_to_fhir_gives_valid_balp_audit_events(tmp_path: Path) -> None:
    from fhir.resources.R4B.auditevent import AuditEvent

    log = AuditLog(tmp_path)
    log.record(who="alice", role="clinician", action="login", outcome="success", client="192.0.2.1")
    log.record(who="alice", role="clinician", action="read", outcome="success", resource="Patient/42", patient="42")
    log.record(
        who="alice",
        role="clinician",
        action="search",
        outcome="success",
        resource="/api/patients",
        detail="name=smith&age=gt60",
    )
    log.record(who="alice", role="clinician", action="read", outcome="denied", resource="Observation/9", patient="42")
    log.record(who="bob", role="researcher", action="export", outcome="failure", client="ws-12.example.org")
    log.record(who="carol", role="admin", action="admin", outcome="success", detail="granted analyst to dave")
    log.record(who="alice", role="clinician", action="logout", outcome="success")
    resources = list(log.to_fhir())
    assert len(resources) == 7
    for resource in resources:
        AuditEvent.model_validate(resource)  # raises on any structural error
        assert resource["resourceType"] == "AuditEvent"
        assert resource["source"]["type"][0]["code"] == "4"
        assert [a["requestor"] for a in resource["agent"]] == [True]
    login, read, search, denied, export, admin, logout = resources

    dcm = "http://dicom.nema.org/resources/ontology/DCM"
    assert login["id"] == "audit-1"
    assert login["type"] == {"system": dcm, "code": "110114", "display": "User Authentication"}
    assert login["subtype"][0]["code"] == "110122" and logout["subtype"][0]["code"] == "110123"
    assert login["agent"][0]["network"] == {"address": "192.0.2.1", "type": "2"}
    assert login["agent"][0]["who"] == {"identifier": {"value": "alice"}}
    assert login["agent"][0]["role"] == [{"text": "clinician"}]
    assert "entity" not in login

    assert read["type"]["code"] == "rest" and read["subtype"][0]["code"] == "read"
    assert read["action"] == "R" and read["outcome"] == "0"
    assert read["recorded"] == list(log.events())[1]["time"]
    assert read["entity"] == [
        {
            "what": {"reference": "Patient/42"},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "1",
                "display": "Person",
            },
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"},
        }
    ]

    assert search["subtype"][0] == {
        "system": "http://hl7.org/fhir/restful-interaction",
        "code": "search-type",
        "display": "search type",
    }
    assert search["action"] == "E"
    resource_entity, query_entity = search["entity"]
    assert resource_entity["what"] == {"display": "/api/patients"} and resource_entity["role"]["code"] == "4"
    assert query_entity["role"]["code"] == "24"
    assert base64.b64decode(query_entity["query"]).decode() == "name=smith&age=gt60"

    assert denied["outcome"] == "4" and denied["outcomeDesc"] == "access denied"
    assert read["agent"][0]["type"]["coding"][0]["code"] == "IRCP" and "type" not in login["agent"][0]
    assert [e["what"] for e in denied["entity"]] == [{"reference": "Patient/42"}, {"reference": "Observation/9"}]
    assert [e["role"]["code"] for e in denied["entity"]] == ["1", "4"]

    assert export["subtype"][0]["code"] == "operation" and export["action"] == "E" and export["outcome"] == "8"
    assert export["agent"][0]["network"] == {"address": "ws-12.example.org", "type": "1"}

    assert admin["type"]["code"] == "110113" and admin["subtype"][0]["code"] == "110136"
    assert admin["action"] == "E" and admin["outcomeDesc"] == "granted analyst to dave"
    assert {r["action"] for r in (login, logout, admin, export, search)} == {"E"}


def test_login_attempt_without_a_user_name_is_still_recorded(tmp_path: Path) -> None:
    from fhir.resources.R4B.auditevent import AuditEvent

    log = AuditLog(tmp_path)
    log.record(who="", role="", action="login", outcome="denied", client="203.0.113.9", detail="unknown user")
    assert log.verify().ok
    (resource,) = log.to_fhir()
    AuditEvent.model_validate(resource)
    assert resource["agent"][0]["who"] == {"display": "unnamed user"} and "role" not in resource["agent"][0]
    assert resource["outcomeDesc"] == "unknown user"


def test_damaged_head_is_found(tmp_path: Path) -> None:
    log = _filled(tmp_path, 2)
    (tmp_path / AUDIT_DIR / "head.json").write_bytes(b"{oops")
    assert log.verify() == AuditVerification(ok=False, events=2, problem="the head file head.json is damaged")
    with pytest.raises(LakeError, match="damaged"):
        log.record(who="x", role="analyst", action="read", outcome="success")
