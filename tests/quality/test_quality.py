"""The data-quality suite: scored against the generator's planted faults, quiet on clean data, run on public
corpora we did not generate, equal on DuckDB and Spark, and usable from the command line."""

from __future__ import annotations

import collections
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import carelake as cl
from carelake.fhir import materialize_views, standard_views
from carelake.quality import RESULTS_TABLE, VIOLATIONS_TABLE, build_checks, check_types, run_quality
from carelake.sources.fhir._r4 import r4_resource_types

AS_OF = "2026-01-01"  # the synthetic export's transactionTime
# The check types that must flag each kind of planted fault.
DETECTED_BY = {
    "implausible-value": {"plausible_value_range"},
    "unit-mixup": {"unit_conversion_suspect", "plausible_value_range"},
    "date-before-birth": {"event_after_birth"},
    "date-after-death": {"event_before_death"},
    "future-date": {"date_not_in_future"},
    "broken-reference": {"reference_resolves"},
    "duplicate-id": {"resource_id_unique"},
    "invalid-code": {"loinc_check_digit", "icd10cm_format"},
}


def _lake(root: Path, *, faults: float) -> cl.Lake:
    cl.generate_fhir(root / "fhir", patients=150, seed=11, faults=faults)
    lake = cl.open_lake(root / "lake")
    cl.ingest_fhir([root / "fhir" / "manifest.json"], lake=lake)
    return lake


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, cl.Lake, cl.quality.QualityRun]:
    root = tmp_path_factory.mktemp("faulty")
    lake = _lake(root, faults=0.03)
    return root, lake, run_quality(lake, as_of=AS_OF)


def test_catalog_is_data_with_more_than_twenty_documented_types() -> None:
    types = check_types()
    assert len(types) >= 20
    assert {t.category for t in types.values()} == {"Conformance", "Completeness", "Plausibility"}
    docs = (Path(__file__).parents[2] / "docs" / "quality.md").read_text()
    for t in types.values():
        assert f"`{t.id}`" in docs, f"{t.id} is not in docs/quality.md"
        assert t.rationale and t.source and t.severity in {"fatal", "error", "warning"}
    # Every instance of every type resolves its template for every R4 resource type, with a unique id.
    checks = build_checks(r4_resource_types(), as_of=AS_OF)
    assert len(checks) > 5000
    assert len({c.id for c in checks}) == len(checks)


def test_every_planted_fault_kind_is_found(faulty: tuple[Path, cl.Lake, cl.quality.QualityRun]) -> None:
    root, lake, run = faulty
    flagged = collections.defaultdict(set)
    for v in lake.sql(f"SELECT check_id, resource_type, id FROM {VIOLATIONS_TABLE}").to_pylist():
        flagged[v["check_id"].split(":")[0]].add((v["resource_type"], v["id"]))
    found, planted = collections.Counter(), collections.Counter()
    for fault in pq.read_table(root / "fhir" / "ground_truth" / "faults.parquet").to_pylist():
        keys = {(fault["resource_type"], fault["resource_id"]), (fault["resource_type"], fault["written"])}
        planted[fault["kind"]] += 1
        found[fault["kind"]] += any(keys & flagged[t] for t in DETECTED_BY[fault["kind"]])
    assert set(planted) == set(DETECTED_BY)
    recall = {kind: found[kind] / planted[kind] for kind in planted}
    assert all(r >= 0.95 for r in recall.values()), sorted(recall.items())
    assert run.fatal_failures == ["resource_id_unique:id"]  # duplicate ids are fatal for pipelines


def test_matched_types_count_what_one_query_per_instance_would(
    faulty: tuple[Path, cl.Lake, cl.quality.QualityRun],
) -> None:
    """A `match` type judges every instance in one scan of its records; each instance must still get exactly
    the counts of its own query, written here by hand from the same CSV."""
    _, lake, run = faulty
    got = {(r["check_type"], r["field"]): (r["numerator"], r["denominator"]) for r in run.results.to_pylist()}
    observations = cl.fhir.run_view(next(v for v in standard_views() if v["name"] == "observations"), lake=lake)
    con = duckdb.connect()
    con.register("observations", observations)
    rows = list(csv.DictReader((Path(cl.quality.__file__).parent / "plausible_ranges.csv").open(newline="")))
    units: dict[str, list[str]] = collections.defaultdict(list)
    for row in rows:
        units[row["loinc"]].append(row["unit"])
        where = f"loinc_code = '{row['loinc']}' AND unit = '{row['unit']}' AND value IS NOT NULL"
        want = con.sql(
            f"SELECT coalesce(count_if(value < {row['low']} OR value > {row['high']}), 0) AS n, count(*) AS d "
            f"FROM observations WHERE {where}"
        ).fetchall()[0]
        field = f"observations.value ({row['loinc']} {row['display']}, {row['unit']})"
        assert got[("plausible_value_range", field)] == want, field
    for loinc, allowed in units.items():
        listed = ", ".join(f"'{u}'" for u in allowed)
        want = con.sql(
            f"SELECT coalesce(count_if(unit IS NULL OR unit NOT IN ({listed})), 0) AS n, count(*) AS d "
            f"FROM observations WHERE loinc_code = '{loinc}' AND value IS NOT NULL"
        ).fetchall()[0]
        display = next(r["display"] for r in rows if r["loinc"] == loinc)
        assert got[("plausible_unit", f"observations.unit ({loinc} {display})")] == want, loinc
    assert sum(n for (t, _), (n, _) in got.items() if t == "plausible_value_range") > 0  # faults were planted


def test_clean_data_raises_almost_no_alarms(tmp_path: Path) -> None:
    run = run_quality(_lake(tmp_path, faults=0.0), as_of=AS_OF)
    assert run.resolved > 500
    assert run.failed <= 0.01 * run.resolved, [r["check_id"] for r in run.results.to_pylist() if r["status"] == "fail"]
    assert not run.fatal_failures


def test_results_history_and_violations_are_kept_right(faulty: tuple[Path, cl.Lake, cl.quality.QualityRun]) -> None:
    _, lake, first = faulty
    second = run_quality(lake, as_of=AS_OF)
    runs = lake.sql(f"SELECT run_id, count(*) AS n FROM {RESULTS_TABLE} GROUP BY 1").to_pylist()
    assert sorted(r["n"] for r in runs) == [first.checks, second.checks]  # history: one row per check per run
    latest = lake.sql(f"SELECT DISTINCT run_id FROM {VIOLATIONS_TABLE}").column(0).to_pylist()
    assert latest == [second.run_id]  # violations: the latest run only, never piled up
    failed = {r["check_id"]: r["numerator"] for r in second.results.to_pylist() if r["numerator"]}
    assert failed == {r["check_id"]: r["numerator"] for r in first.results.to_pylist() if r["numerator"]}
    # Examples are locators only: Type/id, never values.
    for r in second.results.to_pylist():
        assert all(re.fullmatch(r"[A-Z][A-Za-z]+/[A-Za-z0-9.\-]+", e) for e in r["examples"])


def test_synthea_and_spec_examples(tmp_path: Path, testdata: Path) -> None:
    """What the suite finds in public corpora we did not generate (documented in docs/quality.md)."""
    synthea = cl.open_lake(tmp_path / "synthea")
    cl.ingest_fhir([testdata / "synthea-fhir-r4"], lake=synthea)
    run = run_quality(synthea, as_of="2026-11-28")
    failed = {r["check_id"] for r in run.results.to_pylist() if r["status"] == "fail"}
    assert "element_populated:MedicationRequest:dosageInstruction" in failed  # most Synthea orders lack a dosage
    assert "event_before_death:Encounter:encounters.start" in failed  # a few encounters after death
    assert not run.fatal_failures and run.resolved > 700

    spec = cl.open_lake(tmp_path / "spec")
    cl.ingest_fhir([testdata / "fhir-r4-examples" / "spec-examples"], lake=spec)
    run = run_quality(spec)
    results = {r["check_id"]: r for r in run.results.to_pylist()}
    assert run.resolved > 2000  # 72 resource types
    # The spec examples point at resources that are not among them.
    assert results["reference_resolves:Observation:(references)"]["status"] == "fail"
    # DeviceMetric.parent references a Device in R4, the example points at a DeviceComponent (an STU3 type).
    assert results["reference_target_type:DeviceMetric:parent"]["status"] == "fail"


def test_cli_writes_report_and_fails_pipelines_on_fatal(
    tmp_path: Path, faulty: tuple[Path, cl.Lake, cl.quality.QualityRun]
) -> None:
    _, lake, _ = faulty
    out = tmp_path / "q"
    command = [sys.executable, "-m", "carelake", "--lake", str(lake.root), "quality", "run", "--as-of", AS_OF]
    result = subprocess.run(
        [*command, "--out", str(out), "--full", "--json"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 1, result.stderr  # a fatal check failed
    summary = json.loads(result.stdout)
    assert summary["fatal_failures"] == ["resource_id_unique:id"] and summary["resolved"] > 500
    html = (out / "report.html").read_text()
    assert "Data quality" in html and "Failed checks" in html and "Quality runs over time" in html
    bad = subprocess.run([*command[:-1], "2026-13"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "is not a date" in bad.stderr and "Traceback" not in bad.stderr


KEYS = ["check_id", "numerator", "denominator", "status", "examples"]


def _last_summary(lake: cl.Lake) -> dict:
    return json.loads((lake.root / lake.catalog.runs[-1]["manifest"]).read_text())["summary"]


def test_a_new_day_reads_only_its_resources(tmp_path: Path, testdata: Path) -> None:
    """Element checks count over per-resource facts, and facts of runs that did not change are not read again."""
    lake = cl.open_lake(tmp_path / "lake")
    bulk = testdata / "synthea-fhir-r4" / "bulk-ndjson-10-patients"
    cl.ingest_fhir([bulk], lake=lake)
    run_quality(lake, as_of="2026-11-28")
    counts = {r["resource_type"]: r["n"] for r in lake.sql(
        "SELECT resource_type, count(*) AS n FROM resources GROUP BY 1").to_pylist()}  # fmt: skip
    assert _last_summary(lake)["resources_computed"] == counts

    # Day two: four more patients as transaction bundles, and a corrected record of one known patient.
    patient = json.loads((bulk / "Patient.000.ndjson").read_text().splitlines()[0])
    patient["gender"] = "unknown" if patient.get("gender") != "unknown" else "other"
    update = tmp_path / "day2" / "Patient.ndjson"
    update.parent.mkdir()
    update.write_text(json.dumps(patient) + "\n")
    day2 = cl.ingest_fhir([testdata / "synthea-fhir-r4" / "transaction-bundles", update], lake=lake)
    incremental = run_quality(lake, as_of="2026-11-28")
    computed = _last_summary(lake)["resources_computed"]
    assert computed["Condition"] == day2.by_type["Condition"]["stored"]  # the first day's were not read again
    assert computed["Patient"] == lake.sql("SELECT count(*) FROM Patient").column(0)[0].as_py()  # day one changed
    assert computed["AllergyIntolerance"] == day2.by_type.get("AllergyIntolerance", {}).get("stored", 0)

    full = run_quality(lake, as_of="2026-11-28", full=True)
    assert incremental.results.select(KEYS).to_pylist() == full.results.select(KEYS).to_pylist()
    again = run_quality(lake, as_of="2026-11-28")  # nothing new: no facts read
    assert set(_last_summary(lake)["resources_computed"].values()) == {0}
    assert again.results.select(KEYS).to_pylist() == full.results.select(KEYS).to_pylist()


@pytest.mark.spark
def test_spark_gives_the_same_results(tmp_path: Path, testdata: Path) -> None:
    """Spark refreshes the facts of a new day over the facts DuckDB kept, and equals DuckDB computing everything."""
    lake = cl.open_lake(tmp_path / "lake")
    cl.ingest_fhir([testdata / "synthea-fhir-r4" / "transaction-bundles"], lake=lake)
    run_quality(lake, as_of="2026-11-28")
    bulk = testdata / "synthea-fhir-r4" / "bulk-ndjson-10-patients"
    day2 = cl.ingest_fhir([bulk / "Patient.000.ndjson", bulk / "AllergyIntolerance.000.ndjson"], lake=lake)
    materialize_views(standard_views(), lake=lake)  # Spark reads the fresh views (their parity is tested apart)
    spark = run_quality(lake, engine="spark", as_of="2026-11-28").results.select(KEYS).to_pylist()
    computed = sum(_last_summary(lake)["resources_computed"].values())
    stored = sum(t["stored"] for t in day2.by_type.values())
    assert stored <= computed < lake.sql("SELECT count(*) FROM resources")[0][0].as_py()
    duck = run_quality(lake, as_of="2026-11-28", full=True).results.select(KEYS).to_pylist()
    assert spark == duck


@pytest.mark.spark
def test_a_value_ending_in_a_newline_breaks_its_format_on_both_engines(tmp_path: Path) -> None:
    """Java's ``$`` (Spark) also matches before a final newline: the format checks end in ``\\z`` instead."""
    records = [
        {"resourceType": "Patient", "id": "p1", "gender": "female\n", "birthDate": "1970-01-02"},
        {"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1980-03-04"},
        {"resourceType": "Encounter", "id": "e1", "status": "finished", "subject": {"reference": "Patient/p2\n"}},
    ]
    (tmp_path / "p.ndjson").write_text("".join(json.dumps(r) + "\n" for r in records))
    lake = cl.open_lake(tmp_path / "lake")
    cl.ingest_fhir([tmp_path / "p.ndjson"], lake=lake)
    materialize_views(standard_views(), lake=lake)
    found = {}
    for engine in ("duckdb", "spark"):
        results = run_quality(lake, engine=engine, as_of=AS_OF, full=True).results.to_pylist()
        found[engine] = {r["check_id"]: (r["numerator"], r["denominator"]) for r in results}
    assert found["duckdb"] == found["spark"]
    assert [(c, n) for c, n in found["duckdb"].items() if c.startswith("primitive_format") and n[0]] == [
        ("primitive_format:Patient:gender", (1, 2))
    ]
