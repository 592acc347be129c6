"""Views written into the lake's silver layer: atomic, re-runnable, equal on both engines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import carelake as cl
from carelake.fhir import load_views, materialize_views

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
