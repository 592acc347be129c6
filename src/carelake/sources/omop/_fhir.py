"""OMOP CDM rows as FHIR R4 resources: how OMOP data meets FHIR data in the lake (docs/interop.md).

Each clinical row becomes one resource whose id carries the OMOP table and id (``omop-condition-1``), so the
OMOP export gives the same rows back. A concept is coded twice: in its own vocabulary (SNOMED, LOINC, RxNorm, ...
from the CDM's CONCEPT table) so FHIR views, value sets and features find it, and as the OMOP concept id
(``https://fhir-terminology.ohdsi.org``) so nothing is lost. The type concept and source concept, which FHIR has
no element for, ride in carelake extensions. The SQL joins concepts; Python only shapes the JSON, batch by batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import orjson

from carelake.fhir._events import VOCABULARIES

if TYPE_CHECKING:
    from carelake.engine import Engine
    from carelake.sources.fhir._staging import StagingWriter

OMOP_SYSTEM = "https://fhir-terminology.ohdsi.org"
IDENTIFIER_SYSTEM = "https://ohdsi.org/omop/"  # + person_source_value: the source system's patient identifier
EXTENSION = "https://carelake.dev/fhir/StructureDefinition/omop-"  # + what it carries
UCUM = "http://unitsofmeasure.org"
BATCH_ROWS = 20_000

# The prefix of the FHIR id of each mapped table's resources: ``omop-visit-65475``.
ID_PREFIX = {
    "person": "omop-person-",
    "visit_occurrence": "omop-visit-",
    "condition_occurrence": "omop-condition-",
    "drug_exposure": "omop-drug-",
    "procedure_occurrence": "omop-procedure-",
    "measurement": "omop-measurement-",
    "observation": "omop-observation-",
}
# Visit concepts as FHIR encounter classes (v3 ActCode); other visits are ambulatory.
VISIT_CLASS = {9201: "IMP", 262: "IMP", 9203: "EMER", 9202: "AMB", 581476: "HH", 5083: "VR", 581478: "AMB"}
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# Discharge destinations as HL7 discharge dispositions, where one fits (readmission criteria read these).
DISPOSITION = {4216643: "exp", 8536: "home", 8863: "snf", 8717: "hosp", 8920: "hosp", 8971: "rehab", 8546: "hosp"}
DISPOSITION_SYSTEM = "http://terminology.hl7.org/CodeSystem/discharge-disposition"
GENDER = {8507: "male", 8532: "female", 8570: "other", 8551: "unknown"}
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-"
OMB = "urn:oid:2.16.840.1.113883.6.238"
RACE = {
    8527: ("2106-3", "White"),
    8516: ("2054-5", "Black or African American"),
    8515: ("2028-9", "Asian"),
    8657: ("1002-5", "American Indian or Alaska Native"),
    8557: ("2076-8", "Native Hawaiian or Other Pacific Islander"),
}
ETHNICITY = {38003563: ("2135-2", "Hispanic or Latino"), 38003564: ("2186-5", "Not Hispanic or Latino")}


def write_resources(eng: Engine, writer: StagingWriter, tables: set[str], version: str) -> None:
    """Stage this run's new clinical rows as FHIR JSON, one resource per row, located at the OMOP row."""
    from carelake.sources.omop._ingest import PREFIX

    for row in eng.query("SELECT * FROM omop_files ORDER BY file_index").to_pylist():
        writer.add_file(row["file_index"], row["source_file"], row["source_sha256"])
    concept_sources = [f"SELECT * FROM {n}" for n in (f"{PREFIX}concept", "new_omop_concept") if _has(eng, n)]
    concepts = " UNION ALL ".join(concept_sources) or (
        "SELECT CAST(NULL AS BIGINT) AS concept_id, CAST(NULL AS VARCHAR) AS concept_name, "
        "CAST(NULL AS VARCHAR) AS vocabulary_id, CAST(NULL AS VARCHAR) AS concept_code WHERE FALSE"
    )
    eng.create_view(
        "cl_omop_concepts",
        f"SELECT DISTINCT concept_id, concept_name, vocabulary_id, concept_code FROM ({concepts}) c",
    )
    for table, (build, concept_columns) in _MAPPINGS.items():
        if table not in tables:
            continue
        sql = _joined_sql(table, concept_columns)
        if table == "person":
            sql = _person_sql(eng, version)
        rows = _person_rows(_rows(eng, sql)) if table == "person" else _rows(eng, sql)
        for record in rows:
            resource = build(record)
            writer.add_record(record["file_index"], record["cl_line"], None, None, orjson.dumps(resource).decode())


def _has(eng: Engine, name: str) -> bool:
    try:
        eng.query(f"SELECT 1 FROM {name} LIMIT 0")
    except Exception:
        return False
    return True


def _joined_sql(table: str, concept_columns: tuple[str, ...]) -> str:
    joins, selects = [], []
    for i, column in enumerate(concept_columns):
        joins.append(f"LEFT JOIN cl_omop_concepts c{i} ON c{i}.concept_id = t.{column}")
        selects.append(
            f"c{i}.vocabulary_id AS {column}_vocabulary, c{i}.concept_code AS {column}_code, "
            f"c{i}.concept_name AS {column}_name"
        )
    return f"""
        SELECT t.*, f.file_index, {", ".join(selects)}
        FROM new_omop_{table} t JOIN omop_files f ON f.source_file = t.cl_source_file
        {" ".join(joins)}
        ORDER BY f.file_index, t.cl_line"""


def _person_sql(eng: Engine, version: str) -> str:
    deaths = [f"SELECT person_id, death_date, death_datetime FROM {n}" for n in ("omop_death", "new_omop_death")]
    deaths = [d for d, n in zip(deaths, ("omop_death", "new_omop_death"), strict=True) if _has(eng, n)]
    death = " UNION ALL ".join(deaths) or (
        "SELECT CAST(NULL AS BIGINT) AS person_id, CAST(NULL AS DATE) AS death_date, "
        "CAST(NULL AS TIMESTAMP) AS death_datetime WHERE FALSE"
    )
    periods = [
        f"SELECT person_id, observation_period_id, observation_period_start_date, observation_period_end_date, "
        f"period_type_concept_id FROM {n}"
        for n in ("omop_observation_period", "new_omop_observation_period")
        if _has(eng, n)
    ]
    eng.create_view(
        "cl_omop_periods",
        " UNION ALL ".join(periods)
        or "SELECT CAST(NULL AS BIGINT) AS person_id, CAST(NULL AS BIGINT) AS observation_period_id, "
        "CAST(NULL AS DATE) AS observation_period_start_date, CAST(NULL AS DATE) AS observation_period_end_date, "
        "CAST(NULL AS BIGINT) AS period_type_concept_id WHERE FALSE",
    )
    return f"""
        SELECT t.*, f.file_index, d.death_date, d.death_datetime,
               p.observation_period_id, p.observation_period_start_date, p.observation_period_end_date,
               p.period_type_concept_id,
               g.concept_name AS gender_name, r.concept_name AS race_name, e.concept_name AS ethnicity_name
        FROM new_omop_person t JOIN omop_files f ON f.source_file = t.cl_source_file
        LEFT JOIN (SELECT person_id, min(death_date) AS death_date, min(death_datetime) AS death_datetime
                   FROM ({death}) x GROUP BY person_id) d ON d.person_id = t.person_id
        LEFT JOIN cl_omop_periods p ON p.person_id = t.person_id
        LEFT JOIN cl_omop_concepts g ON g.concept_id = t.gender_concept_id
        LEFT JOIN cl_omop_concepts r ON r.concept_id = t.race_concept_id
        LEFT JOIN cl_omop_concepts e ON e.concept_id = t.ethnicity_concept_id
        ORDER BY t.person_id, p.observation_period_start_date, p.observation_period_id"""


def _rows(eng: Engine, sql: str) -> Iterator[dict[str, Any]]:
    """The query's rows in batches, so memory holds one batch (the engine writes, Arrow reads back)."""
    import tempfile
    from pathlib import Path

    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        for file in eng.write_parquet(sql, Path(tmp) / "rows"):
            for batch in pq.ParquetFile(file).iter_batches(BATCH_ROWS):
                yield from batch.to_pylist()


def _person_rows(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Fold a person's observation-period rows (one per period, from the join) into one record."""
    current: dict[str, Any] | None = None
    for row in rows:
        if current is None or current["person_id"] != row["person_id"]:
            if current is not None:
                yield current
            current = {**row, "periods": []}
        if row["observation_period_start_date"] is not None:
            current["periods"].append(row)
    if current is not None:
        yield current


# --- shaping -------------------------------------------------------------------------------------------------


def _time(day: date | None, moment: datetime | None) -> str | None:
    """A FHIR dateTime: the datetime when the CDM has one (taken as UTC), else the date."""
    if moment is not None:
        return moment.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return day.isoformat() if day is not None else None


class _Done(dict):  # type: ignore[type-arg]
    """A JSON object built without empty members: ``_clean`` passes it through instead of walking it again."""


def _concept(record: dict[str, Any], column: str, text: str | None = None) -> dict[str, Any] | None:
    """A CodeableConcept for a concept column: the vocabulary's code, then the OMOP concept id."""
    concept_id = record.get(column)
    codings = []
    vocabulary, code = record.get(f"{column}_vocabulary"), record.get(f"{column}_code")
    if vocabulary and code and vocabulary in VOCABULARIES:
        coding = _Done(system=VOCABULARIES[vocabulary], code=code)
        if display := record.get(f"{column}_name"):
            coding["display"] = display
        codings.append(coding)
    if concept_id:
        codings.append(_Done(system=OMOP_SYSTEM, code=str(concept_id)))
    if not codings and not text:
        return None
    concept = _Done(coding=codings) if codings else _Done()
    if text:
        concept["text"] = text
    return concept


def _omop_extension(what: str, concept_id: int | None) -> list[dict[str, Any]]:
    if not concept_id:
        return []
    return [_Done(url=EXTENSION + what, valueCoding={"system": OMOP_SYSTEM, "code": str(concept_id)})]


def _base(resource_type: str, table: str, key: int, record: dict[str, Any]) -> dict[str, Any]:
    """The resource's id carries the OMOP table and id (``omop-visit-65475``): a database key, like the FHIR id, so
    de-identification pseudonymises it with the id, and it is not repeated as a business identifier."""
    return {"resourceType": resource_type, "id": f"{ID_PREFIX[table]}{key}"}


def omop_id_sql(id_column: str, table: str) -> str:
    """SQL for the OMOP id (as text) in a resource id written by ingestion for ``table``; NULL for any other id."""
    prefix = ID_PREFIX[table]
    return f"(CASE WHEN {id_column} LIKE '{prefix}%' THEN substr({id_column}, {len(prefix) + 1}) END)"


def _reference(table: str, key: int | None) -> dict[str, str] | None:
    if not key:
        return None
    kind = "Patient" if table == "person" else "Encounter"
    return _Done(reference=f"{kind}/{ID_PREFIX[table]}{key}")


_EMPTY = object()


def _clean(value: Any) -> Any:
    """Drop empty members: FHIR JSON has no nulls, empty strings, arrays or objects."""
    if type(value) is dict:
        out = {}
        for key, member in value.items():
            if (kept := _kept(member)) is not _EMPTY:
                out[key] = kept
        return out
    if type(value) is list:
        return [kept for member in value if (kept := _kept(member)) is not _EMPTY]
    return value


def _kept(member: Any) -> Any:
    """A member cleaned, or ``_EMPTY`` when nothing of it is left."""
    kind = type(member)
    if kind is dict or kind is list:
        member = _clean(member)
        return member if member else _EMPTY
    return _EMPTY if member is None or member == "" else member


def _patient(r: dict[str, Any]) -> dict[str, Any]:
    resource = _base("Patient", "person", r["person_id"], r)
    if r.get("person_source_value"):
        resource["identifier"] = [
            {"system": IDENTIFIER_SYSTEM + "person_source_value", "value": r["person_source_value"]}
        ]
    extensions = [
        _omb_extension(kind, *table[r[f"{kind}_concept_id"]])
        for kind, table in (("race", RACE), ("ethnicity", ETHNICITY))
        if r.get(f"{kind}_concept_id") in table
    ]
    for concept in ("gender", "race", "ethnicity"):
        extensions += _omop_extension(f"{concept}-concept", r.get(f"{concept}_concept_id"))
        if r.get(f"{concept}_source_value"):
            extensions.append(
                {"url": EXTENSION + f"{concept}-source-value", "valueString": r[f"{concept}_source_value"]}
            )
    for period in r["periods"]:
        extensions.append(
            {
                "url": EXTENSION + "observation-period",
                "extension": [
                    {"url": "id", "valueString": str(period["observation_period_id"])},
                    {
                        "url": "period",
                        "valuePeriod": {
                            "start": _time(period["observation_period_start_date"], None),
                            "end": _time(period["observation_period_end_date"], None),
                        },
                    },
                    *_omop_extension("type-concept", period["period_type_concept_id"]),
                ],
            }
        )
    resource["extension"] = extensions
    resource["gender"] = GENDER.get(r["gender_concept_id"], "unknown")
    if r.get("birth_datetime") is not None:
        resource["birthDate"] = r["birth_datetime"].date().isoformat()
    elif r.get("month_of_birth") and r.get("day_of_birth"):
        resource["birthDate"] = f"{r['year_of_birth']:04d}-{r['month_of_birth']:02d}-{r['day_of_birth']:02d}"
    elif r.get("month_of_birth"):
        resource["birthDate"] = f"{r['year_of_birth']:04d}-{r['month_of_birth']:02d}"
    else:
        resource["birthDate"] = f"{r['year_of_birth']:04d}"
    resource["deceasedDateTime"] = _time(r.get("death_date"), r.get("death_datetime"))
    return _clean(resource)


def _omb_extension(kind: str, code: str, display: str) -> dict[str, Any]:
    """The US Core race or ethnicity extension with its OMB category (what the standard patients view reads)."""
    return _Done(
        url=US_CORE + kind,
        extension=[
            {"url": "ombCategory", "valueCoding": {"system": OMB, "code": code, "display": display}},
            {"url": "text", "valueString": display},
        ],
    )


def _encounter(r: dict[str, Any]) -> dict[str, Any]:
    resource = _base("Encounter", "visit_occurrence", r["visit_occurrence_id"], r)
    discharged = r.get("discharge_to_concept_id") or r.get("discharged_to_concept_id")
    admitted = r.get("admitting_source_concept_id") or r.get("admitted_from_concept_id")
    disposition = _concept(
        r, "discharge_to_concept_id" if "discharge_to_concept_id" in r else "discharged_to_concept_id"
    )
    if discharged in DISPOSITION:
        disposition = disposition or {"coding": []}
        disposition["coding"].insert(0, {"system": DISPOSITION_SYSTEM, "code": DISPOSITION[discharged]})
    resource.update(
        extension=_omop_extension("type-concept", r["visit_type_concept_id"]),
        status="finished",
        type=[_concept(r, "visit_concept_id", r.get("visit_source_value"))],
        subject=_reference("person", r["person_id"]),
        period={
            "start": _time(r["visit_start_date"], r.get("visit_start_datetime")),
            "end": _time(r["visit_end_date"], r.get("visit_end_datetime")),
        },
        hospitalization={
            "admitSource": _concept(
                r, "admitting_source_concept_id" if "admitting_source_concept_id" in r else "admitted_from_concept_id"
            ),
            "dischargeDisposition": disposition,
        }
        if admitted or discharged
        else None,
    )
    resource["class"] = {"system": ACT_CODE, "code": VISIT_CLASS.get(r["visit_concept_id"], "AMB")}
    return _clean(resource)


def _condition(r: dict[str, Any]) -> dict[str, Any]:
    resource = _base("Condition", "condition_occurrence", r["condition_occurrence_id"], r)
    resolved = r.get("condition_end_date") is not None
    resource.update(
        extension=[
            *_omop_extension("type-concept", r["condition_type_concept_id"]),
            *_omop_extension("source-concept", r.get("condition_source_concept_id")),
        ],
        clinicalStatus={
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "resolved" if resolved else "active",
                }
            ]
        },
        verificationStatus={
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]
        },
        code=_merge(
            _concept(r, "condition_concept_id", r.get("condition_source_value")),
            _concept(r, "condition_source_concept_id"),
        ),
        subject=_reference("person", r["person_id"]),
        encounter=_reference("visit_occurrence", r.get("visit_occurrence_id")),
        onsetDateTime=_time(r["condition_start_date"], r.get("condition_start_datetime")),
        abatementDateTime=_time(r.get("condition_end_date"), r.get("condition_end_datetime")),
    )
    return _clean(resource)


def _merge(first: dict[str, Any] | None, second: dict[str, Any] | None) -> dict[str, Any] | None:
    """One CodeableConcept with the standard concept's codings, then the source concept's vocabulary code."""
    if first is None:
        return second
    if second is not None:
        seen = {(c["system"], c["code"]) for c in first.get("coding", [])}
        extra = [
            c for c in second.get("coding", []) if c["system"] != OMOP_SYSTEM and (c["system"], c["code"]) not in seen
        ]
        first = _Done(first, coding=[*first.get("coding", []), *extra])
    return first


def _drug(r: dict[str, Any]) -> dict[str, Any]:
    """A drug exposure: a vaccine (CVX) as an Immunization, anything else as a MedicationRequest."""
    medication = _merge(
        _concept(r, "drug_concept_id", r.get("drug_source_value")), _concept(r, "drug_source_concept_id")
    )
    start = _time(r["drug_exposure_start_date"], r.get("drug_exposure_start_datetime"))
    extensions = [
        *_omop_extension("type-concept", r["drug_type_concept_id"]),
        *_omop_extension("source-concept", r.get("drug_source_concept_id")),
    ]
    if r.get("drug_concept_id_vocabulary") == "CVX":
        resource = _base("Immunization", "drug_exposure", r["drug_exposure_id"], r)
        resource.update(
            extension=extensions,
            status="completed",
            vaccineCode=medication,
            patient=_reference("person", r["person_id"]),
            encounter=_reference("visit_occurrence", r.get("visit_occurrence_id")),
            occurrenceDateTime=start,
            lotNumber=r.get("lot_number"),
            route=_concept(r, "route_concept_id", r.get("route_source_value")),
        )
        return _clean(resource)
    resource = _base("MedicationRequest", "drug_exposure", r["drug_exposure_id"], r)
    end = _time(r.get("drug_exposure_end_date"), r.get("drug_exposure_end_datetime"))
    resource.update(
        extension=extensions,
        status="completed",
        intent="order",
        medicationCodeableConcept=medication,
        subject=_reference("person", r["person_id"]),
        encounter=_reference("visit_occurrence", r.get("visit_occurrence_id")),
        authoredOn=start,
        dosageInstruction=[
            {
                "text": r.get("sig"),
                "timing": {"repeat": {"boundsPeriod": {"start": start, "end": end}}},
                "route": _concept(r, "route_concept_id", r.get("route_source_value")),
            }
        ],
        dispenseRequest={
            "numberOfRepeatsAllowed": r.get("refills"),
            "quantity": {"value": r.get("quantity")} if r.get("quantity") is not None else None,
            "expectedSupplyDuration": {"value": r["days_supply"], "unit": "days", "system": UCUM, "code": "d"}
            if r.get("days_supply") is not None
            else None,
        },
    )
    return _clean(resource)


def _procedure(r: dict[str, Any]) -> dict[str, Any]:
    resource = _base("Procedure", "procedure_occurrence", r["procedure_occurrence_id"], r)
    start = _time(r["procedure_date"], r.get("procedure_datetime"))
    end = _time(r.get("procedure_end_date"), r.get("procedure_end_datetime"))
    resource.update(
        extension=[
            *_omop_extension("type-concept", r["procedure_type_concept_id"]),
            *_omop_extension("source-concept", r.get("procedure_source_concept_id")),
        ],
        status="completed",
        code=_merge(
            _concept(r, "procedure_concept_id", r.get("procedure_source_value")),
            _concept(r, "procedure_source_concept_id"),
        ),
        subject=_reference("person", r["person_id"]),
        encounter=_reference("visit_occurrence", r.get("visit_occurrence_id")),
    )
    if end:
        resource["performedPeriod"] = {"start": start, "end": end}
    else:
        resource["performedDateTime"] = start
    return _clean(resource)


def _value(r: dict[str, Any], unit_column: str) -> dict[str, Any]:
    """An observation's value: a number (with its UCUM unit), a concept, or a string."""
    if r.get("value_as_number") is not None:
        unit = r.get(f"{unit_column}_code") if r.get(f"{unit_column}_vocabulary") == "UCUM" else None
        return {
            "valueQuantity": {
                "value": r["value_as_number"],
                "unit": r.get("unit_source_value") or unit,
                "system": UCUM if unit else None,
                "code": unit,
            }
        }
    if r.get("value_as_concept_id"):
        return {"valueCodeableConcept": _concept(r, "value_as_concept_id", r.get("value_source_value"))}
    if r.get("value_as_string"):
        return {"valueString": r["value_as_string"]}
    return {}


def _observation(table: str, category: str | None) -> Callable[[dict[str, Any]], dict[str, Any]]:
    prefix = "measurement" if table == "measurement" else "observation"

    def build(r: dict[str, Any]) -> dict[str, Any]:
        resource = _base("Observation", table, r[f"{prefix}_id"], r)
        resource.update(
            extension=[
                *_omop_extension("type-concept", r[f"{prefix}_type_concept_id"]),
                *_omop_extension("source-concept", r.get(f"{prefix}_source_concept_id")),
            ],
            status="final",
            category=[
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}
            ]
            if category
            else None,
            code=_merge(
                _concept(r, f"{prefix}_concept_id", r.get(f"{prefix}_source_value")),
                _concept(r, f"{prefix}_source_concept_id"),
            ),
            subject=_reference("person", r["person_id"]),
            encounter=_reference("visit_occurrence", r.get("visit_occurrence_id")),
            effectiveDateTime=_time(r[f"{prefix}_date"], r.get(f"{prefix}_datetime")),
            **_value(r, "unit_concept_id"),
        )
        if r.get("range_low") is not None or r.get("range_high") is not None:
            resource["referenceRange"] = [
                {"low": {"value": r.get("range_low")}, "high": {"value": r.get("range_high")}}
            ]
        return _clean(resource)

    return build


# table -> (builder, concept columns joined to the vocabulary)
_MAPPINGS: dict[str, tuple[Callable[[dict[str, Any]], dict[str, Any]], tuple[str, ...]]] = {
    "person": (_patient, ()),
    "visit_occurrence": (_encounter, ("visit_concept_id",)),
    "condition_occurrence": (_condition, ("condition_concept_id", "condition_source_concept_id")),
    "drug_exposure": (_drug, ("drug_concept_id", "drug_source_concept_id", "route_concept_id")),
    "procedure_occurrence": (_procedure, ("procedure_concept_id", "procedure_source_concept_id")),
    "measurement": (
        _observation("measurement", "laboratory"),
        ("measurement_concept_id", "measurement_source_concept_id", "unit_concept_id", "value_as_concept_id"),
    ),
    "observation": (
        _observation("observation", None),
        ("observation_concept_id", "observation_source_concept_id", "unit_concept_id", "value_as_concept_id"),
    ),
}
