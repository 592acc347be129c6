"""Shared fixtures: the public corpora, engines to parametrize over, fresh lakes, table snapshots."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def viewed_lake(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], tuple[Path, Any, str]]:
    """``make(patients, seed)`` -> (root, lake, as_of): generated, ingested, standard views materialised."""
    import carelake as cl
    from carelake.fhir import materialize_views, standard_views

    def make(patients: int, seed: int) -> tuple[Path, Any, str]:
        root = tmp_path_factory.mktemp("lake")
        cl.generate_fhir(root / "fhir", patients=patients, seed=seed)
        lake = cl.open_lake(root / "lake")
        cl.ingest_fhir([root / "fhir" / "manifest.json"], lake=lake)
        materialize_views(standard_views(), lake=lake)
        as_of = json.loads((root / "fhir" / "manifest.json").read_text())["transactionTime"][:10]
        return root, lake, as_of

    return make


@pytest.fixture(scope="session")
def gibleed(testdata: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """(lake, summary): the Eunomia GiBleed OMOP CDM ingested once per session (OMOP ingestion and the exports)."""
    import carelake as cl

    lake = cl.open_lake(tmp_path_factory.mktemp("gibleed") / "lake")
    return lake, cl.ingest_omop(testdata / "omop-eunomia-gibleed" / "cdm_v5.3", lake=lake)
