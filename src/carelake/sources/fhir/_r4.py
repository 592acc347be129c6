"""What ingestion needs to know about FHIR R4: resource types, patient links, clinical times, ids."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import cache
from importlib import resources
from typing import Any

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


def get_path(obj: dict[str, Any], dotted: str) -> Any:
    current: Any = obj
    for part in dotted.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def clinical_time(resource_type: str, obj: dict[str, Any]) -> str | None:
    """The main clinical time as written (partial dates kept), or None."""
    for path in CLINICAL_TIME_PATHS.get(resource_type, ()):
        value = get_path(obj, path)
        if isinstance(value, str):
            return value
    return None


def parse_fhir_time(value: str | None) -> datetime | None:
    """A FHIR date/dateTime/instant as a UTC instant at the start of its precision; None if unparsable.

    Examples:
        >>> parse_fhir_time("1989-10-04T02:25:16-04:00").isoformat()
        '1989-10-04T06:25:16+00:00'
        >>> parse_fhir_time("2019-03").isoformat()
        '2019-03-01T00:00:00+00:00'
    """
    if not value:
        return None
    try:
        if len(value) == 4:
            return datetime(int(value), 1, 1, tzinfo=UTC)
        if len(value) == 7:
            return datetime(int(value[:4]), int(value[5:7]), 1, tzinfo=UTC)
        if len(value) == 10:
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


_ABSOLUTE_OR_RELATIVE = re.compile(
    r"^(?:(?P<base>https?://\S+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)


def classify_reference(reference: str) -> tuple[str, str | None, str | None, str | None, str | None]:
    """Split a reference string: (kind, target type, target id, identifier system, identifier value).

    Kinds: ``literal`` (Type/id), ``absolute`` (URL ending in Type/id), ``conditional``
    (Type?search), ``contained`` (#id), ``urn`` (urn:uuid:/urn:oid: not resolved in its bundle)
    and ``other``.

    Examples:
        >>> classify_reference("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|9999974493")
        ('conditional', 'Practitioner', None, 'http://hl7.org/fhir/sid/us-npi', '9999974493')
    """
    if reference.startswith("#"):
        return ("contained", None, None, None, None)
    if reference.startswith(("urn:uuid:", "urn:oid:")):
        return ("urn", None, None, None, None)
    if "?" in reference:
        target_type, _, query = reference.partition("?")
        system = value = None
        for param in query.split("&"):
            name, _, arg = param.partition("=")
            if name == "identifier" and arg:
                if "|" in arg:
                    system, _, value = arg.partition("|")
                else:
                    value = arg
                break
        return ("conditional", target_type or None, None, system or None, value)
    match = _ABSOLUTE_OR_RELATIVE.match(reference)
    if match:
        kind = "absolute" if match.group("base") else "literal"
        return (kind, match.group("type"), match.group("id"), None, None)
    return ("other", None, None, None, None)


def patient_id(resource_type: str, resource_id: str, obj: dict[str, Any]) -> str | None:
    """The id of the Patient a resource belongs to (its own id for a Patient), when a literal reference says so."""
    if resource_type == "Patient":
        return resource_id
    for element in PATIENT_ELEMENTS:
        value = obj.get(element)
        if isinstance(value, dict):
            reference = value.get("reference")
            if isinstance(reference, str):
                kind, target_type, target_id, _, _ = classify_reference(reference)
                if kind in ("literal", "absolute") and target_type == "Patient":
                    return target_id
    return None
