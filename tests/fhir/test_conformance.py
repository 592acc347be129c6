"""The SQL-on-FHIR v2 conformance suite, every case on every engine.

Cases that do not pass yet are listed in ``KNOWN_GAPS`` with the reason; they run as strict xfails,
so fixing a gap turns its test red until the entry is removed (and docs/views.md updated).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carelake.fhir.conformance import Case, check, load_cases, main

SUITE = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "sql-on-fhir-v2" / "tests"
REPORT = Path(__file__).resolve().parents[2] / "docs" / "sql-on-fhir-test-report.json"

# (engine, "file: title") -> why it does not pass yet
KNOWN_GAPS: dict[tuple[str, str], str] = {}

CASES: list[Case] = load_cases(SUITE) if SUITE.is_dir() else []
ENGINES = ["duckdb", pytest.param("spark", marks=[pytest.mark.spark, pytest.mark.slow])]


@pytest.fixture(scope="module", autouse=True)
def _suite_present() -> None:
    if not CASES:
        pytest.fail(f"the SQL-on-FHIR v2 suite is missing: expected {SUITE} (../shared/testdata beside the repo)")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
@pytest.mark.parametrize("engine", ENGINES)
def test_case(case: Case, engine: str, request: pytest.FixtureRequest) -> None:
    reason = KNOWN_GAPS.get((engine, case.id))
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    passed, why = check(case, engine)
    assert passed, why


def test_suite_is_complete() -> None:
    assert len({c.file for c in CASES}) == 22
    assert len(CASES) == 134
    assert {key for _, key in KNOWN_GAPS} <= {c.id for c in CASES}, "a known gap names a case that does not exist"


def test_report_script(tmp_path: Path) -> None:
    suite = tmp_path / "tests"
    suite.mkdir()
    for name in ("fn_first.json", "fn_join.json"):
        (suite / name).symlink_to(SUITE / name)
    out = tmp_path / "report.json"
    assert main([str(out), "--tests", str(suite)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"fn_first.json", "fn_join.json"}
    assert report["fn_join.json"]["tests"][0] == {"name": "join with comma", "result": {"passed": True}}


def test_committed_report_matches_known_gaps() -> None:
    # docs/sql-on-fhir-test-report.json is the DuckDB run, regenerated on purpose with
    # `python -m carelake.fhir.conformance docs/sql-on-fhir-test-report.json`.
    report = json.loads(REPORT.read_text())
    results = {f"{file.removesuffix('.json')}: {t['name']}": t["result"]["passed"]
               for file, entry in report.items() for t in entry["tests"]}  # fmt: skip
    assert set(results) == {c.id for c in CASES}
    assert {k for k, passed in results.items() if not passed} == {k for e, k in KNOWN_GAPS if e == "duckdb"}
