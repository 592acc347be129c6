"""Properties that must hold for any resource, not just the ones we thought of (Hypothesis).

- An identifier the record knows, planted in any string element of a random resource, never survives.
- Shifting dates keeps every interval between them.
- The same key and the same resource always give the same output.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carelake.fhir._model import members
from carelake.privacy import DeidKey, Policy
from carelake.privacy._text import Known, TextScrubber
from carelake.privacy._walk import Deidentifier, Subject, shift_date

KEY = DeidKey(bytes(range(7, 39)))
SCRUBBER = TextScrubber()
KNOWN = Known(
    names=("Hannelore", "Quixley", "Hannelore Quixley"),
    identifiers=("MRN-4471902", "918-27-4410"),
    phones=("(217) 555-0192",),
    emails=("h.quixley@mailbox.example",),
    addresses=("4410 Juniper Crest Rd", "Tuscola"),
    dates=("1954-09-23",),
)
# What a person might write, for each known value: the planted text must not survive in any of these forms.
PLANTED = {
    "Hannelore": ["Hannelore", "HANNELORE", "hannelore"],
    "Quixley": ["Quixley", "QUIXLEY", "Quixley's"],
    "MRN-4471902": ["MRN-4471902", "4471902"],
    "918-27-4410": ["918-27-4410", "918274410"],
    "(217) 555-0192": ["(217) 555-0192", "217-555-0192", "217.555.0192"],
    "h.quixley@mailbox.example": ["h.quixley@mailbox.example"],
    "4410 Juniper Crest Rd": ["4410 Juniper Crest Rd", "4410 Juniper Crest Road"],
    "Tuscola": ["Tuscola", "TUSCOLA"],
    "1954-09-23": ["1954-09-23", "09/23/1954", "September 23, 1954", "9/23/1954"],
}
FORMS = [form for forms in PLANTED.values() for form in forms]
TYPES = ["Patient", "Observation", "Condition", "Encounter", "DocumentReference", "MedicationRequest", "Procedure",
         "CarePlan", "AllergyIntolerance", "Immunization", "ServiceRequest", "FamilyMemberHistory"]  # fmt: skip
TEXT = {"string", "markdown"}


def _string_paths(type_: str, depth: int = 0) -> list[tuple[str, ...]]:
    """Paths to string elements of a type, two levels down (Observation.note.text, code.coding.display …)."""
    paths = []
    for name, member in members(type_).items():
        if name.startswith("_") or name in ("extension", "modifierExtension", "contained", "text", "id"):
            continue
        if member.type in TEXT:
            paths.append((name,))
        elif not member.primitive and depth < 2 and member.type not in ("Resource", "Extension"):
            paths.extend((name, *rest) for rest in _string_paths(member.type, depth + 1))
    return paths


PATHS = {t: _string_paths(t) for t in TYPES}
words = st.sampled_from(["seen", "today", "for", "follow-up", "of", "chest pain", "metformin 500 mg", "stable", "."])
filler = st.lists(words, min_size=0, max_size=6).map(" ".join)


@st.composite
def planted_resource(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    type_ = draw(st.sampled_from(TYPES))
    resource: dict[str, Any] = {"resourceType": type_, "id": draw(st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True))}
    planted = []
    for path in draw(st.lists(st.sampled_from(PATHS[type_]), min_size=1, max_size=4, unique=True)):
        form = draw(st.sampled_from(FORMS))
        value = f"{draw(filler)} {form} {draw(filler)}".strip()
        node = resource
        for step in path[:-1]:
            member = _member_at(node, step)
            node = node.setdefault(step, [{}] if member else {})
            node = node[0] if isinstance(node, list) else node
        node[path[-1]] = value
        planted.append(form)
    return resource, planted


def _member_at(node: dict[str, Any], step: str) -> bool:
    """Whether the member repeats (so JSON holds a list), read from the model of the node's type."""
    type_ = node.get("resourceType")
    found = members(type_).get(step) if type_ else None
    return bool(found and found.repeats)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted_resource(), st.sampled_from(["year", "shift"]))
def test_no_known_identifier_survives_in_any_string_element(
    case: tuple[dict[str, Any], list[str]], date_mode: str
) -> None:
    resource, planted = case
    walker = Deidentifier(Policy.of("safe-harbor", date_mode), KEY, scrubber=SCRUBBER)
    out = json.dumps(walker.resource(resource, Subject(shift_days=-12, known=KNOWN))).lower()
    for form in planted:
        assert form.lower().removesuffix("'s") not in out


dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2090, 12, 31))


@given(dates, dates, st.integers(min_value=-365, max_value=365))
def test_shifting_keeps_every_interval(first: dt.date, second: dt.date, shift: int) -> None:
    a, b = shift_date(first.isoformat(), shift), shift_date(f"{second.isoformat()}T08:30:00+01:00", shift)
    assert a is not None and b is not None
    moved = dt.datetime.fromisoformat(b).date() - dt.date.fromisoformat(a)
    assert moved == second - first
    assert b.endswith("T08:30:00+01:00")


@settings(max_examples=100, deadline=None)
@given(planted_resource())
def test_the_same_key_gives_the_same_output(case: tuple[dict[str, Any], list[str]]) -> None:
    resource, _ = case
    runs = [
        Deidentifier(Policy.of("safe-harbor", "shift"), DeidKey(bytes(range(7, 39))), scrubber=SCRUBBER).resource(
            json.loads(json.dumps(resource)), Subject(shift_days=KEY.shift_days("Patient/x"), known=KNOWN)
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
