"""OMOP CDM ingestion: GiBleed lands with exact counts, bad rows are quarantined where they are, and OMOP data
feeds views, quality and cohorts like FHIR data does."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

import carelake as cl
from carelake.errors import InputError, LakeError, StrictModeError
from carelake.sources.omop import cdm_tables, ingest_omop

GIBLEED = "omop-eunomia-gibleed/cdm_v5.3"
# Stored rows per table: the sample's rows less those breaking the v5.3.1 DDL (see the quarantine test).
GIBLEED_STORED = {
    "person": 2694,
    "observation_period": 5343,
    "visit_occurrence": 1037,
    "condition_occurrence": 65332,
    "drug_exposure": 63323,
    "procedure_occurrence": 37409,
    "measurement": 41870,
    "observation": 1471,
    "condition_era": 65719,
    "drug_era": 52508,
    "concept": 444,
    "concept_ancestor": 65690,
    "vocabulary": 91,
    "cdm_source": 1,
    "death": 0,
}


def test_gibleed_lands_with_exact_counts(gibleed: tuple[cl.Lake, cl.OmopIngestSummary]) -> None:
    lake, summary = gibleed
    assert summary.cdm_version == "5.3" and summary.version_from == "cdm_source.cdm_version"
    assert summary.files == 37 and summary.reconciles
    assert summary.read == 411_136
    for table, stored in GIBLEED_STORED.items():
        assert summary.by_table[table]["stored"] == stored, table
        assert lake.catalog.tables[f"omop_{table}"].rows == stored, table
    # Typed as the DDL says, lineage kept.
    person = lake.sql("SELECT * FROM omop_person LIMIT 1")
    assert str(person.schema.field("year_of_birth").type) == "int64"
    assert str(person.schema.field("birth_datetime").type).startswith("timestamp")
    assert person.column("cl_source_file")[0].as_py().endswith("PERSON.csv.gz")
    # A column the CDM does not define (the sample's misspelt cost column) is kept, not dropped.
    assert summary.extra_columns == {"cost": ["reveue_code_source_value"]}


def test_gibleed_ddl_violations_are_quarantined_with_their_line(gibleed: tuple[cl.Lake, cl.OmopIngestSummary]) -> None:
    lake, summary = gibleed
    # The sample reuses drug_exposure and measurement ids (vaccines and labs share id sequences) and leaves
    # vocabulary_reference empty where v5.3.1 requires it: real DDL violations, kept in quarantine.
    assert summary.quarantined_by_rule == {"omop-duplicate-key": 6573, "omop-required": 34}
    assert summary.by_table["drug_exposure"]["quarantined"] == 4384
    rows = lake.sql(
        "SELECT source_file, line, rule, message, record FROM quarantine WHERE rule = 'omop-required' ORDER BY line"
    ).to_pylist()
    assert len(rows) == 34
    assert rows[0]["source_file"].endswith("VOCABULARY.csv.gz")
    assert rows[0]["message"] == "vocabulary.vocabulary_reference is required by the CDM but empty"
    with gzip.open(rows[0]["source_file"], "rt", newline="") as handle:
        line = list(csv.reader(handle))[rows[0]["line"] - 1]
    assert json.loads(rows[0]["record"])["vocabulary_id"] == line[0]


def test_gibleed_rerun_adds_nothing(gibleed: tuple[cl.Lake, cl.OmopIngestSummary], testdata: Path) -> None:
    lake, first = gibleed
    before = {n: t.rows for n, t in lake.catalog.tables.items()}
    again = ingest_omop(testdata / GIBLEED, lake=lake)
    assert again.stored == 0 and again.duplicates == first.stored and again.reconciles
    assert again.fhir["stored"] == 0
    assert {n: t.rows for n, t in lake.catalog.tables.items()} == before


def test_gibleed_as_fhir(gibleed: tuple[cl.Lake, cl.OmopIngestSummary]) -> None:
    lake, summary = gibleed
    by_type = {t: c["stored"] for t, c in summary.fhir["by_type"].items()}
    # Each clinical row is one resource; CVX drug exposures are immunizations.
    assert by_type["Patient"] == 2694
    assert by_type["Encounter"] == 1037
    assert by_type["Condition"] == 65332
    assert by_type["MedicationRequest"] + by_type["Immunization"] == 63323
    assert by_type["Observation"] == 41870 + 1471
    assert by_type["Procedure"] == 37409
    condition = json.loads(
        lake.sql("SELECT resource FROM resources WHERE id = 'omop-condition-1'").column("resource")[0].as_py()
    )
    codes = {(c["system"], c["code"]) for c in condition["code"]["coding"]}
    assert ("http://snomed.info/sct", "444470001") in codes  # from CONCEPT: concept 40479768
    assert ("https://fhir-terminology.ohdsi.org", "40479768") in codes
    assert condition["subject"]["reference"] == "Patient/omop-person-1"
    assert condition["onsetDateTime"] == "1981-08-10T00:00:00+00:00"


def test_gibleed_feeds_views_quality_and_cohorts(gibleed: tuple[cl.Lake, cl.OmopIngestSummary]) -> None:
    from carelake.cohorts import build_cohort
    from carelake.fhir import materialize_views, standard_views
    from carelake.quality import run_quality

    lake, _ = gibleed
    counts = materialize_views(standard_views(), lake=lake)
    assert counts["patients"] == 2694 and counts["encounters"] == 1037 and counts["conditions"] == 65332
    # Gastrointestinal hemorrhage: OMOP concept 192671 is SNOMED 74474003 in the sample's CONCEPT table.
    gi_bleeds = lake.sql("SELECT count(*) AS n FROM conditions WHERE snomed_code = '74474003'").column("n")[0].as_py()
    assert (
        gi_bleeds
        == lake.sql("SELECT count(*) AS n FROM omop_condition_occurrence WHERE condition_concept_id = 192671")
        .column("n")[0]
        .as_py()
        > 0
    )

    result = run_quality(lake, as_of="2019-07-01")
    omop = {
        r["check_id"]: r
        for r in lake.sql(
            f"SELECT check_id, status, numerator FROM quality_results WHERE run_id = '{result.run_id}' "
            "AND check_type LIKE 'omop_%'"
        ).to_pylist()
    }
    # What DQD reports on this sample: events pointing at visits the sample does not have.
    assert (
        omop["omop_foreign_key:omop_condition_occurrence:condition_occurrence.visit_occurrence_id"]["status"] == "fail"
    )
    assert omop["omop_foreign_key:omop_observation_period:observation_period.person_id"]["numerator"] == 2649
    assert (
        omop["omop_concept_mapped:omop_condition_occurrence:condition_occurrence.condition_concept_id"]["status"]
        == "pass"
    )

    from carelake.features import build_features

    cohort = build_cohort("readmission-30d", lake=lake)
    # Every GiBleed visit is inpatient; 896 are of adults, none is followed by another within 30 days.
    assert cohort.attrition[1]["index_events"] == 896
    assert cohort.index_events == 895 and cohort.outcomes == 0
    assert build_features("readmission-30d", lake=lake).rows == 896  # 895 labelled + 1 still at risk


def test_gibleed_through_cohort_features_and_model(gibleed: tuple[cl.Lake, cl.OmopIngestSummary]) -> None:
    """GiBleed's own question, asked with the FHIR-side pipeline: GI bleeding after starting an NSAID."""
    from carelake.cohorts import build_cohort
    from carelake.features import build_features
    from carelake.fhir import materialize_views, standard_views
    from carelake.models import train_model

    lake, _ = gibleed
    if "patients" not in lake.catalog.tables:
        materialize_views(standard_views(), lake=lake)
    cohort = build_cohort(Path(__file__).parents[2] / "data" / "gibleed-nsaid-gi-bleed.yaml", lake=lake)
    assert (
        cohort.attrition[0]["index_events"]
        == lake.sql(
            "SELECT count(*) AS n FROM omop_drug_exposure WHERE drug_concept_id IN "
            "(1118088, 40162359, 19019273, 1115171, 19019979, 19078461)"
        )
        .column("n")[0]
        .as_py()
    )
    assert cohort.index_events > 1000 and cohort.outcomes >= 30
    features = build_features("nsaid-gi-bleed", lake=lake)
    assert features.rows == cohort.index_events + cohort.open_events
    model = train_model("nsaid-gi-bleed", lake=lake)
    assert model.test_rows > 300 and 0.5 < model.metrics["auroc"] <= 1.0


def test_gibleed_exports_to_meds(gibleed: tuple[cl.Lake, cl.OmopIngestSummary], tmp_path: Path) -> None:
    """MEDS from an OMOP-sourced lake: subjects keep their person_id (the OMOP export is tested in tests/interop)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from carelake.fhir import materialize_views, standard_views
    from carelake.interop import export_meds

    lake, _ = gibleed
    if "patients" not in lake.catalog.tables:
        materialize_views(standard_views(), lake=lake)
    summary = export_meds(lake, tmp_path / "meds")
    assert summary.subjects == 2694
    data = pq.read_table(tmp_path / "meds" / "data")
    subjects = set(data.column("subject_id").to_pylist())
    assert subjects == set(lake.sql("SELECT person_id FROM omop_person").column(0).to_pylist())
    bleeds = data.filter(pc.equal(data.column("code"), "SNOMED/74474003")).num_rows
    assert (
        bleeds
        == lake.sql("SELECT count(*) FROM omop_condition_occurrence WHERE condition_concept_id = 192671")
        .column(0)[0]
        .as_py()
    )


# --- small hand-made CDMs ----------------------------------------------------------------------------------------


def _write_cdm(folder: Path, version: str, rows: dict[str, list[dict[str, object]]], *, source: bool = True) -> Path:
    folder.mkdir(parents=True)
    for table, records in rows.items():
        columns = cdm_tables(version)[table].columns
        with (folder / f"{table.upper()}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([c.upper() for c in columns])
            for record in records:
                writer.writerow(["" if record.get(c) is None else record[c] for c in columns])
    if source:
        with (folder / "cdm_source.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            fields = cdm_tables(version)["cdm_source"].fields
            writer.writerow([f.name for f in fields])
            filler = {"date": "2020-01-01", "integer": "0", "varchar": "x"}
            writer.writerow([f"v{version}" if f.name == "cdm_version" else filler[f.type] for f in fields])
    return folder


PEOPLE = [
    {
        "person_id": 1,
        "gender_concept_id": 8532,
        "year_of_birth": 1950,
        "race_concept_id": 8527,
        "ethnicity_concept_id": 0,
    },
    {
        "person_id": 2,
        "gender_concept_id": 8507,
        "year_of_birth": "19x5",
        "race_concept_id": 0,
        "ethnicity_concept_id": 0,
    },
    {"person_id": 3, "gender_concept_id": None, "year_of_birth": 1970, "race_concept_id": 0, "ethnicity_concept_id": 0},
]
VISITS = [
    {"visit_occurrence_id": 10, "person_id": 1, "visit_concept_id": 9201, "visit_start_date": "2020-01-01",
     "visit_end_date": "2020-01-05", "visit_type_concept_id": 32817},
]  # fmt: skip


def test_bad_rows_are_quarantined_with_file_line_and_column(tmp_path: Path) -> None:
    cdm = _write_cdm(tmp_path / "cdm", "5.4", {"person": PEOPLE, "visit_occurrence": VISITS})
    with (cdm / "PERSON.csv").open("a") as handle:
        handle.write("4,8532\n")  # a short row
    summary = ingest_omop(cdm, lake=tmp_path / "lake")
    assert summary.cdm_version == "5.4" and summary.reconciles
    assert summary.by_table["person"] == {"read": 4, "stored": 1, "duplicates": 0, "quarantined": 3}
    problems = {(p["line"], p["rule"], p["message"]) for p in summary.problems}
    assert (3, "omop-type", "person.year_of_birth does not hold a valid integer") in problems
    assert (4, "omop-required", "person.gender_concept_id is required by the CDM but empty") in problems
    assert (5, "omop-field-count", "person: 2 fields where the header has 18") in problems
    assert all(p["source_file"].endswith("PERSON.csv") for p in summary.problems)
    # The refused value is kept in the lake (for repair), never in the message.
    assert all("19x5" not in p["message"] for p in summary.problems)
    record = cl.open_lake(tmp_path / "lake").sql("SELECT record FROM quarantine WHERE line = 3").column(0)[0].as_py()
    assert json.loads(record)["year_of_birth"] == "19x5"


def test_version_from_columns_and_mismatch(tmp_path: Path) -> None:
    cdm = _write_cdm(tmp_path / "cdm54", "5.4", {"person": PEOPLE[:1], "visit_occurrence": VISITS}, source=False)
    summary = ingest_omop(cdm, lake=tmp_path / "lake")
    assert (summary.cdm_version, summary.version_from) == ("5.4", "visit table columns")
    other = _write_cdm(tmp_path / "cdm53", "5.3", {"person": PEOPLE[:1]})
    with pytest.raises(LakeError, match=r"holds OMOP CDM 5\.4"):
        ingest_omop(other, lake=tmp_path / "lake")
    with pytest.raises(InputError, match=r"cannot tell the CDM version"):
        ingest_omop(_write_cdm(tmp_path / "bare", "5.4", {"person": PEOPLE[:1]}, source=False), lake=tmp_path / "l2")


def test_missing_required_column_and_strict(tmp_path: Path) -> None:
    cdm = _write_cdm(tmp_path / "cdm", "5.4", {"person": PEOPLE})
    text = (cdm / "PERSON.csv").read_text().splitlines()
    header = text[0].split(",")
    drop = header.index("YEAR_OF_BIRTH")
    (cdm / "PERSON.csv").write_text(
        "\n".join(",".join(v for i, v in enumerate(line.split(",")) if i != drop) for line in text) + "\n"
    )
    with pytest.raises(
        InputError, match=r"PERSON.csv:1: the header lacks the required CDM person column\(s\) year_of_birth"
    ):
        ingest_omop(cdm, lake=tmp_path / "lake")
    good = _write_cdm(tmp_path / "cdm2", "5.4", {"person": PEOPLE})
    with pytest.raises(StrictModeError):
        ingest_omop(good, lake=tmp_path / "lake", strict=True)
    assert "omop_person" not in cl.open_lake(tmp_path / "lake").catalog.tables  # nothing committed


def test_parquet_gzip_and_duckdb_inputs_store_the_same_rows(tmp_path: Path) -> None:
    cdm = _write_cdm(tmp_path / "csv", "5.4", {"person": PEOPLE[:1], "visit_occurrence": VISITS})
    as_csv = ingest_omop(cdm, lake=tmp_path / "a")
    # The same tables as gzipped CSV, as Parquet, and inside a DuckDB database.
    gz, parquet = tmp_path / "gz", tmp_path / "parquet"
    gz.mkdir(), parquet.mkdir()
    database = duckdb.connect(str(tmp_path / "cdm.duckdb"))
    for file in cdm.glob("*.csv"):
        (gz / f"{file.name}.gz").write_bytes(gzip.compress(file.read_bytes()))
        table = pacsv.read_csv(file)
        pq.write_table(table, parquet / f"{file.stem.lower()}.parquet")
        database.register("t", table)
        database.execute(f"CREATE TABLE {file.stem.lower()} AS SELECT * FROM t")
        database.unregister("t")
    database.close()
    columns = "person_id, gender_concept_id, year_of_birth, race_concept_id"
    expected = cl.open_lake(tmp_path / "a").sql(f"SELECT {columns} FROM omop_person").to_pylist()
    for name, source in {"gz": gz, "parquet": parquet, "duckdb": tmp_path / "cdm.duckdb"}.items():
        summary = ingest_omop(source, lake=tmp_path / f"lake-{name}")
        assert summary.stored == as_csv.stored and summary.reconciles, name
        assert cl.open_lake(tmp_path / f"lake-{name}").sql(f"SELECT {columns} FROM omop_person").to_pylist() == expected


def test_cli_ingest_omop_json(tmp_path: Path) -> None:
    cdm = _write_cdm(tmp_path / "cdm", "5.4", {"person": PEOPLE[:1], "visit_occurrence": VISITS})

    def carelake(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "carelake", "--lake", str(tmp_path / "lake"), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=300)

    result = carelake("ingest", "omop", str(cdm), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["by_table"]["person"]["stored"] == 1 and summary["fhir"]["by_type"]["Encounter"]["stored"] == 1
    missing = carelake("ingest", "omop", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "no such file or directory" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.spark
def test_spark_stores_the_same_rows(tmp_path: Path) -> None:
    cdm = _write_cdm(tmp_path / "cdm", "5.4", {"person": PEOPLE, "visit_occurrence": VISITS})
    tables = {}
    for engine in ("duckdb", "spark"):
        summary = ingest_omop(cdm, lake=tmp_path / engine, engine=engine)
        assert summary.reconciles and summary.by_table["person"]["stored"] == 1
        lake = cl.open_lake(tmp_path / engine)
        tables[engine] = {
            "person": lake.sql("SELECT person_id, year_of_birth, cl_content_hash FROM omop_person").to_pylist(),
            "visit": lake.sql("SELECT visit_occurrence_id, visit_start_date FROM omop_visit_occurrence").to_pylist(),
            "quarantine": lake.sql("SELECT line, rule, message FROM quarantine ORDER BY line").to_pylist(),
            "resources": lake.sql("SELECT id, content_hash FROM resources ORDER BY id").to_pylist(),
        }
    assert tables["duckdb"] == tables["spark"]
