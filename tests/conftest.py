"""Shared fixtures: the public corpora, engines to parametrize over, fresh lakes, table snapshots."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

REPO = Path(__file__).resolve().parents[1]
TESTDATA = (REPO.parent / "shared" / "testdata").resolve()

# Columns that legitimately differ between two runs of the same job.
RUN_COLUMNS = ("run_id", "ingested_at")

ENGINES = ["duckdb", pytest.param("spark", marks=pytest.mark.spark)]


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"the public corpora are missing: expected {TESTDATA} (../shared/testdata beside the repo)")
    return TESTDATA


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def lake_path(tmp_path: Path) -> Path:
    return tmp_path / "lake"


def snapshot(lake_path: Path, *, engine: str = "duckdb") -> dict[str, pa.Table]:
    """Every committed table, without run-specific columns, sorted: comparable across runs and engines."""
    import carelake as cl

    lake = cl.open_lake(lake_path, create=False)
    tables = {}
    for name in sorted(lake.catalog.tables):
        table = lake.sql(f"SELECT * FROM {name}", engine=engine)
        keep = [c for c in table.column_names if c not in RUN_COLUMNS]
        table = table.select(keep)
        sortable = [(c, "ascending") for c in keep if not pa.types.is_nested(table.schema.field(c).type)]
        tables[name] = table.sort_by(sortable) if table.num_rows else table
    return tables
