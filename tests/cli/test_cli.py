"""The CLI as a user runs it: a real process, --help with an example everywhere, --json, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from carelake.cli._app import _register_commands, app


def carelake(*args: str, lake: Path | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["--lake", str(lake)] if lake else []
    return subprocess.run(
        [sys.executable, "-m", "carelake", *prefix, *args], capture_output=True, text=True, timeout=300
    )


def _commands() -> list[list[str]]:
    _register_commands()
    root = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(group: object, path: list[str]) -> None:
        for name, command in getattr(group, "commands", {}).items():
            if getattr(command, "commands", None):
                walk(command, [*path, name])
            else:
                found.append([*path, name])

    walk(root, [])
    return found


def test_every_command_is_found() -> None:
    assert {" ".join(c) for c in _commands()} >= {"ingest fhir", "status", "sql"}


@pytest.mark.parametrize("command", _commands(), ids=" ".join)
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = carelake(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Example:" in result.stdout and f"carelake {' '.join(command)}" in result.stdout


def test_version() -> None:
    result = carelake("--version")
    assert result.returncode == 0 and result.stdout.startswith("carelake ")


def test_ingest_json_status_and_sql(tmp_path: Path, testdata: Path) -> None:
    lake = tmp_path / "lake"
    result = carelake("ingest", "fhir", str(testdata / "synthea-fhir-r4/bulk-ndjson-10-patients"), "--json", lake=lake)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["stored"] == 6065 and summary["quarantined"] == 4
    assert "records read" in result.stderr  # the human summary goes to stderr

    status = json.loads(carelake("status", "--json", lake=lake).stdout)
    assert {t["name"]: t["rows"] for t in status["tables"]}["fhir_resources"] == 6065

    result = carelake(
        "sql", "select resource_type, count(*) as n from resources group by 1 order by 1", "--format", "csv", lake=lake
    )
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["resource_type"]: int(r["n"]) for r in rows}["Patient"] == 13

    nested = "select [1, 2] as l, {'a': 'x'} as s, NULL::INT[] as n"
    rows = list(csv.DictReader(io.StringIO(carelake("sql", nested, "--format", "csv", lake=lake).stdout)))
    assert rows == [{"l": "[1,2]", "s": '{"a":"x"}', "n": ""}]  # nested cells as JSON text

    result = carelake("sql", "select id from Patient order by id limit 2", "--format", "json", lake=lake)
    assert len(json.loads(result.stdout)) == 2
    table = carelake("sql", "select count(*) as n from Encounter", lake=lake)
    assert "1215" in table.stdout


def test_handled_error_is_one_line_with_hint_and_exit_1(tmp_path: Path) -> None:
    result = carelake("ingest", "fhir", str(tmp_path / "missing.ndjson"), lake=tmp_path / "lake")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: no such file or directory") and lines[1].startswith("hint:")
    assert "Traceback" not in result.stderr


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    result = carelake("--verbose", "status", lake=tmp_path / "none")
    assert result.returncode == 1 and "Traceback" in result.stderr and "no lake at" in result.stderr


def test_bad_sql_is_a_handled_error(tmp_path: Path, testdata: Path) -> None:
    lake = tmp_path / "lake"
    carelake("ingest", "fhir", str(testdata / "fhir-r4-examples/spec-examples/patient-example.json"), lake=lake)
    result = carelake("sql", "select nope from resources", lake=lake)
    assert result.returncode == 1 and result.stderr.startswith("error: query failed on duckdb")


def test_usage_error_exits_2() -> None:
    result = carelake("ingest", "fhir", "--engine", "oracle", "x")
    assert result.returncode == 2


def test_strict_exits_1_and_commits_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in.ndjson"
    source.write_text('{"resourceType": "Patient", "id": "a"}\nnot json\n')
    result = carelake("ingest", "fhir", str(source), "--strict", lake=tmp_path / "lake")
    assert result.returncode == 1 and "nothing was committed" in result.stderr
    assert f"{source.resolve()}:2" in result.stderr  # the bad record is named by file and line
    assert "invalid-json" in result.stderr
    status = json.loads(carelake("status", "--json", lake=tmp_path / "lake").stdout)
    assert [t["name"] for t in status["tables"]] == ["quarantine"]


def test_view_run_over_source_and_lake_and_view_sql(tmp_path: Path, testdata: Path) -> None:
    view = testdata / "sql-on-fhir-v2/spec/example-viewdefinitions/patient_demographics.json"
    bulk = testdata / "synthea-fhir-r4/bulk-ndjson-10-patients"
    result = carelake("view", "run", str(view), "--source", str(bulk), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 13 and set(rows[0]) == {"id", "date_of_birth", "gender"}

    lake = tmp_path / "lake"
    carelake("ingest", "fhir", str(bulk), lake=lake)
    out = tmp_path / "patients.parquet"
    result = carelake("view", "run", str(view), "--format", "parquet", "--out", str(out), lake=lake)
    assert result.returncode == 0, result.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(out).num_rows == 13

    sql = carelake("view", "sql", str(view)).stdout
    assert "resources" in sql and "cl_" in sql


def test_view_standard_by_name_and_materialize_standard(tmp_path: Path, testdata: Path) -> None:
    bulk = testdata / "synthea-fhir-r4/bulk-ndjson-10-patients"
    result = carelake("view", "run", "encounters", "--source", str(bulk), "--format", "ndjson")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    encounters = len((bulk / "Encounter.000.ndjson").read_text().splitlines())
    assert len(rows) == encounters == 1215
    assert {"length_of_stay_days", "discharge_disposition"} <= set(rows[0])

    lake = tmp_path / "lake"
    carelake("ingest", "fhir", str(bulk), lake=lake)
    result = carelake("view", "materialize", "--standard", "--json", lake=lake)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["encounters"] == encounters and counts["patients"] == 13 and len(counts) == 11
    assert "silver.encounters: 1,215 row(s)" in result.stderr

    missing = carelake("view", "run", "encounter")
    assert missing.returncode == 1 and "standard view: allergies, conditions" in missing.stderr
    nothing = carelake("view", "materialize", lake=lake)
    assert nothing.returncode == 1 and "--standard" in nothing.stderr


def test_view_run_bad_definition_names_the_element(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "ViewDefinition", "resource": "Patient", "select": [{"column": [{"name": "x"}]}]}')
    result = carelake("view", "sql", str(bad))
    assert result.returncode == 1 and "select[0].column[0]" in result.stderr
