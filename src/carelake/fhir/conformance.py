"""Run the SQL-on-FHIR v2 conformance suite and write the official test report.

The suite (https://github.com/FHIR/sql-on-fhir-v2, ``tests/*.json``) is not shipped with carelake;
point ``--tests`` at a checkout. The report has the format the SQL-on-FHIR implementers' table reads:
``{"basic.json": {"tests": [{"name": "...", "result": {"passed": true}}]}}``.

Usage::

    python -m carelake.fhir.conformance docs/sql-on-fhir-test-report.json \\
        --tests ../shared/testdata/sql-on-fhir-v2/tests --engine duckdb
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_TESTS = Path("../shared/testdata/sql-on-fhir-v2/tests")


@dataclass(frozen=True)
class Case:
    """One test of the suite: a view, the resources it runs over and what it must give."""

    file: str
    title: str
    resources: list[dict[str, Any]]
    view: dict[str, Any]
    expect: list[dict[str, Any]] | None
    expect_columns: list[str] | None
    expect_count: int | None
    expect_error: bool

    @property
    def id(self) -> str:
        return f"{self.file.removesuffix('.json')}: {self.title}"


def load_cases(folder: Path) -> list[Case]:
    """Every test case of every ``*.json`` file in the folder, in file order."""
    cases = []
    for path in sorted(folder.glob("*.json")):
        suite = json.loads(path.read_text(encoding="utf-8"))
        for test in suite["tests"]:
            cases.append(
                Case(
                    file=path.name,
                    title=test["title"],
                    resources=suite.get("resources", []),
                    view=test["view"],
                    expect=test.get("expect"),
                    expect_columns=test.get("expectColumns"),
                    expect_count=test.get("expectCount"),
                    expect_error=bool(test.get("expectError", False)),
                )
            )
    return cases


def _normal(value: Any) -> Any:
    """A value in a form that compares the way the suite means: numbers by value, lists item by item."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        number = float(value)
        return round(number, 9) if math.isfinite(number) else str(number)
    if isinstance(value, list | tuple):
        return [_normal(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _normal(v) for k, v in value.items()}
    return str(value)


def _row_key(row: Mapping[str, Any]) -> str:
    return json.dumps(_normal(dict(row)), sort_keys=True)


def check(case: Case, engine: str) -> tuple[bool, str]:
    """Run one case on an engine: (passed, why not)."""
    from carelake.errors import CarelakeError
    from carelake.fhir import ViewDefinitionError, run_view

    try:
        table = run_view(case.view, resources=case.resources, engine=engine)
    except ViewDefinitionError as exc:
        if case.expect_error:
            return True, ""
        return False, f"unexpected error: {exc}"
    except CarelakeError as exc:  # an engine failure is a failed case, never a passed expectError
        return False, f"{type(exc).__name__}: {exc}"
    if case.expect_error:
        return False, "expected an error, got rows"
    rows = table.to_pylist()
    if case.expect_count is not None and len(rows) != case.expect_count:
        return False, f"expected {case.expect_count} rows, got {len(rows)}"
    if case.expect_columns is not None and table.column_names != case.expect_columns:
        return False, f"expected columns {case.expect_columns}, got {table.column_names}"
    if case.expect is None:
        return True, ""
    if case.expect and case.expect_columns is None:
        wanted = sorted({k for row in case.expect for k in row})
        if sorted(table.column_names) != wanted:
            return False, f"expected columns {wanted}, got {sorted(table.column_names)}"
    expected = Counter(_row_key(row) for row in case.expect)
    actual = Counter(_row_key(row) for row in rows)
    if expected != actual:
        missing = list((expected - actual).elements())[:3]
        extra = list((actual - expected).elements())[:3]
        return False, f"rows differ: missing {missing}, unexpected {extra}"
    return True, ""


def report(cases: Sequence[Case], engine: str) -> dict[str, Any]:
    """The official test report for these cases on one engine."""
    result: dict[str, Any] = {}
    for case in cases:
        passed, _ = check(case, engine)
        result.setdefault(case.file, {"tests": []})["tests"].append({"name": case.title, "result": {"passed": passed}})
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m carelake.fhir.conformance", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write the report (JSON)")
    parser.add_argument("--tests", type=Path, default=DEFAULT_TESTS, help="folder of the suite's tests/*.json")
    parser.add_argument("--engine", default="duckdb", choices=["duckdb", "spark"])
    args = parser.parse_args(argv)
    if not args.tests.is_dir():
        parser.error(f"no test folder at {args.tests}: pass --tests path/to/sql-on-fhir-v2/tests")
    cases = load_cases(args.tests)
    result = report(cases, args.engine)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    passed = sum(t["result"]["passed"] for f in result.values() for t in f["tests"])
    print(f"{args.engine}: {passed}/{len(cases)} passed; report written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
