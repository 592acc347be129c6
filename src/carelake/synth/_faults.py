"""Data-quality faults injected into finished patients, each one recorded so quality checks can be scored.

A fault changes one field of one resource and leaves the rest intact, so the truth row (resource type, id,
kind, field, value before and after) is enough to find and verify it. Resources that ground-truth labels
depend on (index and readmission encounters, the diabetes diagnosis and its HbA1c) are never touched, and a
resource gets at most one fault.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from carelake.synth._calendar import Calendar
from carelake.synth._chart import Chart
from carelake.synth._draws import Draws, IdSource
from carelake.synth._terminology import ICD10CM, LOINC, QUANTITIES, luhn_check_digit

FAULT_KINDS = (
    "implausible-value",
    "unit-mixup",
    "date-before-birth",
    "date-after-death",
    "future-date",
    "broken-reference",
    "duplicate-id",
    "invalid-code",
)
_DATE_KINDS = ("date-before-birth", "date-after-death", "future-date")
_KINDS: dict[str, tuple[str, ...]] = {
    "Observation": FAULT_KINDS,
    "Condition": (*_DATE_KINDS, "broken-reference", "invalid-code"),
    "Encounter": (*_DATE_KINDS, "broken-reference"),
    "MedicationRequest": (*_DATE_KINDS, "broken-reference", "duplicate-id"),
    "Procedure": (*_DATE_KINDS, "broken-reference", "duplicate-id"),
    "Immunization": (*_DATE_KINDS, "broken-reference", "duplicate-id"),
}
FAULTABLE_TYPES = tuple(_KINDS)
DATE_FIELDS = {
    "Observation": "effectiveDateTime",
    "Condition": "onsetDateTime",
    "Encounter": "period.start",
    "MedicationRequest": "authoredOn",
    "Procedure": "performedDateTime",
    "Immunization": "occurrenceDateTime",
}
# LOINC code -> (quantity key, factor applied to the true value, unit the number is really in)
UNIT_MIXUPS: dict[str, tuple[str, float, str]] = {
    QUANTITIES["weight"].loinc: ("weight", 2.20462, "[lb_av]"),
    QUANTITIES["height"].loinc: ("height", 1 / 2.54, "[in_i]"),
    QUANTITIES["glucose"].loinc: ("glucose", 1 / 18.016, "mmol/L"),
    QUANTITIES["temperature"].loinc: ("temperature", 1.8, "[degF]"),
}
_BY_LOINC = {q.loinc: q for q in QUANTITIES.values()}
ICD10_FORMAT = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$")


def _malformed_icd10(draws: Draws, code: str) -> str:
    variants = (
        code[1] + code[0] + code[2:],
        code.replace(".", "") + ".",
        code.replace(".", "..") if "." in code else code + "..",
        code[:2] + " " + code[2:],
    )
    candidates = [v for v in variants if not ICD10_FORMAT.match(v)]
    return draws.pick(candidates)


def _bad_loinc(draws: Draws, code: str) -> str:
    number, _, _ = code.partition("-")
    right = luhn_check_digit(number)
    return f"{number}-{(right + draws.between(1, 9)) % 10}"


class FaultInjector:
    """Applies faults at a given rate to one patient's chart at a time."""

    __slots__ = ("cal", "draws", "ids", "rate", "window_end")

    def __init__(self, draws: Draws, ids: IdSource, cal: Calendar, *, rate: float, window_end: int) -> None:
        self.draws = draws
        self.ids = ids
        self.cal = cal
        self.rate = rate
        self.window_end = window_end

    def inject(self, chart: Chart, *, patient_id: str, birth: int, death: int | None) -> list[dict[str, Any]]:
        if self.rate <= 0.0:
            return []
        draws = self.draws
        rows: list[dict[str, Any]] = []
        earlier: dict[str, list[dict[str, Any]]] = {}
        for resource_type, resource in chart.items:
            kinds = _KINDS.get(resource_type)
            if kinds is None:
                continue
            key = id(resource)
            if key in chart.protected:
                continue
            if draws.u() >= self.rate:
                if resource["id"] not in chart.referenced:
                    earlier.setdefault(resource_type, []).append(resource)
                continue
            options = [
                kind for kind in kinds if self._applies(kind, resource_type, resource, death, earlier, chart.referenced)
            ]
            if not options:
                continue
            kind = draws.pick(options)
            row = self._apply(kind, resource_type, resource, birth=birth, death=death, earlier=earlier)
            row["patient_id"] = patient_id
            rows.append(row)
        return rows

    # ------------------------------------------------------------ which faults fit a resource

    def _applies(
        self,
        kind: str,
        resource_type: str,
        resource: dict[str, Any],
        death: int | None,
        earlier: dict[str, list[dict[str, Any]]],
        referenced: set[str],
    ) -> bool:
        if kind == "implausible-value":
            return "valueQuantity" in resource and resource["code"]["coding"][0]["code"] in _BY_LOINC
        if kind == "unit-mixup":
            return "valueQuantity" in resource and resource["code"]["coding"][0]["code"] in UNIT_MIXUPS
        if kind == "date-after-death":
            return death is not None and death < self.window_end - 1
        if kind == "broken-reference":
            return resource_type == "Encounter" or "encounter" in resource
        if kind == "duplicate-id":
            # a resource others point at keeps its id, or their references would break unrecorded
            return resource["id"] not in referenced and bool(earlier.get(resource_type))
        if kind == "invalid-code":
            if resource_type == "Condition":
                return True
            return resource["code"]["coding"][0]["system"] == LOINC
        return True

    # ------------------------------------------------------------ applying one

    def _apply(
        self,
        kind: str,
        resource_type: str,
        resource: dict[str, Any],
        *,
        birth: int,
        death: int | None,
        earlier: dict[str, list[dict[str, Any]]],
    ) -> dict[str, Any]:
        draws = self.draws
        row: dict[str, Any] = {"resource_type": resource_type, "resource_id": resource["id"], "kind": kind}
        if kind == "implausible-value":
            quantity = resource["valueQuantity"]
            spec = _BY_LOINC[resource["code"]["coding"][0]["code"]]
            high = spec.plausible[1]
            value = round(high * draws.uniform(3.0, 8.0), max(spec.decimals, 0))
            if spec.decimals == 0:
                value = int(value)
            resource["valueQuantity"] = {**quantity, "value": value}
            return {
                **row,
                "field": "valueQuantity.value",
                "original": str(quantity["value"]),
                "written": str(value),
                "detail": f"{spec.display} of {value} {spec.unit} is outside {spec.plausible}",
            }
        if kind == "unit-mixup":
            quantity = resource["valueQuantity"]
            key, factor, real_unit = UNIT_MIXUPS[resource["code"]["coding"][0]["code"]]
            value = round(quantity["value"] * factor, 1)
            resource["valueQuantity"] = {**quantity, "value": value}
            return {
                **row,
                "field": "valueQuantity.value",
                "original": str(quantity["value"]),
                "written": str(value),
                "detail": f"{key} written in {real_unit} but labelled {quantity['unit']} (factor {factor:.5g})",
            }
        if kind in _DATE_KINDS:
            return self._date_fault(kind, resource_type, resource, row, birth=birth, death=death)
        if kind == "broken-reference":
            missing = self.ids.new()
            if resource_type == "Encounter":
                field, target = "serviceProvider", f"Organization/{missing}"
            else:
                field, target = "encounter", f"Encounter/{missing}"
            original = resource[field]["reference"]
            resource[field] = {"reference": target}
            return {
                **row,
                "field": f"{field}.reference",
                "original": original,
                "written": target,
                "detail": f"{field} points at {target}, which is not in the export",
            }
        if kind == "duplicate-id":
            source = draws.pick(earlier[resource_type])
            earlier[resource_type].remove(source)
            original = resource["id"]
            resource["id"] = source["id"]
            return {
                **row,
                "resource_id": source["id"],
                "field": "id",
                "original": original,
                "written": source["id"],
                "detail": f"id reused from another {resource_type} of the same patient",
            }
        # invalid-code
        code = resource["code"]
        codings = list(code["coding"])
        if resource_type == "Condition":
            index = next(i for i, c in enumerate(codings) if c["system"] == ICD10CM)
            bad = _malformed_icd10(draws, codings[index]["code"])
            detail = "ICD-10-CM code is malformed"
        else:
            index = 0
            bad = _bad_loinc(draws, codings[0]["code"])
            detail = "LOINC code has a wrong check digit"
        original = codings[index]["code"]
        codings[index] = {**codings[index], "code": bad}
        resource["code"] = {**code, "coding": codings}
        return {**row, "field": f"code.coding[{index}].code", "original": original, "written": bad, "detail": detail}

    def _date_fault(
        self,
        kind: str,
        resource_type: str,
        resource: dict[str, Any],
        row: dict[str, Any],
        *,
        birth: int,
        death: int | None,
    ) -> dict[str, Any]:
        draws = self.draws
        if kind == "date-before-birth":
            day = birth - draws.between(1, 3650)
        elif kind == "date-after-death" and death is not None:
            day = death + draws.between(1, min(730, self.window_end - death))
        else:
            day = self.window_end + draws.between(30, 3 * 365)
        field = DATE_FIELDS[resource_type]
        if resource_type == "Encounter":
            period = resource["period"]
            original = period["start"]
            shift = day - _day_of(self.cal, original)
            start = self._move(original, day)
            end = self._move(period["end"], _day_of(self.cal, period["end"]) + shift)
            resource["period"] = {"start": start, "end": end}
            written = start
        else:
            original = resource[field]
            written = self._move(original, day)
            resource[field] = written
        return {**row, "field": field, "original": original, "written": written, "detail": _DETAIL[kind](written)}

    def _move(self, value: str, day: int) -> str:
        """The same time of day (or the same date-only precision) on another day."""
        return self.cal.date(day) + value[10:]


def _day_of(cal: Calendar, value: str) -> int:
    return cal.day(int(value[:4]), int(value[5:7]), int(value[8:10]))


_DETAIL: dict[str, Callable[[str], str]] = {
    "date-before-birth": lambda when: f"{when[:10]} is before the patient's birth date",
    "date-after-death": lambda when: f"{when[:10]} is after the patient's death",
    "future-date": lambda when: f"{when[:10]} is after the export's transaction time",
}
