"""Every ingest case gives the same tables on DuckDB and on Spark."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

import carelake as cl
from conftest import snapshot

pytestmark = pytest.mark.spark


def _versions_and_bad_lines(folder: Path) -> list[list[Path]]:
    first, second = folder / "1.ndjson", folder / "2.ndjson"
    p = {"resourceType": "Patient", "id": "p1", "birthDate": "1970"}
    first.write_bytes(orjson.dumps(p) + b"\n" + orjson.dumps(p) + b"\n{bad\n\n" + b'{"resourceType": "Nope"}\n')
    second.write_bytes(orjson.dumps({**p, "birthDate": "1971"}) + b"\n" + orjson.dumps(p) + b"\n")
    return [[first], [second], [first, second]]


def _line_endings(folder: Path) -> list[list[Path]]:
    """CRLF, a stray CR before the LF and no final newline: the stored text and its hash must not keep them."""
    source = folder / "endings.ndjson"
    p = {"resourceType": "Patient", "id": "p2", "gender": "female"}
    o = {"resourceType": "Observation", "id": "o2", "status": "final", "subject": {"reference": "Patient/p2"}}
    source.write_bytes(orjson.dumps(p) + b"\r\n" + orjson.dumps(o) + b"\r\r\n" + orjson.dumps({**o, "id": "o3"}))
    return [[source]]


CASES: dict[str, Callable[[Path, Path], list[list[Path]]]] = {
    "synthea-bulk": lambda data, _: [[data / "synthea-fhir-r4/bulk-ndjson-10-patients"]],
    "synthea-bundles": lambda data, _: [[data / "synthea-fhir-r4/transaction-bundles"]],
    "spec-examples": lambda data, _: [[data / "fhir-r4-examples/spec-examples"]],
    "validator-cases": lambda data, _: [[data / "fhir-r4-examples/validator-cases/input"]],
    "versions-duplicates-quarantine": lambda _, tmp: _versions_and_bad_lines(tmp),
    "line-endings": lambda _, tmp: _line_endings(tmp),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_duckdb_and_spark_build_equal_tables(case: str, testdata: Path, tmp_path: Path) -> None:
    runs = CASES[case](testdata, tmp_path)
    summaries = {}
    for engine in ("duckdb", "spark"):
        summaries[engine] = [cl.ingest_fhir(paths, lake=tmp_path / engine, engine=engine).to_dict() for paths in runs]
    for a, b in zip(summaries["duckdb"], summaries["spark"], strict=True):
        for key in (
            "read",
            "stored",
            "duplicates",
            "new_versions",
            "quarantined",
            "quarantined_by_rule",
            "by_type",
            "references",
        ):
            assert a[key] == b[key], key
    duck, spark = snapshot(tmp_path / "duckdb"), snapshot(tmp_path / "spark")
    assert duck.keys() == spark.keys()
    for name in duck:
        assert duck[name].schema == spark[name].schema, name
        assert duck[name].equals(spark[name]), name
    # And the views read the same through either engine.
    query = "SELECT resource_type, count(*) AS n FROM resources GROUP BY 1 ORDER BY 1"
    lake = cl.open_lake(tmp_path / "duckdb")
    assert lake.sql(query).to_pylist() == lake.sql(query, engine="spark").to_pylist()


@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_writing_bronze_in_ranges_of_records_builds_the_same_tables(
    engine: str, testdata: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from carelake.sources.fhir import _ingest

    runs = [[testdata / "synthea-fhir-r4/bulk-ndjson-10-patients"], _versions_and_bad_lines(tmp_path)[-1]]
    summaries = {}
    for name, per_write in (("whole", _ingest.RECORDS_PER_WRITE), ("ranges", 2500)):
        monkeypatch.setattr(_ingest, "RECORDS_PER_WRITE", per_write)
        lake = tmp_path / name
        summaries[name] = [cl.ingest_fhir(paths, lake=lake, engine=engine).to_dict() for paths in runs]
    files = {name: cl.open_lake(tmp_path / name).files("fhir_resources") for name in summaries}
    assert len(files["ranges"]) == len(files["whole"]) + 2  # the first run's 6,069 records: three ranges, not one
    keys = ("read", "stored", "duplicates", "new_versions", "quarantined", "by_type", "references")
    counts = {name: [{k: s[k] for k in keys} for s in runs] for name, runs in summaries.items()}
    assert counts["whole"] == counts["ranges"]
    whole, ranges = snapshot(tmp_path / "whole"), snapshot(tmp_path / "ranges")
    assert whole.keys() == ranges.keys()
    for name in whole:
        assert whole[name].equals(ranges[name]), name
