"""A generated lake with the standard views, made once per test module that asks for one."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import carelake as cl
from carelake.fhir import materialize_views, standard_views


@pytest.fixture(scope="module")
def viewed_lake(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], tuple[Path, cl.Lake, str]]:
    """``make(patients, seed)`` -> (root, lake, as_of): generated, ingested, standard views materialised."""

    def make(patients: int, seed: int) -> tuple[Path, cl.Lake, str]:
        root = tmp_path_factory.mktemp("lake")
        cl.generate_fhir(root / "fhir", patients=patients, seed=seed)
        lake = cl.open_lake(root / "lake")
        cl.ingest_fhir([root / "fhir" / "manifest.json"], lake=lake)
        materialize_views(standard_views(), lake=lake)
        as_of = json.loads((root / "fhir" / "manifest.json").read_text())["transactionTime"][:10]
        return root, lake, as_of

    return make
