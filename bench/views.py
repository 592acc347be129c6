"""Benchmark the standard SQL-on-FHIR views against hand-written DuckDB SQL and a per-resource Python evaluator.

    python bench/views.py                          # >= 1 M Observations (builds and caches the lake once)
    python bench/views.py --observations 50000     # a quicker look
    python bench/views.py --only observations --memory 4GB --repeat 3

The benchmark lake replicates the public Synthea corpus with rewritten UUIDs per copy, so references stay
consistent within a copy: the four transaction bundles (196 Observations; entries unpacked, ``urn:uuid:``
references rewritten to ``Type/id``; Claim and ExplanationOfBenefit left out, half the bytes and read by no
view), with the FHIR specification's FamilyMemberHistory example (Synthea writes none), as often as it takes
to reach ``--observations``, and the 10-patient bulk NDJSON export (AllergyIntolerance, DocumentReference and
more) once per 50 of those copies. It is written as NDJSON per resource type,
ingested once with ``carelake.ingest_fhir`` and kept under bench/out/views-lake-N for later runs.

For each standard view this prints rows, seconds and rows/s for

* carelake: ``materialize_views([view], lake=lake, full=True)``, what a user runs (compile, connect, COPY to Parquet,
  commit);
* hand-written DuckDB SQL producing the same table (``json_transform`` once per resource, then struct
  access, ``unnest`` and list lambdas), written with COPY to Parquet through ``lake.connect("duckdb")``: the
  same engine settings (memory limit, threads), the speed-of-light reference;
* a straightforward per-resource Python evaluator of the same ViewDefinition on fhirpathpy (R4 model),
  timed on a sample (the first ``--sample`` resources of the view's type by id; JSON parsing included,
  reading the text out of the lake not), because it is slow; speed-up is carelake rows/s over its rows/s;

then checks carelake's table equals the hand SQL's (all rows, all columns; floats exactly, or else within
1e-9) and the evaluator's on the sample, and times ``run_view`` for interactive queries over all
Observations (one LOINC code via a ``where``, and the whole view). Timings are in-process (one
interpreter, DuckDB in it), best of ``--repeat``; peak RSS is this process's resident memory sampled while
each timed step runs. ``--memory`` sets the DuckDB memory limit for carelake and the hand SQL alike
(default: carelake's). Writes bench/out/views.json; a mismatch or a failed view makes it exit 1 after
printing the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import re
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SYNTHEA = HERE.parent.parent / "shared/testdata/synthea-fhir-r4"
BUNDLES = SYNTHEA / "transaction-bundles"
BULK = SYNTHEA / "bulk-ndjson-10-patients"
FAMILY_HISTORY = HERE.parent.parent / "shared/testdata/fhir-r4-examples/spec-examples/familymemberhistory-example.json"
UUID = re.compile(rb"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-)[0-9a-f]{12}")
MARK = b"\x00copy\x00"  # stands for a copy's 12-digit UUID tail in the templates (never in JSON text)
URN_REFERENCE = re.compile(rb'"reference":"urn:uuid:([0-9a-f-]{36})"')
# Billing records: half the bundles' bytes and read by no standard view; left out to keep ingest short.
SKIPPED_TYPES = {"Claim", "ExplanationOfBenefit"}
BULK_EVERY = 50  # one copy of the 10-patient bulk export per 50 copies of the bundles
LOINC = "http://loinc.org"


# -- the benchmark lake -------------------------------------------------------------------------------


def templates() -> tuple[dict[str, list[bytes]], dict[str, list[bytes]]]:
    """NDJSON lines per resource type, UUID tails replaced by MARK: from the bundles and from the bulk export."""
    import orjson

    bundled: dict[str, list[bytes]] = {}
    for path in sorted(BUNDLES.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        types = {e["fullUrl"].removeprefix("urn:uuid:"): e["resource"]["resourceType"] for e in bundle["entry"]}

        def literal(m: re.Match[bytes], types: dict[str, str] = types) -> bytes:
            target = types.get(m.group(1).decode())
            return b'"reference":"%s/%s"' % (target.encode(), m.group(1)) if target else m.group(0)

        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] in SKIPPED_TYPES:
                continue
            line = URN_REFERENCE.sub(literal, orjson.dumps(resource))
            bundled.setdefault(resource["resourceType"], []).append(UUID.sub(lambda m: m.group(1) + MARK, line))
    # Synthea writes no FamilyMemberHistory: the specification's example, once per copy, under a copy's own id.
    family = {**orjson.loads(FAMILY_HISTORY.read_bytes()), "id": "f0000000-0000-4000-8000-000000000000"}
    bundled["FamilyMemberHistory"] = [UUID.sub(lambda m: m.group(1) + MARK, orjson.dumps(family))]
    bulk: dict[str, list[bytes]] = {}
    for path in sorted(BULK.glob("*.000.ndjson")):
        lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
        bulk[path.name.split(".")[0]] = [UUID.sub(lambda m: m.group(1) + MARK, ln) for ln in lines]
    return bundled, bulk


def build_input(folder: Path, observations: int) -> dict[str, int]:
    """Write one NDJSON file per resource type with at least ``observations`` Observations; return line counts."""
    bundled, bulk = templates()
    copies = math.ceil(observations / len(bundled["Observation"]))
    bulk_copies = math.ceil(copies / BULK_EVERY)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    counts: Counter[str] = Counter()
    for resource_type in sorted(set(bundled) | set(bulk)):
        with (folder / f"{resource_type}.ndjson").open("wb") as out:
            for lines, n, first in ((bundled, copies, 0), (bulk, bulk_copies, 10**11)):
                if resource_type not in lines:
                    continue
                template = b"\n".join(lines[resource_type]) + b"\n"
                for copy in range(first, first + n):
                    out.write(template.replace(MARK, b"%012d" % copy))
                counts[resource_type] += n * len(lines[resource_type])
    return dict(counts)


def benchmark_lake(out: Path, observations: int) -> tuple[Path, dict[str, Any]]:
    """The cached lake for this size: built and ingested on the first run, reused after."""
    import carelake as cl

    lake_dir = out / f"views-lake-{observations}"
    marker = out / f"views-lake-{observations}.json"
    if marker.exists() and lake_dir.exists():
        return lake_dir, json.loads(marker.read_text())
    shutil.rmtree(lake_dir, ignore_errors=True)
    source = out / "views-input"
    started = time.perf_counter()
    written = build_input(source, observations)
    size = sum(f.stat().st_size for f in source.glob("*.ndjson"))
    print(
        f"input: {source} {size / 1e6:,.0f} MB, {sum(written.values()):,} resources "
        f"in {time.perf_counter() - started:.0f} s; ingesting…",
        flush=True,
    )
    summary = cl.ingest_fhir(sorted(source.glob("*.ndjson")), lake=lake_dir, keep_raw=False)
    if summary.quarantined or summary.stored + summary.duplicates != sum(written.values()):
        raise SystemExit(f"ingest stored {summary.stored:,} of {sum(written.values()):,} resources")
    info = {
        "observations_asked": observations,
        "input_mb": size / 1e6,
        "resources": summary.stored,
        "ingest_seconds": summary.seconds,
        "by_type": {t: c["stored"] if isinstance(c, dict) else c for t, c in summary.by_type.items()},
    }
    marker.write_text(json.dumps(info, indent=1))
    shutil.rmtree(source)
    return lake_dir, info


# -- hand-written DuckDB SQL, one query per view ------------------------------------------------------

CODING = {"system": "VARCHAR", "code": "VARCHAR", "display": "VARCHAR"}
CONCEPT = {"coding": [CODING], "text": "VARCHAR"}
REF = {"reference": "VARCHAR"}
KEY = r"'([A-Za-z]+)/([A-Za-z0-9.-]+)(/_history/[A-Za-z0-9.-]+)?$'"


def ref_key(reference: str, type_: str) -> str:
    """getReferenceKey(type_): the id at the end of a literal reference to that type."""
    return (
        f"CASE WHEN regexp_extract({reference}, {KEY}, 1) = '{type_}' "
        f"THEN NULLIF(regexp_extract({reference}, {KEY}, 2), '') END"
    )


def parsed(resource_type: str, structure: dict[str, Any]) -> str:
    """Each resource of a type parsed once into a struct of the fields a query reads."""
    return (
        f"(SELECT json_transform(resource, '{json.dumps(structure, separators=(',', ':'))}') AS r "
        f"FROM resources WHERE resource_type = '{resource_type}')"
    )


def _observation_values(e: str) -> str:
    """The value columns of an Observation or a component, as struct fields."""
    loinc = f"list_filter({e}.code.coding, lambda c: c.system = '{LOINC}' AND c.code IS NOT NULL)[1].code"
    return (
        f"'loinc_code': {loinc}, 'display': coalesce({e}.code.text, {e}.code.coding[1].display), "
        f"'value': {e}.valueQuantity.value, 'unit': coalesce({e}.valueQuantity.code, {e}.valueQuantity.unit), "
        f"'value_code': {e}.valueCodeableConcept.coding[1].code, "
        f"'value_display': {e}.valueCodeableConcept.coding[1].display, 'value_text': {e}.valueString"
    )


def _answers(e: str) -> str:
    return (
        f"'question_code': {e}.code.coding[1].code, 'question': coalesce({e}.code.text, {e}.code.coding[1].display), "
        f"'answer_code': {e}.valueCodeableConcept.coding[1].code, "
        f"'answer': coalesce({e}.valueCodeableConcept.text, {e}.valueCodeableConcept.coding[1].display), "
        f"'answer_value': {e}.valueQuantity.value"
    )


_VALUES = {
    "code": CONCEPT,
    "valueQuantity": {"value": "DOUBLE", "unit": "VARCHAR", "code": "VARCHAR"},
    "valueCodeableConcept": CONCEPT,
    "valueString": "VARCHAR",
}
_OBSERVATION = {
    "id": "VARCHAR",
    "subject": REF,
    "encounter": REF,
    "status": "VARCHAR",
    "category": [{"coding": [CODING]}],
    "effectiveDateTime": "VARCHAR",
    "effectivePeriod": {"start": "VARCHAR"},
    "issued": "VARCHAR",
    **_VALUES,
    "component": [_VALUES],
}
_SOCIAL = "('survey', 'social-history', 'sdoh')"
_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
_ETHNICITY = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"


_SNOMED = "http://snomed.info/sct"
_ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"


def _coded(system: str) -> str:
    """code.coding.where(system = ...).code.first()"""
    return f"list_filter(r.code.coding, lambda c: c.system = '{system}' AND c.code IS NOT NULL)[1].code"


def _omb(url: str, part: str, field: str) -> str:
    extensions = f"list_filter(r.extension, lambda e: e.url = '{url}')[1].extension"
    return f"list_filter({extensions}, lambda x: x.url = '{part}')[1].{field}"


_PATIENT = {
    "id": "VARCHAR",
    "gender": "VARCHAR",
    "birthDate": "VARCHAR",
    "deceasedDateTime": "VARCHAR",
    "deceasedBoolean": "BOOLEAN",
    "extension": [
        {
            "url": "VARCHAR",
            "valueCode": "VARCHAR",
            "extension": [{"url": "VARCHAR", "valueCoding": {"code": "VARCHAR"}, "valueString": "VARCHAR"}],
        }
    ],
    "maritalStatus": CONCEPT,
    "communication": [{"language": CONCEPT}],
    "address": [{"city": "VARCHAR", "state": "VARCHAR", "postalCode": "VARCHAR", "country": "VARCHAR"}],
}
_ENCOUNTER = {
    "id": "VARCHAR",
    "subject": REF,
    "status": "VARCHAR",
    "class": CODING,
    "type": [CONCEPT],
    "period": {"start": "VARCHAR", "end": "VARCHAR"},
    "reasonCode": [CONCEPT],
    "hospitalization": {"admitSource": CONCEPT, "dischargeDisposition": CONCEPT},
    "priority": CONCEPT,
    "serviceProvider": REF,
}
_CONDITION = {
    "id": "VARCHAR",
    "subject": REF,
    "encounter": REF,
    "code": CONCEPT,
    "clinicalStatus": CONCEPT,
    "verificationStatus": CONCEPT,
    "category": [CONCEPT],
    "onsetDateTime": "VARCHAR",
    "abatementDateTime": "VARCHAR",
    "recordedDate": "VARCHAR",
}
_DOCUMENT = {
    "id": "VARCHAR",
    "subject": REF,
    "context": {"encounter": [REF], "period": {"start": "VARCHAR", "end": "VARCHAR"}},
    "status": "VARCHAR",
    "docStatus": "VARCHAR",
    "type": CONCEPT,
    "category": [CONCEPT],
    "date": "VARCHAR",
    "content": [{"attachment": {"contentType": "VARCHAR", "size": "BIGINT", "data": "VARCHAR"}}],
}
_IMMUNIZATION = {
    "id": "VARCHAR",
    "patient": REF,
    "encounter": REF,
    "status": "VARCHAR",
    "vaccineCode": CONCEPT,
    "occurrenceDateTime": "VARCHAR",
    "primarySource": "BOOLEAN",
    "lotNumber": "VARCHAR",
}
_MEDICATION_REQUEST = {
    "id": "VARCHAR",
    "subject": REF,
    "encounter": REF,
    "status": "VARCHAR",
    "intent": "VARCHAR",
    "authoredOn": "VARCHAR",
    "medicationCodeableConcept": CONCEPT,
    "medicationReference": REF,
    "reasonCode": [CONCEPT],
    "reasonReference": [REF],
    "dosageInstruction": [{"text": "VARCHAR", "asNeededBoolean": "BOOLEAN"}],
}
_PROCEDURE = {
    "id": "VARCHAR",
    "subject": REF,
    "encounter": REF,
    "status": "VARCHAR",
    "code": CONCEPT,
    "performedDateTime": "VARCHAR",
    "performedPeriod": {"start": "VARCHAR", "end": "VARCHAR"},
    "reasonCode": [CONCEPT],
    "reasonReference": [REF],
}
_FAMILY = {
    "id": "VARCHAR",
    "patient": REF,
    "status": "VARCHAR",
    "date": "VARCHAR",
    "relationship": CONCEPT,
    "condition": [{"code": CONCEPT, "onsetAge": {"value": "DOUBLE"}, "contributedToDeath": "BOOLEAN"}],
}
_ALLERGY = {
    "id": "VARCHAR",
    "patient": REF,
    "clinicalStatus": CONCEPT,
    "verificationStatus": CONCEPT,
    "type": "VARCHAR",
    "category": ["VARCHAR"],
    "criticality": "VARCHAR",
    "code": CONCEPT,
    "onsetDateTime": "VARCHAR",
    "recordedDate": "VARCHAR",
    "reaction": [{"manifestation": [CONCEPT], "severity": "VARCHAR"}],
}
_BIRTH_SEX = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"

HAND_SQL: dict[str, str] = {
    "patients": f"""
SELECT r.id AS id, r.gender AS gender, r.birthDate AS birth_date,
       r.deceasedDateTime IS NOT NULL OR coalesce(r.deceasedBoolean, FALSE) AS deceased,
       r.deceasedDateTime AS deceased_date,
       list_filter(r.extension, lambda e: e.url = '{_BIRTH_SEX}' AND e.valueCode IS NOT NULL)[1].valueCode AS birth_sex,
       {_omb(_RACE, "ombCategory", "valueCoding.code")} AS race_code,
       {_omb(_RACE, "text", "valueString")} AS race,
       {_omb(_ETHNICITY, "ombCategory", "valueCoding.code")} AS ethnicity_code,
       {_omb(_ETHNICITY, "text", "valueString")} AS ethnicity,
       r.maritalStatus.coding[1].code AS marital_status, r.communication[1].language.coding[1].code AS language,
       r.address[1].city AS city, r.address[1].state AS state, r.address[1].postalCode AS postal_code,
       r.address[1].country AS country
FROM {parsed("Patient", _PATIENT)}""",
    "encounters": f"""
SELECT *,
       CASE WHEN length(start) >= 10 AND length("end") >= 10
            THEN date_diff('day', CAST(left(start, 10) AS DATE), CAST(left("end", 10) AS DATE)) END
         AS length_of_stay_days,
       CASE WHEN length(start) > 10 AND length("end") > 10
            THEN date_diff('second', TRY_CAST(start AS TIMESTAMPTZ), TRY_CAST("end" AS TIMESTAMPTZ)) / 3600.0 END
         AS duration_hours
FROM (
  SELECT r.id AS id, {ref_key("r.subject.reference", "Patient")} AS patient_id, r.status AS status,
         r.class.code AS class_code, r.class.system AS class_system,
         r.type[1].coding[1].code AS type_code, r.type[1].coding[1].display AS type_display,
         r.period.start AS start, r.period."end" AS "end",
         r.reasonCode[1].coding[1].code AS reason_code, r.reasonCode[1].coding[1].display AS reason_display,
         r.hospitalization.admitSource.coding[1].code AS admit_source_code,
         r.priority.coding[1].code AS priority_code,
         r.hospitalization.dischargeDisposition.coding[1].code AS discharge_disposition_code,
         r.hospitalization.dischargeDisposition.coding[1].display AS discharge_disposition,
         {ref_key("r.serviceProvider.reference", "Organization")} AS service_provider_id
  FROM {parsed("Encounter", _ENCOUNTER)})""",
    "conditions": f"""
SELECT r.id AS id, {ref_key("r.subject.reference", "Patient")} AS patient_id,
       {ref_key("r.encounter.reference", "Encounter")} AS encounter_id,
       r.code.coding[1].code AS code, r.code.coding[1].system AS code_system, r.code.coding[1].display AS display,
       {_coded(_SNOMED)} AS snomed_code, {_coded(_ICD10CM)} AS icd10cm_code,
       r.clinicalStatus.coding[1].code AS clinical_status, r.verificationStatus.coding[1].code AS verification_status,
       r.category[1].coding[1].code AS category, r.onsetDateTime AS onset, r.abatementDateTime AS abatement,
       r.recordedDate AS recorded_date
FROM {parsed("Condition", _CONDITION)}""",
    "documents": f"""
SELECT r.id AS id, {ref_key("r.subject.reference", "Patient")} AS patient_id,
       {ref_key("r.context.encounter[1].reference", "Encounter")} AS encounter_id,
       r.status AS status, r.docStatus AS doc_status,
       r.type.coding[1].code AS type_code, r.type.coding[1].system AS type_system,
       r.type.coding[1].display AS type_display, r.category[1].coding[1].code AS category, r.date AS date,
       r.context.period.start AS period_start, r.context.period."end" AS period_end,
       r.content[1].attachment.contentType AS content_type, r.content[1].attachment.size AS size,
       coalesce(len(list_filter(r.content, lambda c: c.attachment.data IS NOT NULL)) > 0, FALSE) AS has_inline_data
FROM {parsed("DocumentReference", _DOCUMENT)}""",
    "immunizations": f"""
SELECT r.id AS id, {ref_key("r.patient.reference", "Patient")} AS patient_id,
       {ref_key("r.encounter.reference", "Encounter")} AS encounter_id, r.status AS status,
       r.vaccineCode.coding[1].code AS vaccine_code, r.vaccineCode.coding[1].system AS vaccine_system,
       r.vaccineCode.coding[1].display AS vaccine_display, r.occurrenceDateTime AS occurrence,
       r.primarySource AS primary_source, r.lotNumber AS lot_number
FROM {parsed("Immunization", _IMMUNIZATION)}""",
    "medication_requests": f"""
SELECT r.id AS id, {ref_key("r.subject.reference", "Patient")} AS patient_id,
       {ref_key("r.encounter.reference", "Encounter")} AS encounter_id, r.status AS status, r.intent AS intent,
       r.authoredOn AS authored_on, r.medicationCodeableConcept.coding[1].code AS medication_code,
       r.medicationCodeableConcept.coding[1].system AS medication_system,
       r.medicationCodeableConcept.coding[1].display AS medication_display,
       {ref_key("r.medicationReference.reference", "Medication")} AS medication_id,
       r.reasonCode[1].coding[1].code AS reason_code,
       {ref_key("r.reasonReference[1].reference", "Condition")} AS reason_condition_id,
       r.dosageInstruction[1].text AS dosage_text, r.dosageInstruction[1].asNeededBoolean AS as_needed
FROM {parsed("MedicationRequest", _MEDICATION_REQUEST)}""",
    "observations": f"""
SELECT id, patient_id, encounter_id, status, category, effective, issued, v.panel_code AS panel_code,
       v.loinc_code AS loinc_code, v.display AS display, v.value AS value, v.unit AS unit,
       v.value_code AS value_code, v.value_display AS value_display, v.value_text AS value_text
FROM (
  SELECT r.id AS id, {ref_key("r.subject.reference", "Patient")} AS patient_id,
         {ref_key("r.encounter.reference", "Encounter")} AS encounter_id, r.status AS status,
         r.category[1].coding[1].code AS category, coalesce(r.effectiveDateTime, r.effectivePeriod.start) AS effective,
         r.issued AS issued,
         unnest(CASE WHEN coalesce(len(r.component), 0) = 0
                     THEN [{{'panel_code': NULL::VARCHAR, {_observation_values("r")}}}]
                     ELSE list_transform(r.component, lambda c: {{
                            'panel_code': list_filter(r.code.coding, lambda x: x.system = '{LOINC}'
                                                      AND x.code IS NOT NULL)[1].code,
                            {_observation_values("c")}}}) END) AS v
  FROM {parsed("Observation", _OBSERVATION)})""",
    "procedures": f"""
SELECT r.id AS id, {ref_key("r.subject.reference", "Patient")} AS patient_id,
       {ref_key("r.encounter.reference", "Encounter")} AS encounter_id, r.status AS status,
       r.code.coding[1].code AS code, r.code.coding[1].system AS code_system, r.code.coding[1].display AS display,
       coalesce(r.performedDateTime, r.performedPeriod.start) AS performed_start,
       r.performedPeriod."end" AS performed_end, r.reasonCode[1].coding[1].code AS reason_code,
       {ref_key("r.reasonReference[1].reference", "Condition")} AS reason_condition_id
FROM {parsed("Procedure", _PROCEDURE)}""",
    "allergies": f"""
SELECT r.id AS id, {ref_key("r.patient.reference", "Patient")} AS patient_id,
       r.clinicalStatus.coding[1].code AS clinical_status, r.verificationStatus.coding[1].code AS verification_status,
       r.type AS type, r.category[1] AS category, r.criticality AS criticality, r.code.coding[1].code AS code,
       r.code.coding[1].system AS code_system, r.code.coding[1].display AS display, r.onsetDateTime AS onset,
       r.recordedDate AS recorded_date, r.reaction[1].manifestation[1].coding[1].code AS reaction_code,
       r.reaction[1].manifestation[1].coding[1].display AS reaction_display,
       r.reaction[1].severity AS reaction_severity
FROM {parsed("AllergyIntolerance", _ALLERGY)}""",
    "family_history": f"""
SELECT r.id AS id, {ref_key("r.patient.reference", "Patient")} AS patient_id, r.status AS status, r.date AS date,
       r.relationship.coding[1].code AS relationship_code, r.relationship.coding[1].display AS relationship,
       c.code.coding[1].code AS condition_code, c.code.coding[1].system AS condition_system,
       c.code.coding[1].display AS condition_display, c.onsetAge.value AS onset_age,
       c.contributedToDeath AS contributed_to_death
FROM (SELECT r, unnest(CASE WHEN coalesce(len(r.condition), 0) = 0 THEN [NULL] ELSE r.condition END) AS c
      FROM {parsed("FamilyMemberHistory", _FAMILY)})""",
    "social_needs_screening": f"""
SELECT id, patient_id, encounter_id, status, category, effective, v.panel_code AS panel_code,
       v.question_code AS question_code, v.question AS question, v.answer_code AS answer_code,
       v.answer AS answer, v.answer_value AS answer_value
FROM (
  SELECT r.id AS id, {ref_key("r.subject.reference", "Patient")} AS patient_id,
         {ref_key("r.encounter.reference", "Encounter")} AS encounter_id, r.status AS status, s.code AS category,
         coalesce(r.effectiveDateTime, r.effectivePeriod.start) AS effective,
         unnest(CASE WHEN coalesce(len(r.component), 0) = 0
                     THEN [{{'panel_code': NULL::VARCHAR, {_answers("r")}}}]
                     ELSE list_transform(r.component, lambda c: {{'panel_code': r.code.coding[1].code,
                                                                 {_answers("c")}}}) END) AS v
  FROM (SELECT r, list_filter(flatten(list_transform(r.category, lambda c: c.coding)),
                              lambda x: x.code IN {_SOCIAL})[1] AS s
        FROM {parsed("Observation", _OBSERVATION)})
  WHERE s IS NOT NULL)""",
}


# -- a per-resource Python evaluator on fhirpathpy ----------------------------------------------------

REFERENCE_KEY = re.compile(r"([A-Za-z]+)/([A-Za-z0-9.-]+)(/_history/[A-Za-z0-9.-]+)?$")
SQL_COLUMN_URL = "https://carelake.dev/fhir/StructureDefinition/sql-column"
INTEGER_TYPES = {"integer", "integer64", "positiveInt", "unsignedInt"}


def _resource_key(inputs: list[Any]) -> list[Any]:
    return [r["id"] for r in inputs if isinstance(r, dict) and isinstance(r.get("id"), str)]


def _reference_key(inputs: list[Any], type_: Any = None) -> list[Any]:
    keys = []
    for r in inputs:
        match = REFERENCE_KEY.search(r.get("reference") or "") if isinstance(r, dict) else None
        if match and match.group(2) and (type_ is None or match.group(1) == type_.name):
            keys.append(match.group(2))
    return keys


def _seconds(text: str) -> int | None:
    """Whole seconds since the epoch, as DuckDB's date_diff('second') counts them (naive times are UTC)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    micros = (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    return abs(micros) // 1_000_000 * (1 if micros >= 0 else -1)  # truncated toward zero, as in C++


def _length_of_stay_days(row: dict[str, Any]) -> int | None:
    start, end = row.get("start"), row.get("end")
    if start is None or end is None or len(start) < 10 or len(end) < 10:
        return None
    return (dt.date.fromisoformat(end[:10]) - dt.date.fromisoformat(start[:10])).days


def _duration_hours(row: dict[str, Any]) -> float | None:
    start, end = row.get("start"), row.get("end")
    if start is None or end is None or len(start) <= 10 or len(end) <= 10:
        return None
    a, b = _seconds(start), _seconds(end)
    return None if a is None or b is None else (b - a) / 3600.0


# The carelake sql-column extension, evaluated in Python: the SQL of the standard views' columns, by name.
PYTHON_SQL_COLUMNS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "length_of_stay_days": _length_of_stay_days,
    "duration_hours": _duration_hours,
}


class Evaluator:
    """SQL-on-FHIR v2 over one resource at a time: select, column, forEach(OrNull), unionAll, where, constant."""

    def __init__(self, view: dict[str, Any]) -> None:
        import fhirpathpy
        from fhirpathpy.models import models

        self.view = view
        self._compile_fn = fhirpathpy.compile
        self.model = models["r4"]
        table = {
            "getResourceKey": {"fn": _resource_key, "arity": {0: []}},
            "getReferenceKey": {"fn": _reference_key, "arity": {0: [], 1: ["TypeSpecifier"]}},
        }
        self.options = {"userInvocationTable": table}
        self.raw_options = {**self.options, "returnRawData": True}
        self.constants = {
            c["name"]: next(v for k, v in c.items() if k.startswith("value")) for c in view.get("constant", [])
        }
        self.compiled: dict[tuple[str, bool], Callable[..., list[Any]]] = {}
        self.sql_columns = []
        for extension in view.get("extension", []):
            if extension.get("url") == SQL_COLUMN_URL:
                name = next(p["valueString"] for p in extension["extension"] if p["url"] == "name")
                if name not in PYTHON_SQL_COLUMNS:
                    raise SystemExit(f"no Python version of sql-column {name!r}")
                self.sql_columns.append((name, PYTHON_SQL_COLUMNS[name]))

    def _eval(self, path: str, focus: Any, context: dict[str, Any], *, raw: bool = False) -> list[Any]:
        fn = self.compiled.get((path, raw))
        if fn is None:
            fn = self._compile_fn(path, self.model, self.raw_options if raw else self.options)
            self.compiled[(path, raw)] = fn
        return fn(focus, context)

    def rows(self, resource: dict[str, Any]) -> list[dict[str, Any]]:
        context = {**self.constants, "resource": resource, "rootResource": resource}
        for clause in self.view.get("where", []):
            if self._eval(clause["path"], resource, context) != [True]:
                return []
        rows = self._body({"select": self.view["select"]}, resource, context)
        for row in rows:
            for name, fn in self.sql_columns:
                row[name] = fn(row)
        return rows

    def _select(self, node: dict[str, Any], focus: Any, context: dict[str, Any]) -> list[dict[str, Any]]:
        key = "forEach" if "forEach" in node else "forEachOrNull" if "forEachOrNull" in node else None
        if key is None:
            return self._body(node, focus, context)
        foci = self._eval(node[key], focus, context, raw=True) if focus is not None else []
        if not foci and key == "forEachOrNull":
            foci = [None]
        return [row for each in foci for row in self._body(node, each, context)]

    def _body(self, node: dict[str, Any], focus: Any, context: dict[str, Any]) -> list[dict[str, Any]]:
        parts: list[list[dict[str, Any]]] = []
        if node.get("column"):
            parts.append([{c["name"]: self._column(c, focus, context) for c in node["column"]}])
        parts += [self._select(sub, focus, context) for sub in node.get("select", [])]
        if "unionAll" in node:
            parts.append([row for branch in node["unionAll"] for row in self._select(branch, focus, context)])
        rows: list[dict[str, Any]] = [{}]
        for part in parts:
            rows = [{**a, **b} for a in rows for b in part]
        return rows

    def _column(self, column: dict[str, Any], focus: Any, context: dict[str, Any]) -> Any:
        values = self._eval(column["path"], focus, context) if focus is not None else []
        type_ = column.get("type", "string")
        converted = [_convert(v, type_) for v in values]
        if column.get("collection"):
            return converted
        if len(converted) > 1:
            raise ValueError(f"column {column['name']} gave several values")
        return converted[0] if converted else None


def _convert(value: Any, type_: str) -> Any:
    if type_ == "decimal":
        return float(value)
    if type_ in INTEGER_TYPES:
        return int(value)
    if type_ == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# -- measuring and comparing --------------------------------------------------------------------------


class PeakRSS:
    """This process's peak resident memory (DuckDB runs in it) while a block runs, sampled every 20 ms."""

    def __enter__(self) -> PeakRSS:
        import psutil

        self._process = psutil.Process()
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def mib(self) -> float:
        return self.peak / 2**20


def timed(fn: Callable[[], Any], repeat: int, setup: Callable[[], None] | None = None) -> tuple[float, float, Any]:
    """Best seconds of ``repeat`` runs, the peak RSS (MiB) over them, and the last result."""
    best, peak, result = math.inf, 0.0, None
    for _ in range(repeat):
        if setup:
            setup()
        with PeakRSS() as rss:
            started = time.perf_counter()
            result = fn()
            best = min(best, time.perf_counter() - started)
        peak = max(peak, rss.mib)
    return best, peak, result


@contextmanager
def comparer() -> Iterator[Any]:
    import duckdb

    con = duckdb.connect(config={"memory_limit": "2GB", "threads": 2})
    con.execute("SET TimeZone = 'UTC'")
    try:
        yield con
    finally:
        con.close()


def compare(con: Any, left: str, right: str, names: tuple[str, str]) -> list[str]:
    """Problems found comparing two relations (same columns, same rows as a multiset); empty when equal."""
    schemas = [[(c[0], c[1]) for c in con.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()] for rel in (left, right)]
    if schemas[0] != schemas[1]:
        return [f"columns differ: {names[0]} {schemas[0]} vs {names[1]} {schemas[1]}"]

    def minus(a: str, b: str, select: str = "*") -> str:
        return f"(SELECT {select} FROM {a} EXCEPT ALL SELECT {select} FROM {b})"

    only = [
        con.execute(f"SELECT count(*) FROM {minus(a, b)}").fetchall()[0][0] for a, b in ((left, right), (right, left))
    ]
    if only == [0, 0]:
        return []
    doubles = [name for name, type_ in schemas[0] if type_ == "DOUBLE"]
    if doubles:  # equal within 1e-9?
        rounded = "* REPLACE (" + ", ".join(f'round("{d}", 9) AS "{d}"' for d in doubles) + ")"
        pairs = ((left, right), (right, left))
        if all(con.execute(f"SELECT count(*) FROM {minus(a, b, rounded)}").fetchall()[0][0] == 0 for a, b in pairs):
            return []
    problems = [f"{only[0]:,} row(s) only in {names[0]}, {only[1]:,} only in {names[1]}"]
    a_rows = con.execute(f"SELECT * FROM {minus(left, right)} LIMIT 200").fetch_arrow_table().to_pylist()
    b_rows = con.execute(f"SELECT * FROM {minus(right, left)} LIMIT 200").fetch_arrow_table().to_pylist()
    shown = 0
    for row in a_rows:
        candidates = [b for b in b_rows if b.get("id") == row.get("id")]
        if not candidates:
            continue
        other = min(candidates, key=lambda b: sum(row[k] != b[k] for k in row))
        diff = "; ".join(f"{k}: {names[0]}={row[k]!r} {names[1]}={other[k]!r}" for k in row if row[k] != other[k])
        problems.append(f"id {row.get('id')}: {diff}")
        shown += 1
        if shown == 5:
            break
    if not shown:
        problems += [f"only in {names[0]}: {r}" for r in a_rows[:3]] + [f"only in {names[1]}: {r}" for r in b_rows[:3]]
    return problems


def _parquet(files: list[Path]) -> str:
    return "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "])"


# -- the run ------------------------------------------------------------------------------------------

HEADER = (
    f"{'view':<24}{'rows':>11}{'carelake s':>12}{'rows/s':>12}{'hand s':>9}{'ratio':>7}"
    f"{'eval rows/s':>13}{'speed-up':>10}{'RSS MiB':>9}{'hand RSS':>10}  equal"
)


def run_view_benchmark(lake: Any, view: dict[str, Any], args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """One view three ways: figures, and the problems found comparing the outputs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import carelake.fhir as fhir
    from carelake.errors import CarelakeError

    name, resource_type = view["name"], view["resource"]
    problems: list[str] = []
    r: dict[str, Any] = {"resource": resource_type}
    r["resources"] = lake.sql(f"SELECT count(*) AS n FROM {resource_type}").column("n")[0].as_py()

    ours: list[Path] | None = None
    try:
        seconds, rss, counts = timed(lambda: fhir.materialize_views([view], lake=lake, full=True), args.repeat)
        ours = lake.files(name)
        r.update(rows=counts[name], carelake_seconds=seconds, carelake_peak_rss_mib=rss)
        r["carelake_rows_s"] = counts[name] / seconds
    except CarelakeError as exc:
        problems.append(f"carelake failed: {exc}")

    hand_dir = args.out / "views-hand" / name

    def hand() -> list[Path]:
        eng = lake.connect("duckdb")
        try:
            return eng.write_parquet(HAND_SQL[name], hand_dir)
        finally:
            eng.close()

    hand_seconds, hand_rss, hand_files = timed(hand, args.repeat, setup=lambda: shutil.rmtree(hand_dir, True))
    hand_rows = sum(pq.read_metadata(f).num_rows for f in hand_files)
    r.update(hand_rows=hand_rows, hand_seconds=hand_seconds, hand_rows_s=hand_rows / hand_seconds)
    r["hand_peak_rss_mib"] = hand_rss
    if ours is not None:
        r["ratio_carelake_hand"] = r["carelake_seconds"] / hand_seconds

    sample = lake.sql(f"SELECT id, resource FROM {resource_type} ORDER BY id LIMIT {args.sample}")
    texts = sample.column("resource").to_pylist()
    evaluator = Evaluator(view)
    started = time.perf_counter()
    eval_rows = [row for text in texts for row in evaluator.rows(json.loads(text))]
    eval_seconds = time.perf_counter() - started
    r.update(evaluator_sample_resources=len(texts), evaluator_rows=len(eval_rows), evaluator_seconds=eval_seconds)
    r["evaluator_rows_s"] = len(eval_rows) / eval_seconds
    r["evaluator_resources_s"] = len(texts) / eval_seconds
    if ours is not None and eval_rows:
        r["speedup_carelake_evaluator"] = r["carelake_rows_s"] / r["evaluator_rows_s"]

    # With carelake failed, the evaluator still checks the hand SQL.
    reference, label = (ours, "carelake") if ours is not None else (hand_files, "hand")
    with comparer() as con:
        if ours is not None:
            found = compare(con, _parquet(ours), _parquet(hand_files), ("carelake", "hand"))
            problems += [f"carelake vs hand SQL: {p}" for p in found]
        con.register("eval_rows", pa.Table.from_pylist(eval_rows, schema=pq.read_schema(reference[0])))
        con.register("sample_ids", sample.select(["id"]))
        subset = f"(SELECT * FROM {_parquet(reference)} WHERE id IN (SELECT id FROM sample_ids))"
        found = compare(con, subset, "eval_rows", (label, "evaluator"))
        problems += [f"{label} vs evaluator (sample): {p}" for p in found]
    r["equal"] = not problems
    return r, problems


def _figure(value: float | None, spec: str, width: int) -> str:
    return f"{value:>{width}{spec}}" if value is not None else f"{'failed':>{width}}"


def run_views(lake: Any, args: argparse.Namespace, problems: list[str]) -> dict[str, dict[str, Any]]:
    import carelake.fhir as fhir

    results: dict[str, dict[str, Any]] = {}
    print(HEADER, flush=True)
    for view in fhir.standard_views():
        name = view["name"]
        if args.only and name not in args.only:
            continue
        r, found = run_view_benchmark(lake, view, args)
        results[name] = r
        problems += [f"{name}: {p}" for p in found]
        print(
            f"{name:<24}{r.get('rows', r['hand_rows']):>11,}{_figure(r.get('carelake_seconds'), '.2f', 12)}"
            f"{_figure(r.get('carelake_rows_s'), ',.0f', 12)}{r['hand_seconds']:>9.2f}"
            f"{_figure(r.get('ratio_carelake_hand'), '.2f', 7)}{r['evaluator_rows_s']:>13,.0f}"
            f"{_figure(r.get('speedup_carelake_evaluator'), '.0f', 10)}"
            f"{_figure(r.get('carelake_peak_rss_mib'), ',.0f', 9)}{r['hand_peak_rss_mib']:>10,.0f}"
            f"  {'yes' if r['equal'] else 'NO'}",
            flush=True,
        )
        for p in found:
            print(f"    MISMATCH {p}", flush=True)
    shutil.rmtree(args.out / "views-hand", ignore_errors=True)
    return results


def run_interactive(lake: Any, repeat: int, problems: list[str]) -> dict[str, dict[str, Any]]:
    """run_view over all Observations, one LOINC code and the whole view: best of 3 (or ``repeat``) and the first.

    Runs stop once they add up to 10 s: such a view is not interactive, and the first run says so."""
    import carelake.fhir as fhir
    from carelake.errors import CarelakeError

    observations = next(v for v in fhir.standard_views() if v["name"] == "observations")
    top = lake.sql(
        "SELECT json_extract_string(resource, '$.code.coding[0].code') AS code, count(*) AS n FROM Observation "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
    ).to_pylist()[0]["code"]
    one_code = {
        **observations,
        "where": [{"path": f"code.coding.where(system = %loinc and code = '{top}').exists()"}],
    }
    results = {}
    for label, view in ((f"observations, LOINC {top}", one_code), ("observations, all", observations)):
        times = []
        try:
            while len(times) < max(repeat, 3) and sum(times) < 10:  # a slow answer is not repeated
                with PeakRSS() as rss:
                    started = time.perf_counter()
                    table = fhir.run_view(view, lake=lake)
                    times.append(time.perf_counter() - started)
        except CarelakeError as exc:
            problems.append(f"run_view {label} failed: {exc}")
            print(f"run_view {label:<34} FAILED: {exc}", flush=True)
            continue
        results[label] = {
            "rows": table.num_rows,
            "seconds_best": min(times),
            "seconds_first": times[0],
            "peak_rss_mib": rss.mib,
        }
        print(
            f"run_view {label:<34}{table.num_rows:>11,} rows  best {min(times):6.2f} s  first {times[0]:6.2f} s  "
            f"peak RSS {rss.mib:,.0f} MiB (target < 2 s)",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=20_000, help="resources per view for the Python evaluator")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per view (best is reported)")
    parser.add_argument("--memory", help="DuckDB memory limit for carelake and hand SQL alike (default carelake's)")
    parser.add_argument("--only", nargs="*", help="only these views")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.memory:
        os.environ["CARELAKE_DUCKDB_MEMORY"] = args.memory

    import carelake as cl
    from carelake.engine._duckdb import DEFAULT_MEMORY_LIMIT

    lake_dir, info = benchmark_lake(args.out, args.observations)
    lake = cl.open_lake(lake_dir, create=False)
    by_type = {
        r["resource_type"]: r["n"]
        for r in lake.sql(
            "SELECT resource_type, count(*) AS n FROM resources GROUP BY 1 ORDER BY 2 DESC, 1"
        ).to_pylist()
    }
    print(
        f"lake: {lake_dir} {sum(by_type.values()):,} resources ({', '.join(f'{t} {n:,}' for t, n in by_type.items())})",
        flush=True,
    )
    memory = os.environ.get("CARELAKE_DUCKDB_MEMORY", DEFAULT_MEMORY_LIMIT)
    print(f"DuckDB memory limit {memory}, {os.cpu_count()} CPUs; evaluator sample {args.sample:,} per view")
    lake.sql("SELECT count(*), sum(length(resource)) FROM resources")  # warm the page cache before timing

    problems: list[str] = []
    results = run_views(lake, args, problems)
    interactive = run_interactive(lake, args.repeat, problems) if not args.only or "observations" in args.only else {}

    timed_views = [r for r in results.values() if "ratio_carelake_hand" in r]
    if timed_views:
        worst = max(timed_views, key=lambda r: r["ratio_carelake_hand"])
        total = sum(r["carelake_seconds"] for r in timed_views) / sum(r["hand_seconds"] for r in timed_views)
        print(
            f"carelake / hand SQL: worst {worst['ratio_carelake_hand']:.2f}x, all views {total:.2f}x (target <= 1.5x)"
        )
        speedups = [r["speedup_carelake_evaluator"] for r in timed_views if "speedup_carelake_evaluator" in r]
        print(f"carelake / evaluator: lowest {min(speedups):.0f}x (target >= 20x)")
        print(
            f"peak RSS: carelake {max(r['carelake_peak_rss_mib'] for r in timed_views):,.0f} MiB, "
            f"hand SQL {max(r['hand_peak_rss_mib'] for r in results.values()):,.0f} MiB"
        )
    (args.out / "views.json").write_text(
        json.dumps(
            {
                "lake": info,
                "by_type": by_type,
                "duckdb_memory_limit": memory,
                "cpus": os.cpu_count(),
                "views": results,
                "interactive": interactive,
                "problems": problems,
            },
            indent=1,
        )
    )
    if problems:
        print(f"{len(problems)} problem(s):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
