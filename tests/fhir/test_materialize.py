"""Views written into the lake's silver layer: atomic, re-runnable, equal on both engines."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import carelake as cl
from carelake.fhir import load_views, materialize_views
from carelake.fhir._by_run import current_by_run

EXAMPLES = "sql-on-fhir-v2/spec/example-viewdefinitions"


@pytest.fixture
def synthea_lake(tmp_path: Path, testdata: Path) -> Path:
    lake = tmp_path / "lake"
    cl.ingest_fhir([testdata / "synthea-fhir-r4"], lake=lake)
    return lake


def test_materialize_writes_silver_tables_and_reruns_cleanly(synthea_lake: Path, testdata: Path) -> None:
    lake = cl.open_lake(synthea_lake)
    views = load_views([testdata / EXAMPLES])
    counts = materialize_views(views, lake=lake)
    assert counts["patient_demographics"] == 17  # 13 bulk + 4 bundle patients
    again = materialize_views(views, lake=lake)
    assert again == counts  # replaced, not appended
    tables = {t["name"]: t for t in lake.status()["tables"]}
    assert tables["patient_demographics"]["layer"] == "silver"
    assert tables["patient_demographics"]["rows"] == 17
    direct = cl.run_view(views[[v["name"] for v in views].index("observations")], lake=lake)
    assert lake.sql("SELECT count(*) FROM observations").column(0)[0].as_py() == direct.num_rows


def test_current_resources_are_counted_for_the_types_asked(synthea_lake: Path) -> None:
    lake = cl.open_lake(synthea_lake)
    with closing(lake.connect("duckdb")) as eng:
        every = current_by_run(eng)
        some = current_by_run(eng, ["Patient", "AllergyIntolerance", "Basic"])  # Basic: none stored
        none = current_by_run(eng, [])
    assert some == {t: every[t] for t in ("Patient", "AllergyIntolerance")}
    assert sum(every["Patient"].values()) == 17 and none == {}


def test_bad_view_commits_nothing(synthea_lake: Path) -> None:
    lake = cl.open_lake(synthea_lake)
    before = lake.catalog.version
    good = {"name": "ok", "resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
    bad = {"name": "bad", "resource": "Patient", "select": [{"column": [{"name": "x"}]}]}
    with pytest.raises(cl.ViewDefinitionError):
        materialize_views([good, bad], lake=lake)
    with pytest.raises(cl.ViewDefinitionError, match="name must be a SQL identifier"):
        materialize_views([{**good, "name": "no spaces allowed"}], lake=lake)
    with pytest.raises(cl.ConfigError, match="bronze table or view is already called 'Patient'"):
        materialize_views([{**good, "name": "Patient"}], lake=lake)
    assert lake.catalog.version == before


@pytest.mark.spark
def test_materialize_on_spark_equals_duckdb(synthea_lake: Path, testdata: Path, tmp_path: Path) -> None:
    views = load_views([testdata / EXAMPLES])
    lake = cl.open_lake(synthea_lake)
    materialize_views(views, lake=lake, engine="duckdb")
    duck = {v["name"]: lake.sql(f"SELECT * FROM {v['name']}") for v in views}
    materialize_views(views, lake=lake, engine="spark")
    for name, table in duck.items():
        spark = lake.sql(f"SELECT * FROM {name}")
        cols = [(c, "ascending") for c in table.column_names]
        assert table.sort_by(cols).to_pylist() == spark.sort_by(cols).to_pylist(), name


def test_materialize_cli(synthea_lake: Path, testdata: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "carelake",
            "--lake",
            str(synthea_lake),
            "view",
            "materialize",
            str(testdata / EXAMPLES),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["patient_demographics"] == 17


def _last_summary(lake: cl.Lake) -> dict:
    return json.loads((lake.root / lake.catalog.runs[-1]["manifest"]).read_text())["summary"]


def _rows(lake: cl.Lake, name: str) -> list[tuple]:
    return sorted(tuple(str(v) for v in r.values()) for r in lake.sql(f"SELECT * FROM {name}").to_pylist())


def test_refresh_computes_only_what_changed(engine: str, tmp_path: Path, testdata: Path) -> None:
    """A new day's data: only its resources, and those of runs that lost a resource to a new version, are read."""
    lake = cl.open_lake(tmp_path / "lake")
    bulk = testdata / "synthea-fhir-r4" / "bulk-ndjson-10-patients"
    cl.ingest_fhir([bulk], lake=lake, engine=engine)
    views = cl.fhir.standard_views()
    materialize_views(views, lake=lake, engine=engine)
    first = _last_summary(lake)["resources_computed"]
    assert first["conditions"] == lake.sql("SELECT count(*) FROM Condition").column(0)[0].as_py()

    # Day two: four more patients as transaction bundles, and a corrected record of one known patient.
    patient = json.loads((bulk / "Patient.000.ndjson").read_text().splitlines()[0])
    patient["gender"] = "unknown" if patient.get("gender") != "unknown" else "other"
    update = tmp_path / "day2" / "Patient.ndjson"
    update.parent.mkdir()
    update.write_text(json.dumps(patient) + "\n")
    day2 = cl.ingest_fhir([testdata / "synthea-fhir-r4" / "transaction-bundles", update], lake=lake, engine=engine)
    assert day2.new_versions == 1
    counts = materialize_views(views, lake=lake, engine=engine)
    computed = _last_summary(lake)["resources_computed"]
    new_conditions = day2.by_type["Condition"]["stored"]
    assert computed["conditions"] == new_conditions  # the first day's conditions were not read again
    assert computed["patients"] == lake.sql("SELECT count(*) FROM Patient").column(0)[0].as_py()  # day one changed
    # The tables are read back through DuckDB whichever engine wrote them: they are Parquet files either way.
    incremental = {v["name"]: _rows(lake, v["name"]) for v in views}

    assert materialize_views(views, lake=lake, engine=engine) == counts  # nothing new: nothing read
    assert set(_last_summary(lake)["resources_computed"].values()) == {0}
    assert {v["name"]: _rows(lake, v["name"]) for v in views} == incremental

    # Computing everything again (on DuckDB, so Spark's incremental tables are also checked across engines).
    assert materialize_views(views, lake=lake, full=True) == counts
    assert {v["name"]: _rows(lake, v["name"]) for v in views} == incremental
    genders = {r["id"]: r["gender"] for r in lake.sql("SELECT id, gender FROM patients").to_pylist()}
    assert genders[patient["id"]] == patient["gender"]  # the corrected record, not the first
