"""The OMOP CDM v5.4 export: a GiBleed round trip, the DDL, vocabulary mapping, de-identified lakes and Spark."""

from __future__ import annotations

import datetime as dt
import hashlib
from contextlib import closing
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import carelake as cl
from carelake.engine import DuckDBEngine
from carelake.errors import ConfigError, LakeError
from carelake.interop import _omop
from carelake.interop._omop import OmopExportSummary, export_omop
from carelake.privacy import deidentify, keygen
from carelake.sources.omop import cdm_tables

GIBLEED = "omop-eunomia-gibleed/cdm_v5.3"
RELEASED = dt.date(2024, 1, 31)
CDM = cdm_tables("5.4")
CDM_53 = cdm_tables("5.3")
TABLES = list(_omop.TABLES)
CLINICAL = [t for t in TABLES if t not in ("death", "cdm_source")]
# Columns an OMOP round trip does not carry (the module docstring says why); the rest must come back equal.
NOT_CARRIED = {
    "person": {"location_id", "provider_id", "care_site_id"}
    | {f"{c}_source_concept_id" for c in ("gender", "race", "ethnicity")},
    "observation_period": set(),
    "visit_occurrence": {"provider_id", "care_site_id", "visit_source_concept_id", "preceding_visit_occurrence_id"}
    | {"admitted_from_source_value", "discharged_to_source_value"},
    "condition_occurrence": {"stop_reason", "provider_id", "visit_detail_id"}
    | {"condition_status_source_value", "condition_status_concept_id"},
    "drug_exposure": {"verbatim_end_date", "stop_reason", "provider_id", "visit_detail_id", "dose_unit_source_value"},
    "procedure_occurrence": {"modifier_concept_id", "quantity", "provider_id", "visit_detail_id"}
    | {"modifier_source_value"},
    "measurement": {"measurement_time", "operator_concept_id", "provider_id", "visit_detail_id"},
    "observation": {"qualifier_concept_id", "provider_id", "visit_detail_id", "qualifier_source_value"},
}
# CDM 5.4 renamed two visit columns.
RENAMED_FROM_53 = {
    "admitted_from_concept_id": "admitting_source_concept_id",
    "discharged_to_concept_id": "discharge_to_concept_id",
    "admitted_from_source_value": "admitting_source_value",
    "discharged_to_source_value": "discharge_to_source_value",
}
# Optional concepts: ingestion drops a 0 concept, so 0 comes back NULL.
ZERO_IS_NULL = {"value_as_concept_id", "unit_concept_id", "route_concept_id"} | {
    "admitted_from_concept_id",
    "discharged_to_concept_id",
}
# What vaccines (Immunizations) do not carry, and what only they carry.
NOT_FOR_VACCINES = {"refills", "quantity", "days_supply", "sig"}
ONLY_FOR_VACCINES = {"lot_number"}
# The Parquet type of each CDM type.
_ARROW = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
    "varchar": pa.string(),
}
VOCABULARY = {
    "http://snomed.info/sct": "SNOMED",
    "http://loinc.org": "LOINC",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://hl7.org/fhir/sid/cvx": "CVX",
}


def _prefix(table: str) -> str:
    """The prefix of a table's own columns: condition_occurrence -> condition_concept_id."""
    return table.removesuffix("_occurrence").removesuffix("_exposure")


def _lake_engine(lake: cl.Lake, out: Path, *, vocab: Path | None = None) -> Any:
    """A DuckDB engine over the lake with each exported table as ``x_<table>`` (typed per the DDL), and the
    vocabulary's CONCEPT and CONCEPT_RELATIONSHIP read straight from the files."""
    eng = lake.connect("duckdb")
    for table in TABLES:
        eng.create_view(f"x_{table}", _read_export(out, table))
    if vocab is not None:
        for name in ("concept", "concept_relationship"):
            eng.create_view(f"v_{name}", f"SELECT * FROM read_csv('{vocab / name.upper()}.csv.gz', header=true)")
    return eng


def _read_export(out: Path, table: str) -> str:
    if (out / f"{table}.parquet").exists():
        return f"SELECT * FROM read_parquet('{out / table}.parquet')"
    casts = ", ".join(f"TRY_CAST({f.name} AS {f.sql_type}) AS {f.name}" for f in CDM[table].fields)
    return f"SELECT {casts} FROM {_raw_csv(out, table)}"


def _raw_csv(out: Path, table: str) -> str:
    # Quoted empty strings stay strings: only an unquoted empty field is NULL, as database loaders read CSV.
    return f"read_csv('{out / table}.csv', header=true, all_varchar=true, allow_quoted_nulls=false)"


def _one(eng: Any, sql: str) -> Any:
    return eng.query(sql).column(0)[0].as_py()


def _differences(eng: Any, left: str, right: str) -> tuple[int, int]:
    """How many rows of each query the other lacks (as multisets)."""
    a, b = f"SELECT * FROM ({left}) l", f"SELECT * FROM ({right}) r"
    missing_right = _one(eng, f"SELECT count(*) FROM ({a} EXCEPT ALL {b}) d")
    missing_left = _one(eng, f"SELECT count(*) FROM ({b} EXCEPT ALL {a}) d")
    return missing_right, missing_left


# --- the GiBleed round trip -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gibleed_export(
    gibleed: tuple[cl.Lake, Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[cl.Lake, Path, OmopExportSummary]:
    """The session's GiBleed lake (tests/conftest.py) exported once."""
    lake, _ = gibleed
    out = tmp_path_factory.mktemp("gibleed-omop") / "omop"
    return lake, out, export_omop(lake, out, release_date=RELEASED)


@pytest.mark.parametrize("table", CLINICAL)
def test_gibleed_round_trip_gives_the_stored_rows_back(
    gibleed_export: tuple[cl.Lake, Path, OmopExportSummary], table: str
) -> None:
    lake, out, summary = gibleed_export
    shared = [c for c in CDM[table].columns if RENAMED_FROM_53.get(c, c) in CDM_53[table].columns]
    compared = [c for c in shared if c not in NOT_CARRIED[table]]
    vaccine = "drug_concept_id IN (SELECT concept_id FROM omop_concept WHERE vocabulary_id = 'CVX')"

    def column(name: str, side: str) -> str:
        source = name if side == "export" else RENAMED_FROM_53.get(name, name)
        if name in ZERO_IS_NULL:
            source = f"coalesce({source}, 0)"
        if table == "drug_exposure" and name in NOT_FOR_VACCINES:
            source = f"CASE WHEN {vaccine} THEN NULL ELSE {source} END"
        if table == "drug_exposure" and name in ONLY_FOR_VACCINES:
            source = f"CASE WHEN {vaccine} THEN {source} END"
        return f"{source} AS {name}"

    # A row whose person is missing from PERSON has no Patient to ride on (GiBleed: 2,649 observation periods).
    where = "" if table == "person" else "WHERE person_id IN (SELECT person_id FROM omop_person)"
    exported = f"SELECT {', '.join(column(c, 'export') for c in compared)} FROM x_{table}"
    stored = f"SELECT {', '.join(column(c, 'bronze') for c in compared)} FROM omop_{table} {where}"
    with closing(_lake_engine(lake, out)) as eng:
        rows = _one(eng, f"SELECT count(*) FROM omop_{table} {where}")
        assert _one(eng, f"SELECT count(*) FROM x_{table}") == summary.rows[table] == rows > 0
        assert _differences(eng, exported, stored) == (0, 0)
    assert CDM[table].columns[0] in compared and "person_id" in compared


def test_gibleed_export_says_what_it_did(gibleed_export: tuple[cl.Lake, Path, OmopExportSummary]) -> None:
    _, out, summary = gibleed_export
    assert summary.vocabulary == "lake" and summary.skipped == {}
    assert summary.unmapped == dict.fromkeys(_omop.MAIN_CONCEPT, 0)
    assert (out / "unmapped_codes.csv").read_text() == "table,system,code,rows\n"
    assert summary.to_dict()["rows"]["cdm_source"] == 1 and summary.rows_per_s > 0
    strings = pacsv.ConvertOptions(column_types={"cdm_version": pa.string()})
    source = pacsv.read_csv(out / "cdm_source.csv", convert_options=strings).to_pylist()[0]
    assert source["cdm_source_name"] == "lake" and source["cdm_version"] == "5.4"
    assert source["cdm_version_concept_id"] == 756265 and source["vocabulary_version"] == "v5.0 18-JAN-19"
    assert source["cdm_release_date"] == source["source_release_date"] == RELEASED
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{t}.csv" for t in TABLES] + ["unmapped_codes.csv", _omop.EXPORT_MARKER]
    )


# --- the mapping rules, on a hand-made lake ---------------------------------------------------------------------------

OMOP = "https://fhir-terminology.ohdsi.org"
EXT = "https://carelake.dev/fhir/StructureDefinition/omop-"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _omb(kind: str, code: str) -> dict[str, Any]:
    coding = {"system": "urn:oid:2.16.840.1.113883.6.238", "code": code}
    return {"url": US_CORE + kind, "extension": [{"url": "ombCategory", "valueCoding": coding}]}


def _observation(key: str, patient: str, code: dict[str, Any], **extra: Any) -> dict[str, Any]:
    subject = {"reference": f"Patient/{patient}"}
    return {"resourceType": "Observation", "id": key, "status": "final", "code": code, "subject": subject,
            "effectiveDateTime": "2020-03-04T05:06:07Z", **extra}  # fmt: skip


def _condition(key: str, patient: str, code: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": key, "code": code, "subject": {"reference": f"Patient/{patient}"},
            "onsetDateTime": "2020-01-01", **extra}  # fmt: skip


RESOURCES = [
    {"resourceType": "Patient", "id": "omop-person-7", "gender": "female", "birthDate": "1980-02-03"},
    {"resourceType": "Patient", "id": "b", "gender": "male", "birthDate": "1990",
     "deceasedDateTime": "2020-05-06T10:00:00Z", "extension": [_omb("race", "2054-5"), _omb("ethnicity", "2135-2")]},
    {"resourceType": "Patient", "id": "c", "gender": "other"},  # no birth year: cannot be a person
    {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "EMER"},
     "subject": {"reference": "Patient/b"},
     "period": {"start": "2020-01-01T10:00:00+02:00", "end": "2020-01-01T12:00:00+02:00"}},
    _condition("c1", "b", _coded("http://snomed.info/sct", "111"), encounter={"reference": "Encounter/e1"}),
    _condition("omop-condition-100", "omop-person-7", {"coding": [{"system": OMOP, "code": "555"}], "text": "src"},
               extension=[{"url": EXT + "type-concept", "valueCoding": {"system": OMOP, "code": "32020"}}]),
    _condition("c3", "b", _coded("http://snomed.info/sct", "999")),
    _condition("c4", "b", _coded("http://snomed.info/sct", "111"), verificationStatus=_coded(
        "http://terminology.hl7.org/CodeSystem/condition-ver-status", "entered-in-error")),
    _condition("c5", "c", _coded("http://snomed.info/sct", "111")),
    _observation("o1", "b", _coded("http://loinc.org", "1234-5"), category=[_coded(CATEGORY, "laboratory")]),
    _observation("o2", "b", _coded("http://loinc.org", "9999-9"), category=[_coded(CATEGORY, "vital-signs")],
                 valueQuantity={"value": 5, "unit": "mg/dL", "system": "http://unitsofmeasure.org", "code": "mg/dL"}),
    _observation("omop-observation-40", "omop-person-7", {"coding": [{"system": OMOP, "code": "4444"}],
                 "text": "omop"}),
    _observation("o4", "b", _coded("http://loinc.org", "7777-7"), category=[_coded(CATEGORY, "survey")],
                 valueString="yes"),
]  # fmt: skip


@pytest.fixture(scope="module")
def handmade(tmp_path_factory: pytest.TempPathFactory) -> tuple[cl.Lake, Path, OmopExportSummary]:
    """A few resources that exercise each rule, and a vocabulary as Athena and others write it: Parquet with
    upper-case headers, tab-separated CSV, comma-separated CSV."""
    import json

    root = tmp_path_factory.mktemp("handmade")
    (root / "resources.ndjson").write_text("".join(json.dumps(r) + "\n" for r in RESOURCES))
    lake = cl.open_lake(root / "lake")
    cl.ingest_fhir([root / "resources.ndjson"], lake=lake)
    vocab = root / "vocabulary"
    vocab.mkdir()
    concepts = [(1001, "111", "SNOMED", None, "Condition"), (2002, "222", "SNOMED", "S", "Condition"),
                (3003, "1234-5", "LOINC", "S", "Observation")]  # fmt: skip
    names = ["CONCEPT_ID", "CONCEPT_CODE", "VOCABULARY_ID", "STANDARD_CONCEPT", "DOMAIN_ID"]
    pq.write_table(pa.table(list(zip(*concepts, strict=True)), names=names), vocab / "concept.parquet")
    (vocab / "CONCEPT_RELATIONSHIP.csv").write_text(
        "concept_id_1\tconcept_id_2\trelationship_id\tvalid_start_date\tvalid_end_date\tinvalid_reason\n"
        "1001\t2002\tMaps to\t19700101\t20991231\t\n2002\t1001\tMapped from\t19700101\t20991231\t\n"
    )
    (vocab / "VOCABULARY.csv").write_text("vocabulary_id,vocabulary_name,vocabulary_version\nNone,OMOP,v5.0 TEST\n")
    summary = export_omop(lake, root / "omop", vocab=vocab, release_date=RELEASED)
    return lake, root / "omop", summary


def _rows(out: Path, table: str, *columns: str) -> list[tuple[Any, ...]]:
    types = {f.name: _ARROW[f.type] for f in CDM[table].fields}
    options = pacsv.ConvertOptions(column_types=types, strings_can_be_null=True)
    rows = pacsv.read_csv(out / f"{table}.csv", convert_options=options).to_pylist()
    return sorted(tuple(r[c] for c in columns) for r in rows)


def test_each_mapping_rule_on_a_handmade_lake(handmade: tuple[cl.Lake, Path, OmopExportSummary]) -> None:
    _, out, summary = handmade
    assert summary.skipped == {
        "condition_occurrence": {"no_person_id": 1, "status": 1},
        "person": {"no_year_of_birth": 1},
    }
    # An OMOP person keeps its id (and its source value, here none); the others follow, in patient id order.
    assert _rows(out, "person", "person_id", "person_source_value", "gender_concept_id", "year_of_birth",
                 "month_of_birth", "race_concept_id", "ethnicity_concept_id") == [
        (7, None, 8532, 1980, 2, 0, 0), (8, "b", 8507, 1990, None, 8516, 38003563)]  # fmt: skip
    assert _rows(out, "death", "person_id", "death_date", "death_datetime", "death_type_concept_id") == [
        (8, dt.date(2020, 5, 6), dt.datetime(2020, 5, 6, 10), 32817)]  # fmt: skip
    # Times are UTC.
    assert _rows(out, "visit_occurrence", "visit_occurrence_id", "person_id", "visit_concept_id",
                 "visit_start_date", "visit_start_datetime", "visit_type_concept_id") == [
        (1, 8, 9203, dt.date(2020, 1, 1), dt.datetime(2020, 1, 1, 8), 32817)]  # fmt: skip
    # OMOP condition 100 as it was; the others numbered after it in resource id order (c4, c5 are skipped);
    # 111 is non-standard and maps to 222; 999 is unknown.
    assert _rows(out, "condition_occurrence", "condition_occurrence_id", "person_id", "condition_concept_id",
                 "condition_source_concept_id", "condition_source_value", "condition_type_concept_id",
                 "visit_occurrence_id") == [
        (100, 7, 555, 0, "src", 32020, None), (101, 8, 2002, 1001, "111", 32817, 1),
        (102, 8, 0, 0, "999", 32817, None)]  # fmt: skip
    # A laboratory result whose concept's domain is Observation goes to observation; an unknown vital sign
    # to measurement by its category; an OMOP observation keeps its table and id.
    assert _rows(out, "measurement", "measurement_id", "measurement_concept_id", "measurement_source_value",
                 "value_as_number", "unit_source_value", "unit_concept_id") == [
        (1, 0, "9999-9", 5.0, "mg/dL", 0)]  # fmt: skip
    assert _rows(out, "observation", "observation_id", "observation_concept_id", "observation_source_value",
                 "value_as_string") == [
        (40, 4444, "omop", None), (41, 3003, "1234-5", None), (42, 0, "7777-7", "yes")]  # fmt: skip
    assert _rows(out, "observation_period", "person_id", "observation_period_start_date",
                 "observation_period_end_date", "period_type_concept_id") == [
        (7, dt.date(2020, 1, 1), dt.date(2020, 3, 4), 32817),
        (8, dt.date(2020, 1, 1), dt.date(2020, 3, 4), 32817)]  # fmt: skip
    assert (out / "unmapped_codes.csv").read_text().splitlines() == [
        "table,system,code,rows",
        '"condition_occurrence","http://snomed.info/sct","999",1',
        '"measurement","http://loinc.org","9999-9",1',
        '"observation","http://loinc.org","7777-7",1',
    ]
    assert _rows(out, "cdm_source", "vocabulary_version") == [("v5.0 TEST",)]


# --- the DDL ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[cl.Lake, Path, OmopExportSummary]:
    """A Synthea-like FHIR lake (no OMOP ids, no OMOP codings), exported with GiBleed's vocabulary as Parquet."""
    root = tmp_path_factory.mktemp("synthetic")
    cl.generate_fhir(root / "fhir", patients=25, seed=11)
    lake = cl.open_lake(root / "lake")
    cl.ingest_fhir([root / "fhir" / "manifest.json"], lake=lake)
    summary = export_omop(lake, root / "omop", vocab=testdata / GIBLEED, format="parquet", release_date=RELEASED)
    return lake, root / "omop", summary


@pytest.mark.parametrize("which", ["gibleed_export", "synthetic", "handmade"])
def test_every_table_has_the_cdm_5_4_columns_types_and_required_values(
    which: str, request: pytest.FixtureRequest
) -> None:
    _, out, summary = request.getfixturevalue(which)
    with closing(DuckDBEngine()) as eng:
        for table in TABLES:
            fields = CDM[table].fields
            if summary.format == "parquet":
                schema = pq.read_schema(out / f"{table}.parquet")
                assert schema.names == CDM[table].columns, table
                assert [str(t) for t in schema.types] == [str(_ARROW[f.type]) for f in fields], table
                source = f"read_parquet('{out / table}.parquet')"
            else:
                header = (out / f"{table}.csv").open().readline().rstrip("\n")
                assert header == ",".join(CDM[table].columns), table
                source = _raw_csv(out, table)
            # Per column, in one pass: values that do not cast to the DDL type, and NULLs where it requires a value.
            checks = [
                f"count(*) FILTER ({f.name} IS NOT NULL AND TRY_CAST({f.name} AS {f.sql_type}) IS NULL)" for f in fields
            ]
            checks += [f"count(*) FILTER ({f.name} IS NULL)" if f.required else "0" for f in fields]
            counts = eng.query(f"SELECT count(*), {', '.join(checks)} FROM {source}")
            found = [column[0].as_py() for column in counts.columns]
            assert found[0] == summary.rows[table], table
            bad = {f.name: n for f, n in zip([*fields, *fields], found[1:], strict=True) if n}
            assert bad == {}, table


# --- a FHIR lake, mapped through a vocabulary -------------------------------------------------------------------------


def _expected_codes(table: str) -> str:
    """The codes each exported row of ``table`` must come from, read straight from the resources' JSON."""

    def first(path: str, resource_type: str) -> str:
        return (
            f"SELECT json_extract_string(resource, '$.{path}.coding[0].system') AS system, "
            f"json_extract_string(resource, '$.{path}.coding[0].code') AS code "
            f"FROM resources WHERE resource_type = '{resource_type}'"
        )

    if table == "condition_occurrence":
        return first("code", "Condition")
    if table == "procedure_occurrence":
        return first("code", "Procedure")
    if table == "drug_exposure":
        requests = first("medicationCodeableConcept", "MedicationRequest")
        return f"{requests} UNION ALL {first('vaccineCode', 'Immunization')}"
    # Observations: one row per value, a panel's components each a row.
    return """
        SELECT json_extract_string(c, '$.code.coding[0].system') AS system,
               json_extract_string(c, '$.code.coding[0].code') AS code
        FROM (SELECT unnest(CASE WHEN json_array_length(resource, '$.component') > 0
                                 THEN CAST(json_extract(resource, '$.component') AS JSON[])
                                 ELSE [CAST(resource AS JSON)] END) AS c
              FROM resources WHERE resource_type = 'Observation') o"""


@pytest.mark.parametrize("table", ["condition_occurrence", "procedure_occurrence", "drug_exposure", "observations"])
def test_concepts_come_from_the_vocabulary_and_unknown_codes_get_0(
    synthetic: tuple[cl.Lake, Path, OmopExportSummary], testdata: Path, table: str
) -> None:
    lake, out, summary = synthetic
    assert summary.vocabulary == str(testdata / GIBLEED) and summary.skipped == {}
    vocabulary = " ".join(f"WHEN '{system}' THEN '{v}'" for system, v in VOCABULARY.items())
    # Found by (vocabulary, code); a non-standard concept maps to its 'Maps to' target.
    expected = f"""
        SELECT e.code AS source_value,
               coalesce(CASE WHEN c.standard_concept = 'S' THEN c.concept_id ELSE r.concept_id_2 END, 0) AS concept_id,
               coalesce(c.concept_id, 0) AS source_concept_id
        FROM ({_expected_codes(table)}) e
        LEFT JOIN v_concept c ON c.vocabulary_id = (CASE e.system {vocabulary} END) AND c.concept_code = e.code
        LEFT JOIN v_concept_relationship r ON r.concept_id_1 = c.concept_id AND r.relationship_id = 'Maps to'"""
    names = ["measurement", "observation"] if table == "observations" else [table]
    exported = " UNION ALL ".join(
        f"SELECT {_prefix(n)}_source_value AS source_value, {_prefix(n)}_concept_id AS concept_id, "
        f"{_prefix(n)}_source_concept_id AS source_concept_id FROM x_{n}"
        for n in names
    )
    with closing(_lake_engine(lake, out, vocab=testdata / GIBLEED)) as eng:
        assert _differences(eng, exported, expected) == (0, 0)
        mapped = _one(eng, f"SELECT count(*) FROM ({exported}) x WHERE concept_id <> 0")
        unmapped = _one(eng, f"SELECT count(*) FROM ({exported}) x WHERE concept_id = 0")
    assert mapped > 0 and unmapped > 0  # GiBleed's vocabulary knows some of the generator's codes, not all
    assert sum(summary.unmapped[n] for n in names) == unmapped


def test_the_unmapped_report_adds_up(synthetic: tuple[cl.Lake, Path, OmopExportSummary]) -> None:
    lake, out, summary = synthetic
    codes_as_text = pacsv.ConvertOptions(column_types={"code": pa.string()})
    report = pacsv.read_csv(out / "unmapped_codes.csv", convert_options=codes_as_text).to_pylist()
    assert report and all(r["rows"] > 0 for r in report)
    by_table: dict[str, int] = {}
    for r in report:
        by_table[r["table"]] = by_table.get(r["table"], 0) + r["rows"]
    assert {t: n for t, n in summary.unmapped.items() if n} == by_table
    with closing(_lake_engine(lake, out)) as eng:
        for table, column in _omop.MAIN_CONCEPT.items():
            counted = eng.query(f"""
                SELECT {_prefix(table)}_source_value AS code, count(*) AS n
                FROM x_{table} WHERE {column} = 0 GROUP BY 1""").to_pylist()
            listed = [r for r in report if r["table"] == table]
            assert sorted((r["code"], r["n"]) for r in counted) == sorted((r["code"], r["rows"]) for r in listed)


def test_people_visits_and_periods_of_a_fhir_lake(synthetic: tuple[cl.Lake, Path, OmopExportSummary]) -> None:
    lake, out, summary = synthetic
    with closing(_lake_engine(lake, out)) as eng:
        patients = eng.query("""
            SELECT id, json_extract_string(resource, '$.gender') AS gender,
                   json_extract_string(resource, '$.birthDate') AS birth
            FROM resources WHERE resource_type = 'Patient' ORDER BY id""").to_pylist()
        people = eng.query("SELECT * FROM x_person ORDER BY person_id").to_pylist()
        # Not from an OMOP CDM: numbered 1, 2, ... in patient id order, the FHIR id kept as the source value.
        assert [p["person_id"] for p in people] == list(range(1, len(patients) + 1))
        assert [p["person_source_value"] for p in people] == [p["id"] for p in patients]
        for patient, person in zip(patients, people, strict=True):
            assert person["gender_concept_id"] == {"male": 8507, "female": 8532}.get(patient["gender"], 0)
            born = dt.date(person["year_of_birth"], person["month_of_birth"], person["day_of_birth"])
            assert born.isoformat() == patient["birth"]
        assert _one(eng, "SELECT count(*) FROM x_person WHERE race_concept_id IN (8527, 8516, 8515, 8657, 8557)") > 0
        ethnicities = "SELECT count(*) FROM x_person WHERE ethnicity_concept_id IN (38003563, 38003564)"
        assert _one(eng, ethnicities) == len(people)
        classes = eng.query("""
            SELECT json_extract_string(resource, '$.class.code') AS code, count(*) AS n FROM resources
            WHERE resource_type = 'Encounter' GROUP BY 1""").to_pylist()
        expected: dict[int, int] = {}
        for c in classes:
            concept = {"IMP": 9201, "ACUTE": 9201, "NONAC": 9201, "EMER": 9203, "AMB": 9202}.get(c["code"], 0)
            expected[concept] = expected.get(concept, 0) + c["n"]
        visits = eng.query("SELECT visit_concept_id AS c, count(*) AS n FROM x_visit_occurrence GROUP BY 1").to_pylist()
        assert {v["c"]: v["n"] for v in visits} == expected
        # Every event's visit is an exported visit; every person with events has one period spanning them.
        for table in ("condition_occurrence", "drug_exposure", "procedure_occurrence", "measurement", "observation"):
            dangling = f"""
                SELECT count(*) FROM x_{table} WHERE visit_occurrence_id IS NOT NULL
                AND visit_occurrence_id NOT IN (SELECT visit_occurrence_id FROM x_visit_occurrence)"""
            assert _one(eng, dangling) == 0, table
        outside = """
            SELECT count(*) FROM x_condition_occurrence c JOIN x_observation_period p USING (person_id)
            WHERE c.condition_start_date < p.observation_period_start_date
               OR c.condition_start_date > p.observation_period_end_date"""
        assert _one(eng, outside) == 0
        periods = "SELECT count(DISTINCT person_id) FROM x_observation_period"
        assert _one(eng, periods) == summary.rows["observation_period"]
        deaths = "SELECT count(*) FROM resources WHERE resource_type = 'Patient' AND resource LIKE '%deceasedDateTime%'"
        assert summary.rows["death"] == _one(eng, deaths)


# --- a de-identified lake ---------------------------------------------------------------------------------------------


def test_a_deidentified_lake_exports_under_pseudonyms(
    synthetic: tuple[cl.Lake, Path, OmopExportSummary], tmp_path: Path
) -> None:
    source, identified, _ = synthetic
    keygen(tmp_path / "keys" / "deid.key")
    deidentify(source, tmp_path / "deid", key_file=tmp_path / "keys" / "deid.key", views=False)
    lake = cl.open_lake(tmp_path / "deid", create=False)
    summary = export_omop(lake, tmp_path / "omop", release_date=RELEASED)
    patients = {r["id"] for r in lake.sql("SELECT id FROM resources WHERE resource_type = 'Patient'").to_pylist()}
    originals = {r["id"] for r in source.sql("SELECT id FROM resources WHERE resource_type = 'Patient'").to_pylist()}
    people = pacsv.read_csv(tmp_path / "omop" / "person.csv").to_pylist()
    assert summary.rows["person"] == len(patients) == len(people) > 0
    assert {p["person_source_value"] for p in people} == patients and not patients & originals
    before = {p["person_source_value"] for p in pq.read_table(identified / "person.parquet").to_pylist()}
    assert before == originals
    text = "".join(f.read_text() for f in (tmp_path / "omop").glob("*.csv"))
    assert not any(original in text for original in originals)
    assert min(summary.rows[t] for t in ("visit_occurrence", "condition_occurrence", "measurement")) > 0
    # Without a vocabulary a FHIR code has no concept: every condition is unmapped.
    assert summary.vocabulary is None
    assert summary.unmapped["condition_occurrence"] == summary.rows["condition_occurrence"]
    strings = pacsv.ConvertOptions(strings_can_be_null=False, quoted_strings_can_be_null=False)
    cdm_source = pacsv.read_csv(tmp_path / "omop" / "cdm_source.csv", convert_options=strings)
    assert cdm_source.column("vocabulary_version").to_pylist() == [""]


# --- the output folder ------------------------------------------------------------------------------------------------


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_rerun_replaces_the_export_and_a_crash_leaves_it_untouched(
    handmade: tuple[cl.Lake, Path, OmopExportSummary], monkeypatch: pytest.MonkeyPatch
) -> None:
    lake, out, _ = handmade
    before = _digest(out)
    vocab = out.parent / "vocabulary"

    def crash(*args: object) -> None:
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(_omop, "_write_unmapped", crash)
        with pytest.raises(RuntimeError, match="disk full"):
            export_omop(lake, out, vocab=vocab, release_date=RELEASED)
    assert _digest(out) == before
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".")] == []
    export_omop(lake, out, vocab=vocab, release_date=RELEASED)
    assert _digest(out) == before  # the same lake gives the same bytes


def test_refuses_a_folder_holding_something_else_and_bad_options(
    synthetic: tuple[cl.Lake, Path, OmopExportSummary], tmp_path: Path
) -> None:
    lake, _, _ = synthetic
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds no OMOP export"):
        export_omop(lake, tmp_path / "taken")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    with pytest.raises(ConfigError, match="unknown export format"):
        export_omop(lake, tmp_path / "x", format="xlsx")  # type: ignore[arg-type]
    with pytest.raises(LakeError, match="no FHIR resources"):
        export_omop(cl.open_lake(tmp_path / "empty"), tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


# --- Spark ------------------------------------------------------------------------------------------------------------


@pytest.mark.spark
def test_spark_writes_the_same_export(
    synthetic: tuple[cl.Lake, Path, OmopExportSummary], testdata: Path, tmp_path: Path
) -> None:
    lake, duck_out, duck = synthetic
    spark = export_omop(
        lake, tmp_path / "spark", vocab=testdata / GIBLEED, engine="spark", format="parquet", release_date=RELEASED
    )
    assert (spark.rows, spark.unmapped, spark.skipped) == (duck.rows, duck.unmapped, duck.skipped)
    for table in TABLES:
        name = f"{table}.parquet"
        assert pq.read_table(tmp_path / "spark" / name).equals(pq.read_table(duck_out / name)), table
    assert (tmp_path / "spark" / "unmapped_codes.csv").read_bytes() == (duck_out / "unmapped_codes.csv").read_bytes()
