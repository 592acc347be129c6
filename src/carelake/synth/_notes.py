"""Clinical note text that carries identifiers the way real notes do, so de-identification has work to do.

Notes repeat the patient's name, date of birth, MRN, phone number, street address and visit dates in the
headers and in the narrative, with the date formats clinicians actually mix (``03/14/2019``,
``March 14, 2019``, ``2019-03-14``).
"""

from __future__ import annotations

from collections.abc import Sequence

from carelake.synth._calendar import Calendar
from carelake.synth._chart import Visit
from carelake.synth._people import Person

_VITAL_FORMATS = (
    ("BP", "{0[0]:.0f}/{0[1]:.0f}"),
    ("HR", "{0:.0f}"),
    ("RR", "{0:.0f}"),
    ("Temp", "{0:.1f} C"),
    ("SpO2", "{0:.0f}%"),
    ("Wt", "{0:.1f} kg"),
    ("Ht", "{0:.1f} cm"),
    ("BMI", "{0:.1f}"),
)


def _date(cal: Calendar, day: int, style: int) -> str:
    if style == 0:
        return cal.us_date(day)
    if style == 1:
        return cal.long_date(day)
    return cal.date(day)


def _aged(age: int) -> str:
    """'a 62-year-old' / 'an 84-year-old'."""
    article = "an" if str(age)[0] == "8" or age in (11, 18) else "a"
    return f"{article} {age}-year-old"


def _title(person: Person) -> str:
    return f"{'Mr.' if person.sex == 'male' else 'Ms.'} {person.family}"


def _header(cal: Calendar, heading: str, visit: Visit, age: int, style: int) -> list[str]:
    person = visit.person
    site = visit.site
    return [
        site.name.upper(),
        f"{site.address} | Tel {site.phone}",
        "",
        heading,
        f"Patient: {person.full_name}    DOB: {cal.us_date(person.birth)} ({age} y)    "
        f"Sex: {'M' if person.sex == 'male' else 'F'}",
        f"MRN: {person.mrn}    Phone: {person.phone}",
        f"Address: {person.address_text}",
        f"Date of service: {_date(cal, visit.start, style)}    Provider: {visit.clinician.name}",
        "",
    ]


def _vitals_line(visit: Visit) -> str:
    parts = [f"{name} {form.format(visit.vitals[name])}" for name, form in _VITAL_FORMATS if name in visit.vitals]
    return "VITALS: " + (" | ".join(parts) if parts else "not recorded")


def _list(title: str, items: Sequence[str]) -> list[str]:
    if not items:
        return [f"{title}: none"]
    return [f"{title}:", *(f"  - {item}" for item in items)]


def progress_note(
    cal: Calendar, visit: Visit, *, age: int, problems: Sequence[str], medications: Sequence[str], style: int
) -> str:
    person = visit.person
    heading = "PROGRESS NOTE - " + (
        "Annual wellness visit" if visit.reason == "annual wellness visit" else "Office visit"
    )
    who = "man" if person.sex == "male" else "woman"
    if age < 18:
        who = "boy" if person.sex == "male" else "girl"
    lines = _header(cal, heading, visit, age, style)
    lines += [
        f"CHIEF COMPLAINT: {visit.reason}",
        "",
        f"HPI: {_title(person) if age >= 18 else person.given} is {_aged(age)} {who} seen on "
        f"{_date(cal, visit.start, (style + 1) % 3)} for {visit.reason}. "
        f"{'She' if person.sex == 'female' else 'He'} lives at {person.line} in {person.city} and can be "
        f"reached at {person.phone}.",
        "",
        _vitals_line(visit),
    ]
    if visit.labs:
        lines.append("LABS: " + "; ".join(f"{name} {value}" for name, value in visit.labs.items()))
    lines += [
        "",
        *_list("PROBLEM LIST", problems),
        *_list("MEDICATIONS", medications),
        "",
        *_list("ASSESSMENT AND PLAN", visit.plan or ["Continue current management."]),
        "",
        f"Return to clinic as needed. Patient {person.given} {person.family} (MRN {person.mrn}) "
        f"verbalized understanding.",
        f"Electronically signed by {visit.clinician.name} on {_date(cal, visit.end, style)}.",
    ]
    return "\n".join(lines)


def emergency_note(
    cal: Calendar, visit: Visit, *, age: int, problems: Sequence[str], disposition: str, style: int
) -> str:
    person = visit.person
    lines = _header(cal, "EMERGENCY DEPARTMENT NOTE", visit, age, style)
    lines += [
        f"CHIEF COMPLAINT: {visit.reason}",
        "",
        f"HPI: {person.given} {person.family} is {_aged(age)} who arrived on {_date(cal, visit.start, 1)} "
        f"with {visit.reason.lower()}. Emergency contact number on file {person.phone}.",
        "",
        _vitals_line(visit),
    ]
    if visit.labs:
        lines.append("LABS: " + "; ".join(f"{name} {value}" for name, value in visit.labs.items()))
    lines += [
        "",
        *_list("PAST MEDICAL HISTORY", problems),
        "",
        *_list("MEDICAL DECISION MAKING", visit.plan),
        "",
        f"DISPOSITION: {disposition}",
        f"Signed: {visit.clinician.name}, {_date(cal, visit.end, style)}",
    ]
    return "\n".join(lines)


def discharge_summary(
    cal: Calendar,
    visit: Visit,
    *,
    age: int,
    problems: Sequence[str],
    medications: Sequence[str],
    disposition: str,
    readmission: bool,
    style: int,
) -> str:
    person = visit.person
    stay = max(visit.end - visit.start, 1)
    lines = _header(cal, "DISCHARGE SUMMARY", visit, age, style)
    lines += [
        f"Admitted: {_date(cal, visit.start, style)}    Discharged: {_date(cal, visit.end, style)}    "
        f"Length of stay: {stay} day{'s' if stay != 1 else ''}",
        f"Principal diagnosis: {visit.reason}",
        "",
        f"HOSPITAL COURSE: {_title(person)} is {_aged(age)} admitted on {_date(cal, visit.start, 1)} "
        f"with {visit.reason.lower()}."
        + (" This is an unplanned readmission within 30 days of a previous discharge." if readmission else "")
        + f" {'She' if person.sex == 'female' else 'He'} was treated and monitored on the medical ward.",
        "",
        _vitals_line(visit),
    ]
    if visit.labs:
        lines.append("LABS: " + "; ".join(f"{name} {value}" for name, value in visit.labs.items()))
    lines += [
        "",
        *_list("ACTIVE PROBLEMS", problems),
        *_list("DISCHARGE MEDICATIONS", medications),
        "",
        f"DISPOSITION: {disposition}",
        f"FOLLOW-UP: primary care within 7 days. Home address on file: {person.address_text}. Phone {person.phone}.",
        f"Dictated by {visit.clinician.name} on {_date(cal, visit.end, 2)}.",
    ]
    return "\n".join(lines)
