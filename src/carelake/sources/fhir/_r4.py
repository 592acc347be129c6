"""What ingestion needs to know about FHIR R4: resource types, patient links, clinical times, ids."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")

# Elements that point at the patient a resource is about, in order of preference.
PATIENT_ELEMENTS = ("subject", "patient", "beneficiary")

# The element that best dates each resource type for analysis ("when did this happen").
# Each entry is a list of dotted paths tried in order; choice[x] elements list their variants.
CLINICAL_TIME_PATHS: dict[str, tuple[str, ...]] = {
    "Patient": ("birthDate",),
    "Encounter": ("period.start",),
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "MedicationRequest": ("authoredOn",),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod.start"),
    "MedicationDispense": ("whenHandedOver", "whenPrepared"),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "AllergyIntolerance": ("onsetDateTime", "recordedDate"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "DocumentReference": ("context.period.start", "date"),
    "CarePlan": ("period.start", "created"),
    "CareTeam": ("period.start",),
    "ServiceRequest": ("occurrenceDateTime", "occurrencePeriod.start", "authoredOn"),
    "Claim": ("billablePeriod.start", "created"),
    "ExplanationOfBenefit": ("billablePeriod.start", "created"),
    "ImagingStudy": ("started",),
    "Goal": ("startDate", "statusDate"),
    "EpisodeOfCare": ("period.start",),
    "Consent": ("dateTime",),
    "QuestionnaireResponse": ("authored",),
    "Device": ("manufactureDate",),
    "Coverage": ("period.start",),
    "Specimen": ("collection.collectedDateTime", "receivedTime"),
    "Communication": ("sent",),
    "FamilyMemberHistory": ("date",),
    "RiskAssessment": ("occurrenceDateTime",),
    "Appointment": ("start",),
    "Composition": ("date",),
    "Provenance": ("recorded",),
}


@cache
def r4_resource_types() -> frozenset[str]:
    """The R4 resource types, read from the ValueSet codes shipped beside this module."""
    text = resources.files(__package__).joinpath("r4-resource-types.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
