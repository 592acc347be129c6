"""The main job end to end, small: generate, ingest, report; re-runnable; never touches a foreign folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import carelake as cl
from carelake.demo import run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end_and_reruns_cleanly(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = run_demo(out, patients=60, seed=3)
    ingest = first.stages["ingest"]
    assert ingest["read"] == ingest["stored"] + ingest["new_versions"] + ingest["duplicates"] + ingest["quarantined"]
    assert ingest["stored"] > 1000
    html = Path(first.report).read_text()
    assert "Current resources by type" in html and "plotly" in html.lower()
    lake = cl.open_lake(first.lake, create=False)
    patients = lake.sql("SELECT count(*) FROM Patient").column(0)[0].as_py()
    assert patients >= 60
    # The standard views are silver tables; every current patient has a demographics row.
    assert first.stages["views"]["rows"]["patients"] == patients
    encounters = lake.sql("SELECT count(*) FROM Encounter").column(0)[0].as_py()
    assert first.stages["views"]["rows"]["encounters"] == encounters
    assert "Analysis-ready views" in html and "mean length of stay (days)" in html
    # The quality suite ran and found the planted faults (the demo plants 1 %).
    quality = first.stages["quality"]
    assert quality["resolved"] > 500 and quality["failed"] > 0 and "Data quality" in html
    # Matching linked the planted duplicate patients.
    match = first.stages["match"]
    assert match["precision"] >= 0.95 and match["recall"] >= 0.9 and "Patient matching" in html
    # Analyses run on the de-identified copy, which the leak sweep found clean, as it found the report.
    deid = first.stages["deid"]
    assert deid["reconciles"] and deid["verify"]["passed"] and deid["verify_report"]["passed"]
    assert deid["risk"]["records"] == patients - sum(deid["patients_excluded"].values())
    assert "De-identification" in html and "Re-identification risk" in html
    deid_lake = cl.open_lake(first.deid_lake, create=False)
    assert deid_lake.sql("SELECT count(*) FROM patients").column(0)[0].as_py() == deid["risk"]["records"]
    # The shipped cohorts are built on the de-identified lake, their attrition in the report.
    assert set(first.stages["cohorts"]) == {"readmission-30d", "diabetes-onset"} and "Attrition of" in html
    assert (
        deid_lake.sql("SELECT count(outcome) FROM cohort_readmission_30d").column(0)[0].as_py()
        == (first.stages["cohorts"]["readmission-30d"]["index_events"])
    )
    cohort = first.stages["cohorts"]["readmission-30d"]
    assert first.stages["features"]["readmission-30d"]["rows"] == cohort["index_events"] + cohort["open_events"]
    # 60 patients are too few to train on: each task says so rather than failing the demo.
    assert set(first.stages["models"]) == {"readmission-30d", "diabetes-onset"}
    assert all("skipped" in m or "metrics" in m for m in first.stages["models"].values())
    # The de-identified lake exported to MEDS and OMOP, with no identifier in either.
    exports = first.stages["exports"]
    assert exports["verify"]["passed"]
    assert exports["meds"]["subjects"] == deid["risk"]["records"]
    assert exports["omop"]["rows"]["person"] == deid["risk"]["records"]
    assert "Exports of the de-identified lake" in html
    # The web application's demo users: one per role, tokens in a file only its owner can read.
    web = first.stages["web"]
    assert web["users"] == ["admin", "analyst", "clinician", "patient"]
    assert oct(Path(web["tokens_file"]).stat().st_mode & 0o777) == "0o600"

    second = run_demo(out, patients=60, seed=3)
    assert second.stages["ingest"]["stored"] == ingest["stored"]  # replaced, not appended to
    runs = [r for r in cl.open_lake(second.lake).status()["runs"] if r["job"] == "ingest-fhir"]
    assert len(runs) == 1


def test_demo_refuses_a_folder_it_did_not_create(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("precious")
    with pytest.raises(cl.ConfigError, match="was not created by `carelake demo`"):
        run_demo(tmp_path, patients=10)
    assert (tmp_path / "thesis.tex").exists()


@pytest.mark.slow
def test_demo_cli_prints_figures_and_next_steps(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "carelake", "demo", "--patients", "40", "--out", str(tmp_path / "d"), "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert Path(summary["report"]).is_file()
    assert " --lake " in result.stderr and " status" in result.stderr and "records" in result.stderr
    assert "standard views as silver tables" in result.stderr and "matching" in result.stderr
    assert "exports    MEDS" in result.stderr and "leak sweep: no identifier found" in result.stderr
    assert " serve --analysis-lake " in result.stderr and "sign in as admin with token " in result.stderr
