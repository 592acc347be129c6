"""The patient-event view: every clinical event of the standard views as one row of the same shape.

Cohorts, features (and, with OMOP, other sources) ask the same questions of every kind of event: whose is it,
which code in which system, when, what value. ``cl_events`` answers them once: patient, domain, code system,
code, start and end time, numeric value, and an encounter's discharge disposition and priority. A screening
answer (domain ``screening``) has the question's LOINC code as its system and the LOINC answer code as its code; a
relative's condition (domain ``family_history``) is dated by when the history was taken.
An event coded in two systems has two rows; ``is_primary`` marks one of them, so counting events needs no
DISTINCT (which must hold every key in memory).
"""

from __future__ import annotations

# Code systems by the short names people write them in (value sets, feature definitions).
SYSTEMS = {
    "snomed": "http://snomed.info/sct",
    "icd10cm": "http://hl7.org/fhir/sid/icd-10-cm",
    "loinc": "http://loinc.org",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "cvx": "http://hl7.org/fhir/sid/cvx",
    "encounter-class": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
}
# OMOP vocabulary ids and the FHIR code systems they name: OMOP ingestion codes concepts with these, the OMOP
# export finds concepts by them, and MEDS codes are written ``<vocabulary_id>/<code>``.
VOCABULARIES = {
    "SNOMED": SYSTEMS["snomed"],
    "ICD10CM": SYSTEMS["icd10cm"],
    "LOINC": SYSTEMS["loinc"],
    "RxNorm": SYSTEMS["rxnorm"],
    "CVX": SYSTEMS["cvx"],
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "ICD9CM": "http://hl7.org/fhir/sid/icd-9-cm",
    "ICD10PCS": "http://www.cms.gov/Medicare/Coding/ICD10",
    "CPT4": "http://www.ama-assn.org/go/cpt",
    "HCPCS": "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "dm+d": "https://dmd.nhs.uk",
    "UCUM": "http://unitsofmeasure.org",
    "ATC": "http://www.whocc.no/atc",
    "RxNorm Extension": "https://fhir-terminology.ohdsi.org/CodeSystem/RxNorm-Extension",
}
VOCABULARY_OF_SYSTEM = {system: vocabulary for vocabulary, system in VOCABULARIES.items()}
EVENT_VIEWS = (
    "encounters",
    "conditions",
    "observations",
    "procedures",
    "medication_requests",
    "immunizations",
    "social_needs_screening",
    "family_history",
)

_NO_ATTRIBUTES = "CAST(NULL AS VARCHAR) AS disposition, CAST(NULL AS VARCHAR) AS priority"

# One row per clinical event, from the standard views (docs/cohorts.md lists what each domain reads).
EVENTS_SQL = f"""
SELECT patient_id, 'encounter' AS domain, id AS event_id, class_system AS system, class_code AS code,
       cl_fhir_time(start) AS start_time, cl_fhir_time("end") AS end_time, CAST(NULL AS DOUBLE) AS value,
       discharge_disposition_code AS disposition, priority_code AS priority, TRUE AS is_primary
FROM encounters
UNION ALL
SELECT patient_id, 'encounter', id, '{SYSTEMS["snomed"]}', type_code, cl_fhir_time(start), cl_fhir_time("end"),
       CAST(NULL AS DOUBLE), discharge_disposition_code, priority_code, FALSE
FROM encounters WHERE type_code IS NOT NULL
UNION ALL
SELECT patient_id, 'condition', id, '{SYSTEMS["snomed"]}', snomed_code,
       cl_fhir_time(coalesce(onset, recorded_date)), cl_fhir_time(abatement), CAST(NULL AS DOUBLE), {_NO_ATTRIBUTES},
       TRUE
FROM conditions
WHERE snomed_code IS NOT NULL AND coalesce(verification_status, '') NOT IN ('refuted', 'entered-in-error')
UNION ALL
SELECT patient_id, 'condition', id, '{SYSTEMS["icd10cm"]}', icd10cm_code,
       cl_fhir_time(coalesce(onset, recorded_date)), cl_fhir_time(abatement), CAST(NULL AS DOUBLE), {_NO_ATTRIBUTES},
       snomed_code IS NULL
FROM conditions
WHERE icd10cm_code IS NOT NULL AND coalesce(verification_status, '') NOT IN ('refuted', 'entered-in-error')
UNION ALL
SELECT patient_id, 'observation', id, '{SYSTEMS["loinc"]}', loinc_code, cl_fhir_time(effective),
       CAST(NULL AS TIMESTAMPTZ), value, {_NO_ATTRIBUTES}, TRUE
FROM observations WHERE loinc_code IS NOT NULL AND coalesce(status, '') NOT IN ('entered-in-error', 'cancelled')
UNION ALL
SELECT patient_id, 'procedure', id, code_system, code, cl_fhir_time(performed_start), cl_fhir_time(performed_end),
       CAST(NULL AS DOUBLE), {_NO_ATTRIBUTES}, TRUE
FROM procedures WHERE coalesce(status, '') NOT IN ('entered-in-error', 'not-done')
UNION ALL
SELECT patient_id, 'medication', id, medication_system, medication_code, cl_fhir_time(authored_on),
       CAST(NULL AS TIMESTAMPTZ), CAST(NULL AS DOUBLE), {_NO_ATTRIBUTES}, TRUE
FROM medication_requests WHERE coalesce(status, '') NOT IN ('entered-in-error', 'cancelled')
UNION ALL
SELECT patient_id, 'immunization', id, vaccine_system, vaccine_code, cl_fhir_time(occurrence),
       CAST(NULL AS TIMESTAMPTZ), CAST(NULL AS DOUBLE), {_NO_ATTRIBUTES}, TRUE
FROM immunizations WHERE coalesce(status, '') NOT IN ('entered-in-error', 'not-done')
UNION ALL
SELECT patient_id, 'screening', id, question_code, answer_code, cl_fhir_time(effective), CAST(NULL AS TIMESTAMPTZ),
       answer_value, {_NO_ATTRIBUTES}, TRUE
FROM social_needs_screening
WHERE question_code IS NOT NULL AND coalesce(status, '') NOT IN ('entered-in-error', 'cancelled')
UNION ALL
SELECT patient_id, 'family_history', id, condition_system, condition_code, cl_fhir_time(date),
       CAST(NULL AS TIMESTAMPTZ), CAST(NULL AS DOUBLE), {_NO_ATTRIBUTES}, TRUE
FROM family_history
WHERE condition_code IS NOT NULL AND coalesce(status, '') NOT IN ('entered-in-error', 'health-unknown')
"""


def age_sql(birth: str, at: str) -> str:
    """Completed years between two timestamps (a partial birth date counts from its first day)."""
    return (
        f"(year({at}) - year({birth}) - CASE WHEN month({at}) * 100 + day({at}) "
        f"< month({birth}) * 100 + day({birth}) THEN 1 ELSE 0 END)"
    )


def sql_literal(value: object) -> str:
    """A value as a quoted SQL string literal (codes and names from definitions people write)."""
    return "'" + str(value).replace("'", "''") + "'"


def vocabulary_sql(system: str) -> str:
    """The OMOP vocabulary_id of a code-system column, as SQL: the system URI itself when it is not in VOCABULARIES."""
    cases = " ".join(f"WHEN {sql_literal(url)} THEN {sql_literal(v)}" for url, v in VOCABULARY_OF_SYSTEM.items())
    return f"(CASE {system} {cases} ELSE {system} END)"


def register_events(eng: object) -> None:
    """Define ``cl_events`` on an engine whose lake has the standard views."""
    eng.create_view("cl_events", EVENTS_SQL)  # type: ignore[attr-defined]
