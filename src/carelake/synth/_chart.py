"""FHIR R4 resources for one patient, built as plain dictionaries in the order things happen.

The simulation (``_life``) decides what happens; this module decides how it is written down. Resources stay
in memory only until the patient is finished (statuses such as a medication being stopped are known only
then), so memory grows with one patient's history, never with the population.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from carelake.synth._calendar import Calendar
from carelake.synth._draws import IdSource
from carelake.synth._people import Person
from carelake.synth._terminology import (
    ADMIT_SOURCES,
    ALLERGY_CLINICAL_ACTIVE,
    ALLERGY_CONFIRMED,
    ATTENDER,
    BLOOD_PRESSURE,
    CARE_PLANS,
    CAREPLAN_ASSESS,
    CLINICAL_ACTIVE,
    CLINICAL_NOTE,
    CLINICAL_RESOLVED,
    CONDITION_CATEGORY_ENCOUNTER,
    CONDITION_CATEGORY_PROBLEM,
    CONDITIONS,
    CONSENT_CATEGORY,
    CONSENT_OPT_OUT,
    CONSENT_RESEARCH,
    DIAGNOSIS_USE,
    DISPOSITION_CODES,
    ENCOUNTER_CLASS,
    ENCOUNTER_TYPES,
    ETHNICITIES,
    FAMILY_RELATIONS,
    IDENTIFIER_TYPES,
    LANGUAGES,
    LOINC,
    MARITAL_STATUS,
    MED_CATEGORY,
    MEDICATIONS,
    NOTE_TYPES,
    OBS_CATEGORIES,
    PRIMARY_PERFORMER,
    PRIORITY,
    PROCEDURE_CODES,
    QUANTITIES,
    RACES,
    READMISSION_CODE,
    SNOMED,
    UCUM,
    US_CORE_BIRTHSEX,
    US_CORE_ETHNICITY,
    US_CORE_RACE,
    US_SSN,
    VACCINE_CODES,
    VERIFICATION_CONFIRMED,
    coding,
    concept,
)
from carelake.synth._world import Clinician, Payer, Site

_BP_CODE = concept(LOINC, *BLOOD_PRESSURE["panel"])
_SBP_CODE = concept(LOINC, *BLOOD_PRESSURE["systolic"])
_DBP_CODE = concept(LOINC, *BLOOD_PRESSURE["diastolic"])
_QUANTITY_CODES: dict[str, dict[str, Any]] = {}
for _q in QUANTITIES.values():
    _codings = [coding(LOINC, _q.loinc, _q.display)]
    if _q.extra_loinc:
        _codings.append(coding(LOINC, *_q.extra_loinc))
    _QUANTITY_CODES[_q.key] = {"coding": _codings, "text": _q.display}
_REFERENCE_RANGES = {
    q.key: [
        {
            "low": {"value": q.normal[0], "unit": q.unit, "system": UCUM, "code": q.unit},
            "high": {"value": q.normal[1], "unit": q.unit, "system": UCUM, "code": q.unit},
        }
    ]
    for q in QUANTITIES.values()
    if q.normal and q.normal[0] > 0
}
_QUANTITY_PARTS = {
    q.key: (OBS_CATEGORIES[q.category], _QUANTITY_CODES[q.key], q.unit, q.decimals, _REFERENCE_RANGES.get(q.key))
    for q in QUANTITIES.values()
}


@dataclass(slots=True)
class Visit:
    """An encounter while it is being filled in, and what its note will say."""

    id: str
    ref: dict[str, str]
    subject: dict[str, str]
    person: Person
    start: int
    end: int
    when: str
    resource: dict[str, Any]
    kind: str
    clinician: Clinician
    site: Site
    reason: str = ""
    vitals: dict[str, Any] = field(default_factory=dict)
    labs: dict[str, str] = field(default_factory=dict)
    plan: list[str] = field(default_factory=list)
    diagnoses: list[dict[str, Any]] = field(default_factory=list)


class Chart:
    """One patient's resources; ``items`` keeps (resource type, resource) pairs in creation order."""

    __slots__ = ("cal", "ids", "items", "protected", "referenced")

    def __init__(self, ids: IdSource, cal: Calendar) -> None:
        self.ids = ids
        self.cal = cal
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.protected: set[int] = set()
        self.referenced: set[str] = set()

    def _add(self, resource_type: str, resource: dict[str, Any], *, protected: bool = False) -> dict[str, Any]:
        self.items.append((resource_type, resource))
        if protected:
            self.protected.add(id(resource))
        return resource

    # ------------------------------------------------------------ people

    def patient(
        self, patient_id: str, person: Person, *, adult: bool, gp: Clinician, clinic: Site, payer: Payer
    ) -> dict[str, Any]:
        race_ext: list[dict[str, Any]] = []
        if person.race in RACES:
            code, display = RACES[person.race]
            race_ext = [
                {"url": "ombCategory", "valueCoding": coding("urn:oid:2.16.840.1.113883.6.238", code, display)},
                {"url": "text", "valueString": display},
            ]
        elif person.race == "multiple":
            race_ext = [
                {"url": "ombCategory", "valueCoding": coding("urn:oid:2.16.840.1.113883.6.238", *RACES[k])}
                for k in ("white", "black")
            ] + [{"url": "text", "valueString": "Two or more races"}]
        else:
            race_ext = [{"url": "text", "valueString": "Other race"}]
        eth_code, eth_display = ETHNICITIES[person.ethnicity]
        identifiers: list[dict[str, Any]] = [
            {
                "use": "usual",
                "type": IDENTIFIER_TYPES["MR"],
                "system": person.mrn_system,
                "value": person.mrn,
            }
        ]
        if person.ssn:
            identifiers.append({"type": IDENTIFIER_TYPES["SS"], "system": US_SSN, "value": person.ssn})
        identifiers.append(
            {
                "type": IDENTIFIER_TYPES["MB"],
                "system": payer.system,
                "value": person.member_id,
                "assigner": {"reference": payer.ref["reference"], "display": payer.name},
            }
        )
        given = [person.given, person.middle] if person.middle else [person.given]
        name: dict[str, Any] = {"use": "official", "family": person.family, "given": given}
        if adult:
            name["prefix"] = ["Mr."] if person.sex == "male" else ["Ms."]
        telecom: list[dict[str, Any]] = [{"system": "phone", "value": person.phone, "use": "home"}]
        if person.email:
            telecom.append({"system": "email", "value": person.email})
        resource = {
            "resourceType": "Patient",
            "id": patient_id,
            "extension": [
                {"url": US_CORE_RACE, "extension": race_ext},
                {
                    "url": US_CORE_ETHNICITY,
                    "extension": [
                        {
                            "url": "ombCategory",
                            "valueCoding": coding("urn:oid:2.16.840.1.113883.6.238", eth_code, eth_display),
                        },
                        {"url": "text", "valueString": eth_display},
                    ],
                },
                {"url": US_CORE_BIRTHSEX, "valueCode": "M" if person.sex == "male" else "F"},
            ],
            "identifier": identifiers,
            "active": True,
            "name": [name],
            "telecom": telecom,
            "gender": person.sex,
            "birthDate": self.cal.date(person.birth),
            "address": [
                {
                    "use": "home",
                    "line": [person.line],
                    "city": person.city,
                    "state": person.state,
                    "postalCode": person.postal_code,
                    "country": "US",
                }
            ],
            "maritalStatus": MARITAL_STATUS[person.marital],
            "communication": [{"language": LANGUAGES[person.language], "preferred": True}],
            "generalPractitioner": [gp.ref],
            "managingOrganization": clinic.ref,
        }
        return self._add("Patient", resource)

    # ------------------------------------------------------------ encounters

    def encounter(
        self,
        *,
        klass: str,
        type_key: str,
        subject: dict[str, str],
        person: Person,
        start: int,
        start_minute: int,
        end: int,
        end_minute: int,
        clinician: Clinician,
        site: Site,
        location: str,
        priority: str | None = None,
        protected: bool = False,
    ) -> Visit:
        encounter_id = self.ids.new()
        stamp = self.cal.stamp
        resource: dict[str, Any] = {
            "resourceType": "Encounter",
            "id": encounter_id,
            "status": "finished",
            "class": ENCOUNTER_CLASS[klass],
            "type": ENCOUNTER_TYPES[type_key],
        }
        if priority:
            resource["priority"] = PRIORITY[priority]
        resource["subject"] = subject
        resource["participant"] = [
            {"type": PRIMARY_PERFORMER if klass != "IMP" else ATTENDER, "individual": clinician.ref}
        ]
        resource["period"] = {"start": stamp(start, start_minute), "end": stamp(end, end_minute)}
        resource["location"] = [{"location": site.locations[location]}]
        resource["serviceProvider"] = site.ref
        self._add("Encounter", resource, protected=protected)
        ref = {"reference": f"Encounter/{encounter_id}"}
        return Visit(
            encounter_id,
            ref,
            subject,
            person,
            start,
            end,
            stamp(start, start_minute + 10),
            resource,
            klass,
            clinician,
            site,
        )

    def hospitalization(self, visit: Visit, *, admit_source: str, disposition: str, readmission: bool) -> None:
        stay: dict[str, Any] = {"admitSource": ADMIT_SOURCES[admit_source]}
        if readmission:
            stay["reAdmission"] = READMISSION_CODE
        stay["dischargeDisposition"] = DISPOSITION_CODES[disposition]
        visit.resource["hospitalization"] = stay

    def diagnose(self, visit: Visit, condition: dict[str, Any], use: str) -> None:
        self.referenced.add(condition["id"])
        visit.diagnoses.append(
            {
                "condition": {"reference": f"Condition/{condition['id']}"},
                "use": DIAGNOSIS_USE[use],
                "rank": len(visit.diagnoses) + 1,
            }
        )
        visit.resource["diagnosis"] = visit.diagnoses

    # ------------------------------------------------------------ observations

    def quantity(self, key: str, value: float, visit: Visit) -> dict[str, Any]:
        category, code, unit, decimals, reference_range = _QUANTITY_PARTS[key]
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": self.ids.new(),
            "status": "final",
            "category": category,
            "code": code,
            "subject": visit.subject,
            "encounter": visit.ref,
            "effectiveDateTime": visit.when,
            "valueQuantity": {
                "value": round(value) if decimals == 0 else round(value, decimals),
                "unit": unit,
                "system": UCUM,
                "code": unit,
            },
        }
        if reference_range:
            resource["referenceRange"] = reference_range
        self.items.append(("Observation", resource))
        return resource

    def blood_pressure(self, systolic: float, diastolic: float, visit: Visit) -> dict[str, Any]:
        return self._add(
            "Observation",
            {
                "resourceType": "Observation",
                "id": self.ids.new(),
                "status": "final",
                "category": OBS_CATEGORIES["vital-signs"],
                "code": _BP_CODE,
                "subject": visit.subject,
                "encounter": visit.ref,
                "effectiveDateTime": visit.when,
                "component": [
                    {
                        "code": _SBP_CODE,
                        "valueQuantity": {"value": round(systolic), "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"},
                    },
                    {
                        "code": _DBP_CODE,
                        "valueQuantity": {
                            "value": round(diastolic),
                            "unit": "mm[Hg]",
                            "system": UCUM,
                            "code": "mm[Hg]",
                        },
                    },
                ],
            },
        )

    def coded(
        self, question: tuple[str, str], answer: tuple[str, str], answer_system: str, category: str, visit: Visit
    ) -> dict[str, Any]:
        return self._add(
            "Observation",
            {
                "resourceType": "Observation",
                "id": self.ids.new(),
                "status": "final",
                "category": OBS_CATEGORIES[category],
                "code": concept(LOINC, *question),
                "subject": visit.subject,
                "encounter": visit.ref,
                "effectiveDateTime": visit.when,
                "valueCodeableConcept": concept(answer_system, *answer),
            },
        )

    # ------------------------------------------------------------ clinical statements

    def condition(
        self, key: str, visit: Visit, *, onset: int, problem: bool, resolved: int | None = None, protected: bool = False
    ) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Condition",
            "id": self.ids.new(),
            "clinicalStatus": CLINICAL_ACTIVE if resolved is None else CLINICAL_RESOLVED,
            "verificationStatus": VERIFICATION_CONFIRMED,
            "category": CONDITION_CATEGORY_PROBLEM if problem else CONDITION_CATEGORY_ENCOUNTER,
            "code": CONDITIONS[key].code,
            "subject": visit.subject,
            "encounter": visit.ref,
            "onsetDateTime": self.cal.date(onset) if onset < visit.start else visit.when,
            "recordedDate": visit.when,
        }
        if resolved is not None:
            resource["abatementDateTime"] = self.cal.date(resolved)
        return self._add("Condition", resource, protected=protected)

    def medication(
        self, key: str, visit: Visit, *, reason: dict[str, Any] | None, category: str, days: int | None = None
    ) -> dict[str, Any]:
        med = MEDICATIONS[key]
        resource: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": self.ids.new(),
            "status": "active",
            "intent": "order",
            "category": MED_CATEGORY[category],
            "medicationCodeableConcept": med.code,
            "subject": visit.subject,
            "encounter": visit.ref,
            "authoredOn": visit.when,
            "requester": visit.clinician.ref,
        }
        if reason is not None:
            resource["reasonReference"] = [{"reference": f"Condition/{reason['id']}"}]
            self.referenced.add(reason["id"])
        resource["dosageInstruction"] = [
            {"text": med.sig, "timing": {"repeat": {"frequency": med.per_day, "period": 1, "periodUnit": "d"}}}
        ]
        validity: dict[str, str] = {"start": self.cal.date(visit.start)}
        if days is not None:
            resource["status"] = "completed"
            validity["end"] = self.cal.date(visit.start + days)
        resource["dispenseRequest"] = {"validityPeriod": validity}
        return self._add("MedicationRequest", resource)

    def procedure(self, key: str, visit: Visit, *, reason: dict[str, Any] | None = None) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Procedure",
            "id": self.ids.new(),
            "status": "completed",
            "code": PROCEDURE_CODES[key],
            "subject": visit.subject,
            "encounter": visit.ref,
            "performedDateTime": visit.when,
        }
        if reason is not None:
            resource["reasonReference"] = [{"reference": f"Condition/{reason['id']}"}]
            self.referenced.add(reason["id"])
        return self._add("Procedure", resource)

    def immunization(self, key: str, visit: Visit, lot: str) -> dict[str, Any]:
        return self._add(
            "Immunization",
            {
                "resourceType": "Immunization",
                "id": self.ids.new(),
                "status": "completed",
                "vaccineCode": VACCINE_CODES[key],
                "patient": visit.subject,
                "encounter": visit.ref,
                "occurrenceDateTime": visit.when,
                "primarySource": True,
                "lotNumber": lot,
            },
        )

    def allergy(self, spec: tuple[str, str, str, str, str, str, str], visit: Visit, severity: str) -> dict[str, Any]:
        _, code, display, category, criticality, reaction_code, reaction_display = spec
        return self._add(
            "AllergyIntolerance",
            {
                "resourceType": "AllergyIntolerance",
                "id": self.ids.new(),
                "clinicalStatus": ALLERGY_CLINICAL_ACTIVE,
                "verificationStatus": ALLERGY_CONFIRMED,
                "type": "allergy",
                "category": [category],
                "criticality": criticality,
                "code": concept(SNOMED, code, display),
                "patient": visit.subject,
                "encounter": visit.ref,
                "recordedDate": visit.when,
                "reaction": [
                    {"manifestation": [concept(SNOMED, reaction_code, reaction_display)], "severity": severity}
                ],
            },
        )

    def care_plan(self, key: str, visit: Visit, condition: dict[str, Any]) -> dict[str, Any]:
        code, display, activities = CARE_PLANS[key]
        self.referenced.add(condition["id"])
        return self._add(
            "CarePlan",
            {
                "resourceType": "CarePlan",
                "id": self.ids.new(),
                "status": "active",
                "intent": "plan",
                "category": [CAREPLAN_ASSESS, concept(SNOMED, code, display)],
                "title": display,
                "subject": visit.subject,
                "encounter": visit.ref,
                "period": {"start": visit.when},
                "created": visit.when,
                "author": visit.clinician.ref,
                "addresses": [{"reference": f"Condition/{condition['id']}"}],
                "activity": [
                    {"detail": {"code": concept(SNOMED, a_code, a_display), "status": "in-progress"}}
                    for a_code, a_display in activities
                ],
            },
        )

    def service_request(
        self,
        code: dict[str, Any],
        categories: list[dict[str, Any]],
        visit: Visit,
        *,
        status: str,
        reason: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "id": self.ids.new(),
            "status": status,
            "intent": "order",
            "category": categories,
            "code": code,
            "subject": visit.subject,
            "encounter": visit.ref,
            "authoredOn": visit.when,
            "requester": visit.clinician.ref,
        }
        if reason is not None:
            resource["reasonReference"] = [{"reference": f"{reason['resourceType']}/{reason['id']}"}]
            self.referenced.add(reason["id"])
        return self._add("ServiceRequest", resource)

    def document(self, kind: str, text: str, visit: Visit, end_minute: int) -> dict[str, Any]:
        note_type = NOTE_TYPES[kind]
        signed = self.cal.stamp(visit.end, end_minute)
        return self._add(
            "DocumentReference",
            {
                "resourceType": "DocumentReference",
                "id": self.ids.new(),
                "status": "current",
                "docStatus": "final",
                "type": note_type,
                "category": CLINICAL_NOTE,
                "subject": visit.subject,
                "date": signed,
                "author": [visit.clinician.ref],
                "custodian": visit.site.ref,
                "content": [
                    {
                        "attachment": {
                            "contentType": "text/plain",
                            "language": "en-US",
                            "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
                            "title": note_type["text"],
                            "creation": signed,
                        }
                    }
                ],
                "context": {"encounter": [visit.ref], "period": visit.resource["period"]},
            },
        )

    def family_history(self, relation: str, visit: Visit) -> dict[str, Any]:
        return self._add(
            "FamilyMemberHistory",
            {
                "resourceType": "FamilyMemberHistory",
                "id": self.ids.new(),
                "status": "completed",
                "patient": visit.subject,
                "date": self.cal.date(visit.start),
                "relationship": FAMILY_RELATIONS[relation],
                "condition": [{"code": CONDITIONS["t2d"].code}],
            },
        )

    def consent(self, visit: Visit, organization: dict[str, str]) -> dict[str, Any]:
        return self._add(
            "Consent",
            {
                "resourceType": "Consent",
                "id": self.ids.new(),
                "status": "active",
                "scope": CONSENT_RESEARCH,
                "category": CONSENT_CATEGORY,
                "patient": visit.subject,
                "dateTime": visit.when,
                "organization": [organization],
                "policyRule": CONSENT_OPT_OUT,
                "provision": {"type": "deny", "period": {"start": self.cal.date(visit.start)}},
            },
        )
