"""The lake as an OMOP CDM v5.4 database: ten tables, written as CSV or Parquet, from the lake's FHIR resources.

What the export writes into ``out`` (a new or empty folder, or a previous OMOP export, which it replaces)::

    person, observation_period, visit_occurrence, condition_occurrence, drug_exposure, procedure_occurrence,
    measurement, observation, death, cdm_source   one file each (<table>.csv or .parquet), the columns, order and
                                                  types of ``cdm_tables("5.4")``
    unmapped_codes.csv                            (table, system, code, rows): codes that got concept 0
    .carelake-omop-export.json                    the marker that lets a later export replace this one

Everything is read from FHIR through the ViewDefinitions ``interop/views/omop_*.json``, so a lake ingested from
FHIR, one ingested from an OMOP CDM (``ingest_omop``) and a de-identified lake export alike. Resources that OMOP
ingestion wrote (``sources/omop/_fhir.py``) are inverted exactly: their OMOP ids (in the resource id,
``omop-condition-1``), concept ids (codings of ``https://fhir-terminology.ohdsi.org``), type and
source concepts (carelake extensions), source values (``CodeableConcept.text``) and observation periods come
back. Other resources are mapped: ids are numbered after the largest OMOP id of their table in resource order
(persons by ``cl_person_ids``, shared with the MEDS export), concepts are looked up in a vocabulary by
(vocabulary_id, code) and followed along 'Maps to' to the standard concept, Observations go to measurement or
observation by the OMOP table they came from, else the standard concept's domain, else their category
(laboratory and vital-signs are measurements). A panel's components are rows of their own. Encounter classes
IMP, ACUTE and NONAC are inpatient visits (9201), EMER emergency (9203), AMB outpatient (9202), others 0;
gender male / female is 8507 / 8532; US Core OMB race and ethnicity codes become the OMOP race and ethnicity
concepts; the Patient's id is person_source_value; a type concept nothing names is 32817 (EHR); a person
without observation-period extensions gets one period from the first to the last date of their rows. Times are
UTC: a datetime is the instant, a date the UTC day it falls on.

The vocabulary is ``vocab`` (a folder with CONCEPT, and optionally CONCEPT_RELATIONSHIP and VOCABULARY, as
CSV, gzipped CSV or Parquet), else the lake's own ``omop_concept`` tables when it was ingested from a CDM that
had them. All mapping is SQL the engine runs (DuckDB or Spark); Python only converts the engine's Parquet to
the output files, record batch by record batch. Everything is written into a hidden folder beside ``out`` and
renamed into place at the end, so a crash leaves no half export.

Rows that cannot be a CDM row are counted in the summary's ``skipped`` by reason, never written: ``status``
(entered-in-error, cancelled, refuted, not done) and ``no_<column>`` for a required column without a value:
``no_person_id`` (the patient is not in the lake, or has no birth year: ``no_year_of_birth``), an event
without a date (``no_condition_start_date``), ...

What an OMOP CDM round trip (``ingest_omop`` then ``export_omop``) does not carry, and why:

* provider_id, care_site_id, location_id, visit_detail_id, stop_reason, the *_status_* columns,
  modifier_*, operator_concept_id, qualifier_*, unit_source_concept_id, dose_unit_source_value,
  measurement_time, verbatim_end_date, the *_event_id columns and death.cause_*: ingestion writes no FHIR
  element for them (NULL here).
* visit_source_concept_id and the person's *_source_concept_id: not carried (0 here); admitting/discharge
  source values: not carried (NULL). preceding_visit_occurrence_id is not carried but recomputed (the person's
  previous exported visit by start); GiBleed's own values point at visits outside its subset.
* An optional concept id that was 0 in the CDM (value_as_concept_id, unit_concept_id, route_concept_id,
  admitted_from / discharged_to) comes back NULL: ingestion drops a 0 concept, as FHIR has no coding for
  "no concept". unit_concept_id comes back only through a vocabulary (UCUM code -> concept).
* Vaccines (drug exposures of CVX concepts become Immunizations): quantity, refills, days_supply and sig are
  not carried; their end is their start. lot_number is carried only for vaccines.
* death_type_concept_id is not carried (32817 here). birth_datetime is the birth date at midnight.
* Observation periods of persons missing from PERSON, and rows of other tables whose person is missing, have
  no Patient to ride on; visit_occurrence_id of an event whose visit is missing is kept from the reference.
* A CDM 5.3 source exports as 5.4: columns 5.4 added (procedure_end_date, the event ids, ...) are NULL,
  renamed ones (admitting_source -> admitted_from, discharge_to -> discharged_to) carry over.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from collections.abc import Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from carelake._version import __version__
from carelake.errors import ConfigError, InputError, LakeError
from carelake.fhir._events import sql_literal, vocabulary_sql
from carelake.interop._ids import PERSON_IDS, integer_sql, load_view, register_person_ids
from carelake.interop._output import export_folder
from carelake.interop._vocabulary import register_vocabulary, vocabulary_version
from carelake.lake._lake import utc_now
from carelake.progress import NoProgress, Progress
from carelake.sources.omop._cdm import CdmTable, cdm_tables
from carelake.sources.omop._fhir import ACT_CODE, ETHNICITY, RACE, omop_id_sql

if TYPE_CHECKING:
    import pyarrow as pa

    from carelake.engine import Engine
    from carelake.lake import Lake

CDM_VERSION = "5.4"
CDM_VERSION_CONCEPT = 756265  # OMOP CDM Version 5.4
EHR = 32817  # type concept "EHR", for rows whose provenance says nothing more
TABLES = (
    "person",
    "observation_period",
    "visit_occurrence",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "measurement",
    "observation",
    "death",
    "cdm_source",
)
Format = Literal["csv", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "parquet")
EXPORT_MARKER = ".carelake-omop-export.json"
UNMAPPED_FILE = "unmapped_codes.csv"
BATCH_ROWS = 65_536
VISIT_CLASSES = {"IMP": 9201, "ACUTE": 9201, "NONAC": 9201, "EMER": 9203, "AMB": 9202}
GENDERS = {"male": 8507, "female": 8532}
DRUG_VIEWS = (
    "omop_medication_requests",
    "omop_immunizations",
    "omop_medication_administrations",
    "omop_medication_statements",
)
# The OMOP id columns each source view gets, and the OMOP table whose resource ids they are read from.
OMOP_IDS: dict[str, dict[str, str]] = {
    "omop_patients": {"omop_id": "person"},
    "omop_encounters": {"omop_id": "visit_occurrence"},
    "omop_conditions": {"omop_id": "condition_occurrence"},
    "omop_procedures": {"omop_id": "procedure_occurrence"},
    "omop_observations": {"measurement_id": "measurement", "observation_id": "observation"},
    **{name: {"omop_id": "drug_exposure"} for name in DRUG_VIEWS},
}
SOURCE_VIEWS = (
    "omop_patients",
    "omop_observation_periods",
    "omop_encounters",
    "omop_conditions",
    "omop_procedures",
    *DRUG_VIEWS,
    "omop_observations",
)
# Each table's concept column that says whether a row was mapped (unmapped_codes.csv counts the zeros).
MAIN_CONCEPT = {
    "visit_occurrence": "visit_concept_id",
    "condition_occurrence": "condition_concept_id",
    "drug_exposure": "drug_concept_id",
    "procedure_occurrence": "procedure_concept_id",
    "measurement": "measurement_concept_id",
    "observation": "observation_concept_id",
}


@dataclass
class OmopExportSummary:
    """A written OMOP export: rows per table, rows whose concept is 0 per table, rows left out by reason."""

    out: str
    engine: str
    format: str
    vocabulary: str | None
    rows: dict[str, int]
    unmapped: dict[str, int]
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)
    seconds: float = 0.0
    rows_per_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def export_omop(
    lake: Lake,
    out: Path,
    *,
    vocab: Path | None = None,
    engine: str = "duckdb",
    format: Format = "csv",
    release_date: dt.date | None = None,
    progress: Progress | None = None,
) -> OmopExportSummary:
    """Write the lake as an OMOP CDM v5.4 database in ``out`` (new, empty, or a previous OMOP export).

    ``release_date`` (default: today, UTC) is cdm_source's release dates, so a re-run can write the same bytes.

    Examples:
        >>> s = export_omop(lake, Path("omop"), vocab=Path("vocabulary"))  # doctest: +SKIP
        >>> s.rows["person"], s.unmapped["condition_occurrence"]  # doctest: +SKIP
        (2694, 0)
    """
    started = time.perf_counter()
    progress = progress or NoProgress()
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}", hint=f"choose one of: {', '.join(FORMATS)}")
    if "resources" not in lake.catalog.views:
        raise LakeError(f"the lake at {lake.root} holds no FHIR resources", hint="ingest FHIR or an OMOP CDM first")
    vocab = Path(vocab).absolute() if vocab is not None else None
    if vocab is not None and not vocab.is_dir():
        raise InputError(f"{vocab} is not a folder", hint="pass the folder holding CONCEPT.csv (an Athena download)")
    out = Path(out).absolute()
    tables = cdm_tables(CDM_VERSION)
    try:
        with export_folder(out, kind="OMOP", marker=EXPORT_MARKER) as work:
            staging = work / "_staging"
            staging.mkdir()
            with closing(lake.connect(engine)) as eng:
                vocabulary = register_vocabulary(eng, lake, vocab, staging, progress)
                vocab_release = vocabulary_version(eng)
                staged = _stage_tables(eng, staging, progress)
                skipped = _tally_skipped(eng)
                unmapped_rows = eng.query(_unmapped_sql()).to_pylist()
            rows: dict[str, int] = {}
            progress.start(f"OMOP: writing {format}", None)
            for name in TABLES[:-1]:
                rows[name] = _write_table(staged[name], tables[name], work, format, progress)
            rows["cdm_source"] = _write_rows(
                [_cdm_source(lake, vocab_release, release_date or utc_now().date())],
                tables["cdm_source"],
                work,
                format,
            )
            unmapped = _write_unmapped(unmapped_rows, work / UNMAPPED_FILE)
            shutil.rmtree(staging)
            summary = OmopExportSummary(
                out=str(out),
                engine=engine,
                format=format,
                vocabulary=vocabulary,
                rows=rows,
                unmapped={t: unmapped.get(t, 0) for t in MAIN_CONCEPT},
                skipped=skipped,
            )
            marker = {"export": "omop", "cdm_version": CDM_VERSION, "carelake": __version__, **summary.to_dict()}
            for timing in ("out", "seconds", "rows_per_s"):  # the marker's bytes depend on the lake only
                del marker[timing]
            (work / EXPORT_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    finally:
        progress.stop()
    seconds = time.perf_counter() - started
    summary.seconds = round(seconds, 3)
    total = sum(rows.values())
    summary.rows_per_s = round(total / seconds, 1) if seconds > 0 else 0.0
    return summary


# --- SQL pieces -------------------------------------------------------------------------------------------------------


def _date(text: str) -> str:
    """A FHIR date or dateTime as the UTC date it falls on (a partial date as its first day)."""
    return f"CAST(cl_fhir_time({text}) AS DATE)"


def _datetime(text: str) -> str:
    """A FHIR dateTime with a time as a UTC timestamp; NULL for a date without a time."""
    return f"(CASE WHEN length({text}) > 10 THEN CAST(cl_fhir_time({text}) AS TIMESTAMP) END)"


def _case(column: str, mapping: dict[str, int], default: str = "NULL") -> str:
    whens = " ".join(f"WHEN {sql_literal(k)} THEN {v}" for k, v in mapping.items())
    return f"(CASE {column} {whens} ELSE {default} END)"


def _lookup_join(alias: str, source: str, prefix: str = "") -> str:
    """Join a row's first non-OMOP coding to the vocabulary lookup."""
    return (
        f"LEFT JOIN cl_omop_lookup {alias} ON {alias}.vocabulary_id = {vocabulary_sql(f'{source}.{prefix}system')} "
        f"AND {alias}.concept_code = {source}.{prefix}code"
    )


def _concepts(source: str, alias: str) -> tuple[str, str, str]:
    """(concept_id, source_concept_id, source_value) of a row's code: the OMOP coding and extension when there
    are, else the vocabulary's concepts for the first other coding, else 0. An OMOP row's source value is the
    CodeableConcept's text, any other row's the code."""
    omop = f"{source}.omop_id IS NOT NULL"
    concept = f"coalesce({integer_sql(f'{source}.concept')}, {alias}.concept_id, 0)"
    source_concept = (
        f"CASE WHEN {omop} THEN coalesce({integer_sql(f'{source}.source_concept')}, 0) "
        f"ELSE coalesce({integer_sql(f'{source}.source_concept')}, {alias}.source_concept_id, 0) END"
    )
    return concept, source_concept, f"CASE WHEN {omop} THEN {source}.text ELSE {source}.code END"


def _optional_concept(source: str, alias: str, prefix: str) -> str:
    """An optional concept (a value, a route, an admission source): NULL when the element is absent, else its
    OMOP coding, else the vocabulary's standard concept, else 0."""
    present = " OR ".join(f"{source}.{prefix}{part} IS NOT NULL" for part in ("concept", "code", "text"))
    return f"CASE WHEN {present} THEN coalesce({integer_sql(f'{source}.{prefix}concept')}, {alias}.concept_id, 0) END"


def _numbered(omop_id: str, order: str, source: str) -> str:
    """OMOP rows keep their id; the others are numbered after the largest OMOP id of ``source``, in ``order``."""
    return (
        f"coalesce({omop_id}, (SELECT coalesce(max({integer_sql('omop_id')}), 0) FROM {source}) + "
        f"row_number() OVER (PARTITION BY {omop_id} IS NULL ORDER BY {order}))"
    )


def _person_join(source: str, column: str = "patient_id") -> str:
    return f"LEFT JOIN cl_omop_person_ids p ON p.patient_id = {source}.{column}"


def _visit_id(source: str) -> str:
    """The visit of an event: the exported visit of its encounter, else the OMOP id its reference names."""
    reference = f"{source}.encounter_id"
    return (
        f"coalesce(v.visit_occurrence_id, CASE WHEN regexp_matches({reference}, '^omop-visit-[0-9]{{1,18}}\\z') "
        f"THEN CAST(substr({reference}, 12) AS BIGINT) END)"
    )


def _visit_join(source: str) -> str:
    return f"LEFT JOIN cl_omop_visit_ids v ON v.encounter_id = {source}.encounter_id"


def _select(table: CdmTable, values: dict[str, str], helpers: dict[str, str], rest: str) -> str:
    """The table's columns in DDL order, each cast to its DDL type (NULL where there is no value), then helper
    columns (``cl_*``); ``cl_skip`` names why a row cannot be written, checked on the cast values."""
    unknown = set(values) - set(table.columns)
    if unknown:  # a typo in a mapping must not silently become a NULL column
        raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
    columns = [f"CAST({values.get(f.name, 'NULL')} AS {f.sql_type}) AS {f.name}" for f in table.fields]
    extra = [f"{sql} AS {name}" for name, sql in helpers.items()]
    inner = f"SELECT {', '.join([*columns, *extra])} {rest}"
    checks = ["WHEN cl_filtered THEN 'status'"]
    checks += [f"WHEN {f.name} IS NULL THEN 'no_{f.name}'" for f in table.fields if f.required]
    return f"SELECT q.*, CASE {' '.join(checks)} END AS cl_skip FROM ({inner}) q ORDER BY {table.fields[0].name}"


def _status_in(column: str, statuses: Sequence[str]) -> str:
    """Whether a resource's status says it did not happen (its row is skipped)."""
    return f"coalesce({column}, '') IN ({', '.join(sql_literal(s) for s in statuses)})"


# --- the tables -------------------------------------------------------------------------------------------------------


def _person_sql(table: CdmTable) -> str:
    birth = "s.birth_date"
    race = _case("s.race_code", {code: concept for concept, (code, _) in RACE.items()})
    ethnicity = _case("s.ethnicity_code", {code: concept for concept, (code, _) in ETHNICITY.items()})
    omop = "s.omop_id IS NOT NULL"
    values = {
        "person_id": "i.person_id",
        "gender_concept_id": f"coalesce({integer_sql('s.gender_concept')}, {_case('s.gender', GENDERS, '0')})",
        "year_of_birth": f"CASE WHEN length({birth}) >= 4 THEN TRY_CAST(substr({birth}, 1, 4) AS BIGINT) END",
        "month_of_birth": f"CASE WHEN length({birth}) >= 7 THEN TRY_CAST(substr({birth}, 6, 2) AS BIGINT) END",
        "day_of_birth": f"CASE WHEN length({birth}) >= 10 THEN TRY_CAST(substr({birth}, 9, 2) AS BIGINT) END",
        "birth_datetime": (
            f"CASE WHEN length({birth}) >= 10 THEN CAST(TRY_CAST(substr({birth}, 1, 10) AS DATE) AS TIMESTAMP) END"
        ),
        "race_concept_id": f"coalesce({integer_sql('s.race_concept')}, {race}, 0)",
        "ethnicity_concept_id": f"coalesce({integer_sql('s.ethnicity_concept')}, {ethnicity}, 0)",
        "person_source_value": f"CASE WHEN {omop} THEN s.source_value ELSE s.id END",
        "gender_source_value": f"CASE WHEN {omop} THEN s.gender_source_value ELSE s.gender END",
        "gender_source_concept_id": "0",
        "race_source_value": f"CASE WHEN {omop} THEN s.race_source_value ELSE s.race_code END",
        "race_source_concept_id": "0",
        "ethnicity_source_value": f"CASE WHEN {omop} THEN s.ethnicity_source_value ELSE s.ethnicity_code END",
        "ethnicity_source_concept_id": "0",
    }
    helpers = {"cl_resource": "s.id", "cl_filtered": "FALSE"}
    rest = f"FROM cl_omop_src_omop_patients s LEFT JOIN {PERSON_IDS} i ON i.patient_id = s.id"
    return _select(table, values, helpers, rest)


def _death_sql(table: CdmTable) -> str:
    values = {
        "person_id": "p.person_id",
        "death_date": _date("s.deceased"),
        "death_datetime": _datetime("s.deceased"),
        "death_type_concept_id": str(EHR),
    }
    rest = f"FROM cl_omop_src_omop_patients s {_person_join('s', 'id')} WHERE s.deceased IS NOT NULL"
    return _select(table, values, {"cl_filtered": "FALSE"}, rest)


def _visit_sql(table: CdmTable) -> str:
    source = "cl_omop_src_omop_encounters"
    concept = f"coalesce({integer_sql('s.concept')}, {_case('s.class_code', VISIT_CLASSES, '0')})"
    omop = "s.omop_id IS NOT NULL"
    values = {
        "visit_occurrence_id": _numbered(integer_sql("s.omop_id"), "s.id", source),
        "person_id": "p.person_id",
        "visit_concept_id": concept,
        "visit_start_date": _date("s.start"),
        "visit_start_datetime": _datetime("s.start"),
        "visit_end_date": f"coalesce({_date('s.end')}, {_date('s.start')})",
        "visit_end_datetime": _datetime("s.end"),
        "visit_type_concept_id": f"coalesce({integer_sql('s.type_concept')}, {EHR})",
        "visit_source_value": f"CASE WHEN {omop} THEN s.text ELSE s.class_code END",
        "visit_source_concept_id": "0",
        "admitted_from_concept_id": _optional_concept("s", "la", "admit_"),
        "admitted_from_source_value": f"CASE WHEN {omop} THEN s.admit_text ELSE s.admit_code END",
        "discharged_to_concept_id": _optional_concept("s", "ld", "discharge_"),
        "discharged_to_source_value": f"CASE WHEN {omop} THEN s.discharge_text ELSE s.discharge_code END",
    }
    helpers = {
        "cl_resource": "s.id",
        "cl_filtered": _status_in("s.status", ("entered-in-error", "cancelled")),
        "cl_system": f"CASE WHEN s.class_code IS NOT NULL THEN '{ACT_CODE}' END",
        "cl_code": f"CASE WHEN {omop} THEN s.text ELSE s.class_code END",
    }
    joins = f"{_lookup_join('la', 's', 'admit_')} {_lookup_join('ld', 's', 'discharge_')}"
    rest = f"FROM {source} s {_person_join('s')} {joins}"
    inner = _select(table, values, helpers, rest)
    # The person's previous written visit, by start (ingestion does not carry it; this is its definition).
    columns = ", ".join(
        "CASE WHEN cl_skip IS NULL THEN lag(visit_occurrence_id) OVER (PARTITION BY person_id, cl_skip IS NULL "
        "ORDER BY visit_start_date, visit_start_datetime, visit_occurrence_id) END AS preceding_visit_occurrence_id"
        if c == "preceding_visit_occurrence_id"
        else c
        for c in [*table.columns, *helpers, "cl_skip"]
    )
    return f"SELECT {columns} FROM ({inner}) w ORDER BY visit_occurrence_id"


def _condition_sql(table: CdmTable) -> str:
    source = "cl_omop_src_omop_conditions"
    concept, source_concept, value = _concepts("s", "l")
    values = {
        "condition_occurrence_id": _numbered(integer_sql("s.omop_id"), "s.id", source),
        "person_id": "p.person_id",
        "condition_concept_id": concept,
        "condition_start_date": _date("s.start"),
        "condition_start_datetime": _datetime("s.start"),
        "condition_end_date": _date("s.end"),
        "condition_end_datetime": _datetime("s.end"),
        "condition_type_concept_id": f"coalesce({integer_sql('s.type_concept')}, {EHR})",
        "visit_occurrence_id": _visit_id("s"),
        "condition_source_value": value,
        "condition_source_concept_id": source_concept,
    }
    return _select(table, values, _event_helpers(("refuted", "entered-in-error")), _event_rest(source))


def _procedure_sql(table: CdmTable) -> str:
    source = "cl_omop_src_omop_procedures"
    concept, source_concept, value = _concepts("s", "l")
    values = {
        "procedure_occurrence_id": _numbered(integer_sql("s.omop_id"), "s.id", source),
        "person_id": "p.person_id",
        "procedure_concept_id": concept,
        "procedure_date": _date("s.start"),
        "procedure_datetime": _datetime("s.start"),
        "procedure_end_date": _date("s.end"),
        "procedure_end_datetime": _datetime("s.end"),
        "procedure_type_concept_id": f"coalesce({integer_sql('s.type_concept')}, {EHR})",
        "visit_occurrence_id": _visit_id("s"),
        "procedure_source_value": value,
        "procedure_source_concept_id": source_concept,
    }
    return _select(table, values, _event_helpers(("entered-in-error", "not-done")), _event_rest(source))


def _drug_sql(table: CdmTable) -> str:
    source = "cl_omop_src_drugs"
    concept, source_concept, value = _concepts("s", "l")
    omop = "s.omop_id IS NOT NULL"
    values = {
        "drug_exposure_id": _numbered(integer_sql("s.omop_id"), "s.resource_type, s.id", source),
        "person_id": "p.person_id",
        "drug_concept_id": concept,
        "drug_exposure_start_date": _date("s.start"),
        "drug_exposure_start_datetime": _datetime("s.start"),
        "drug_exposure_end_date": f"coalesce({_date('s.end')}, {_date('s.start')})",
        "drug_exposure_end_datetime": _datetime("s.end"),
        "drug_type_concept_id": f"coalesce({integer_sql('s.type_concept')}, {EHR})",
        "refills": "s.refills",
        "quantity": "s.quantity",
        "days_supply": "CAST(round(s.days_supply) AS BIGINT)",
        "sig": "s.sig",
        "route_concept_id": _optional_concept("s", "lr", "route_"),
        "lot_number": "s.lot_number",
        "visit_occurrence_id": _visit_id("s"),
        "drug_source_value": value,
        "drug_source_concept_id": source_concept,
        "route_source_value": f"CASE WHEN {omop} THEN s.route_text ELSE s.route_code END",
    }
    helpers = _event_helpers(("entered-in-error", "cancelled", "not-done", "not-taken"))
    return _select(table, values, helpers, f"{_event_rest(source)} {_lookup_join('lr', 's', 'route_')}")


def _event_helpers(statuses: Sequence[str]) -> dict[str, str]:
    return {
        "cl_filtered": _status_in("s.status", statuses),
        "cl_system": "CASE WHEN s.omop_id IS NULL THEN s.system END",
        "cl_code": "CASE WHEN s.omop_id IS NULL THEN s.code ELSE s.text END",
    }


def _event_rest(source: str) -> str:
    return f"FROM {source} s {_person_join('s')} {_visit_join('s')} {_lookup_join('l', 's')}"


def _routed_sql() -> str:
    """Every Observation value with its concepts resolved and the table it goes to, numbered per table."""
    source = "cl_omop_src_omop_observations"
    omop_id = f"coalesce({integer_sql('s.measurement_id')}, {integer_sql('s.observation_id')})"
    concept, source_concept, value = _concepts("s", "l")
    value_concept = _optional_concept("s", "lv", "value_")
    resolved = f"""
        SELECT s.*, {omop_id} AS cl_omop_id, {concept} AS cl_concept, {source_concept} AS cl_source_concept,
               {value} AS cl_source_value, {value_concept} AS cl_value_concept,
               CASE WHEN s.unit_code IS NOT NULL OR s.unit_text IS NOT NULL THEN coalesce(lu.concept_id, 0) END
                   AS cl_unit_concept,
               CASE WHEN s.omop_id IS NOT NULL THEN s.value_text ELSE coalesce(s.value_code, s.value_string) END
                   AS cl_value_source
        FROM (SELECT *, coalesce(measurement_id, observation_id) AS omop_id FROM {source}) s
        {_lookup_join("l", "s")} {_lookup_join("lv", "s", "value_")}
        LEFT JOIN cl_omop_lookup lu ON lu.vocabulary_id = 'UCUM' AND lu.concept_code = s.unit_code"""
    table = (
        "CASE WHEN r.measurement_id IS NOT NULL THEN 'measurement' "
        "WHEN r.observation_id IS NOT NULL THEN 'observation' "
        "WHEN d.domain_id = 'Measurement' THEN 'measurement' WHEN d.domain_id IS NOT NULL THEN 'observation' "
        "WHEN r.is_measurement THEN 'measurement' ELSE 'observation' END"
    )
    routed = f"""
        SELECT r.*, {table} AS cl_table
        FROM ({resolved}) r LEFT JOIN cl_omop_domains d ON d.concept_id = r.cl_concept AND r.cl_concept <> 0"""
    return f"""
        SELECT t.*,
               row_number() OVER (PARTITION BY t.cl_table, t.cl_omop_id IS NULL ORDER BY t.id, t.component)
                   AS cl_rank
        FROM ({routed}) t"""


def _observation_sql(table: CdmTable, name: str) -> str:
    prefix = "measurement" if name == "measurement" else "observation"
    values = {
        f"{prefix}_id": "coalesce(s.cl_omop_id, coalesce(m.top_id, 0) + s.cl_rank)",
        "person_id": "p.person_id",
        f"{prefix}_concept_id": "s.cl_concept",
        f"{prefix}_date": _date("s.start"),
        f"{prefix}_datetime": _datetime("s.start"),
        f"{prefix}_type_concept_id": f"coalesce({integer_sql('s.type_concept')}, {EHR})",
        "value_as_number": "s.value_number",
        "value_as_concept_id": "s.cl_value_concept",
        "unit_concept_id": "s.cl_unit_concept",
        "visit_occurrence_id": _visit_id("s"),
        f"{prefix}_source_value": "s.cl_source_value",
        f"{prefix}_source_concept_id": "s.cl_source_concept",
        "unit_source_value": "s.unit_text",
        "value_source_value": "s.cl_value_source",
    }
    if name == "measurement":
        values |= {"range_low": "s.range_low", "range_high": "s.range_high"}
    else:
        values["value_as_string"] = "s.value_string"
    helpers = {
        "cl_filtered": _status_in("s.status", ("entered-in-error", "cancelled")),
        "cl_system": "CASE WHEN s.omop_id IS NULL THEN s.system END",
        "cl_code": "CASE WHEN s.omop_id IS NULL THEN s.code ELSE s.text END",
    }
    rest = f"""
        FROM cl_omop_routed s {_person_join("s")} {_visit_join("s")}
        CROSS JOIN (SELECT max(cl_omop_id) AS top_id FROM cl_omop_routed WHERE cl_table = '{name}') m
        WHERE s.cl_table = '{name}'"""
    return _select(table, values, helpers, rest)


def _observation_period_sql(table: CdmTable) -> str:
    """The periods ingestion kept on patients; for every other person, first to last date of their rows."""
    dates = {
        "visit_occurrence": ("visit_start_date", "visit_end_date"),
        "condition_occurrence": ("condition_start_date", "condition_end_date"),
        "drug_exposure": ("drug_exposure_start_date", "drug_exposure_end_date"),
        "procedure_occurrence": ("procedure_date", "procedure_end_date"),
        "measurement": ("measurement_date", "measurement_date"),
        "observation": ("observation_date", "observation_date"),
    }
    spans = " UNION ALL ".join(
        f"SELECT person_id, {start} AS first_date, coalesce({end}, {start}) AS last_date "
        f"FROM cl_omop_out_{name} WHERE cl_skip IS NULL"
        for name, (start, end) in dates.items()
    )
    kept = f"""
        SELECT p.person_id, {integer_sql("o.omop_id")} AS omop_id, {_date("o.start")} AS start_date,
               coalesce({_date("o.end")}, {_date("o.start")}) AS end_date,
               coalesce({integer_sql("o.type_concept")}, {EHR}) AS type_concept
        FROM cl_omop_src_omop_observation_periods o JOIN cl_omop_person_ids p ON p.patient_id = o.patient_id
        WHERE o.omop_id IS NOT NULL OR o.start IS NOT NULL"""
    derived = f"""
        SELECT e.person_id, CAST(NULL AS BIGINT) AS omop_id, min(e.first_date) AS start_date,
               max(e.last_date) AS end_date, {EHR} AS type_concept
        FROM ({spans}) e LEFT JOIN (SELECT DISTINCT person_id FROM ({kept}) k) h ON h.person_id = e.person_id
        WHERE h.person_id IS NULL
        GROUP BY e.person_id"""
    values = {
        "observation_period_id": (
            f"coalesce(a.omop_id, (SELECT coalesce(max(omop_id), 0) FROM ({kept}) x) + "
            "row_number() OVER (PARTITION BY a.omop_id IS NULL ORDER BY a.person_id, a.start_date))"
        ),
        "person_id": "a.person_id",
        "observation_period_start_date": "a.start_date",
        "observation_period_end_date": "a.end_date",
        "period_type_concept_id": "a.type_concept",
    }
    rest = f"FROM ({kept} UNION ALL {derived}) a"
    return _select(table, values, {"cl_filtered": "FALSE"}, rest)


def _stage_tables(eng: Engine, staging: Path, progress: Progress) -> dict[str, list[Path]]:
    """Run the views, then each table's SQL, into staging Parquet; register each as ``cl_omop_out_<table>``."""
    from carelake.fhir import compile_view

    tables = cdm_tables(CDM_VERSION)
    register_person_ids(eng)
    progress.start("OMOP: reading resources", len(SOURCE_VIEWS))
    for name in SOURCE_VIEWS:
        # A resource OMOP ingestion wrote has its OMOP id in its resource id (omop-condition-1): read it out.
        ids = "".join(f", {omop_id_sql('v.id', table)} AS {column}" for column, table in OMOP_IDS.get(name, {}).items())
        files = eng.write_parquet(f"SELECT v.*{ids} FROM ({compile_view(load_view(name))}) v", staging / "views" / name)
        eng.register_parquet(f"cl_omop_src_{name}", files)
        progress.advance(1)
    eng.create_view("cl_omop_src_drugs", " UNION ALL ".join(f"SELECT * FROM cl_omop_src_{name}" for name in DRUG_VIEWS))
    staged: dict[str, list[Path]] = {}

    def stage(name: str, sql: str) -> None:
        progress.start(f"OMOP: {name}", None)
        staged[name] = eng.write_parquet(sql, staging / "tables" / name)
        eng.register_parquet(f"cl_omop_out_{name}", staged[name])

    stage("person", _person_sql(tables["person"]))
    eng.create_view(
        "cl_omop_person_ids",
        "SELECT cl_resource AS patient_id, person_id FROM cl_omop_out_person WHERE cl_skip IS NULL",
    )
    stage("visit_occurrence", _visit_sql(tables["visit_occurrence"]))
    eng.create_view(
        "cl_omop_visit_ids",
        "SELECT cl_resource AS encounter_id, visit_occurrence_id FROM cl_omop_out_visit_occurrence "
        "WHERE cl_skip IS NULL",
    )
    stage("condition_occurrence", _condition_sql(tables["condition_occurrence"]))
    stage("drug_exposure", _drug_sql(tables["drug_exposure"]))
    stage("procedure_occurrence", _procedure_sql(tables["procedure_occurrence"]))
    routed = eng.write_parquet(_routed_sql(), staging / "routed")
    eng.register_parquet("cl_omop_routed", routed)
    stage("measurement", _observation_sql(tables["measurement"], "measurement"))
    stage("observation", _observation_sql(tables["observation"], "observation"))
    stage("death", _death_sql(tables["death"]))
    stage("observation_period", _observation_period_sql(tables["observation_period"]))
    return staged


def _tally_skipped(eng: Engine) -> dict[str, dict[str, int]]:
    sql = " UNION ALL ".join(
        f"SELECT '{name}' AS cdm_table, cl_skip AS reason, count(*) AS n FROM cl_omop_out_{name} "
        "WHERE cl_skip IS NOT NULL GROUP BY cl_skip"
        for name in TABLES[:-1]
    )
    skipped: dict[str, dict[str, int]] = {}
    for row in eng.query(sql).to_pylist():
        skipped.setdefault(row["cdm_table"], {})[row["reason"]] = row["n"]
    return {t: dict(sorted(r.items())) for t, r in sorted(skipped.items())}


def _unmapped_sql() -> str:
    return " UNION ALL ".join(
        f"SELECT '{name}' AS cdm_table, cl_system AS system, cl_code AS code, count(*) AS n "
        f"FROM cl_omop_out_{name} WHERE cl_skip IS NULL AND {column} = 0 GROUP BY cl_system, cl_code"
        for name, column in MAIN_CONCEPT.items()
    )


# --- the vocabulary ---------------------------------------------------------------------------------------------------


# --- writing ----------------------------------------------------------------------------------------------------------


def _arrow_schema(table: CdmTable) -> pa.Schema:
    import pyarrow as pa

    from carelake.sources.omop._ingest import ARROW_TYPES

    return pa.schema([pa.field(f.name, ARROW_TYPES[f.type], nullable=not f.required) for f in table.fields])


def _write_table(files: Sequence[Path], table: CdmTable, folder: Path, format: Format, progress: Progress) -> int:
    """Copy a staged table's writable rows into ``<table>.<format>``, batch by batch; return the rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    schema = _arrow_schema(table)
    rows = 0
    with _Sink(folder / f"{table.name}.{format}", schema, format) as sink:
        for file in files:
            for batch in pq.ParquetFile(file).iter_batches(BATCH_ROWS, columns=[*table.columns, "cl_skip"]):
                kept = batch.filter(pc.is_null(batch.column("cl_skip")))
                arrays = [kept.column(c).cast(schema.field(c).type) for c in table.columns]
                sink.write(pa.record_batch(arrays, schema=schema))
                rows += kept.num_rows
                progress.advance(kept.num_rows)
    return rows


def _write_rows(rows: list[dict[str, Any]], table: CdmTable, folder: Path, format: Format) -> int:
    import pyarrow as pa

    schema = _arrow_schema(table)
    with _Sink(folder / f"{table.name}.{format}", schema, format) as sink:
        sink.write(pa.RecordBatch.from_pylist(rows, schema=schema))
    return len(rows)


class _Sink:
    """One output file: Parquet with the DDL schema, or CSV with a lower-case header and ``YYYY-MM-DD HH:MM:SS``
    datetimes (strings quoted, so an empty string and a NULL differ)."""

    def __init__(self, path: Path, schema: pa.Schema, format: Format) -> None:
        import pyarrow.csv as csv
        import pyarrow.parquet as pq

        self.schema = schema
        self.format = format
        if format == "parquet":
            self._writer: Any = pq.ParquetWriter(path, schema, compression="zstd")
            self._handle = None
        else:
            self._handle = path.open("wb")
            self._handle.write((",".join(schema.names) + "\n").encode())
            self._writer = csv.CSVWriter(
                self._handle, self._csv_schema(), write_options=csv.WriteOptions(include_header=False)
            )

    def _csv_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_timestamp(f.type) else f for f in self.schema])

    def write(self, batch: pa.RecordBatch) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.format == "parquet":
            self._writer.write_batch(batch)
            return
        arrays = []
        for column, field_ in zip(batch.columns, self.schema, strict=True):
            if pa.types.is_timestamp(field_.type):
                seconds = pc.cast(column, pa.timestamp("s"), safe=False)
                column = pc.strftime(seconds, format="%Y-%m-%d %H:%M:%S")
            arrays.append(column)
        self._writer.write_batch(pa.record_batch(arrays, schema=self._csv_schema()))

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()
        if self._handle is not None:
            self._handle.close()


def _cdm_source(lake: Lake, vocabulary_version: str, released: dt.date) -> dict[str, Any]:
    name = lake.root.name
    return {
        "cdm_source_name": name,
        "cdm_source_abbreviation": name[:25],
        "cdm_holder": name,
        "source_description": f"carelake lake {name}, catalog version {lake.catalog.version}",
        "source_documentation_reference": None,
        "cdm_etl_reference": f"carelake {__version__}",
        "source_release_date": released,
        "cdm_release_date": released,
        "cdm_version": CDM_VERSION,
        "cdm_version_concept_id": CDM_VERSION_CONCEPT,
        "vocabulary_version": vocabulary_version,
    }


def _write_unmapped(rows: list[dict[str, Any]], path: Path) -> dict[str, int]:
    """``unmapped_codes.csv``: each (table, system, code) that got concept 0, most rows first; rows per table."""
    import pyarrow as pa
    import pyarrow.csv as csv

    rows = sorted(rows, key=lambda r: (TABLES.index(r["cdm_table"]), -r["n"], r["system"] or "", r["code"] or ""))
    table = pa.table(
        {
            "table": pa.array([r["cdm_table"] for r in rows], pa.string()),
            "system": pa.array([r["system"] for r in rows], pa.string()),
            "code": pa.array([r["code"] for r in rows], pa.string()),
            "rows": pa.array([r["n"] for r in rows], pa.int64()),
        }
    )
    with path.open("wb") as handle:
        handle.write(b"table,system,code,rows\n")
        csv.write_csv(table, handle, csv.WriteOptions(include_header=False))
    totals: dict[str, int] = {}
    for r in rows:
        totals[r["cdm_table"]] = totals.get(r["cdm_table"], 0) + r["n"]
    return totals
