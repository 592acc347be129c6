"""One small synthetic export shared by the synth tests (generating it takes about a second)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from carelake.synth import SynthSummary, generate_fhir


@dataclass
class Export:
    """A generated export, read back: resources by type, and ground-truth tables as lists of rows."""

    path: Path
    summary: SynthSummary
    resources: dict[str, list[dict[str, Any]]]
    truth: dict[str, list[dict[str, Any]]]
    _indexes: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)

    def by_id(self, resource_type: str) -> dict[str, list[dict[str, Any]]]:
        """Resources of one type by id (a list: duplicate-id faults share ids)."""
        if resource_type not in self._indexes:
            index: dict[str, list[dict[str, Any]]] = defaultdict(list)
            for resource in self.resources.get(resource_type, []):
                index[resource["id"]].append(resource)
            self._indexes[resource_type] = index
        return self._indexes[resource_type]


def read_export(path: Path, summary: SynthSummary) -> Export:
    resources = {
        file.stem: [orjson.loads(line) for line in file.read_bytes().splitlines()]
        for file in sorted(path.glob("*.ndjson"))
    }
    truth = {file.stem: pq.read_table(file).to_pylist() for file in sorted((path / "ground_truth").glob("*.parquet"))}
    return Export(path, summary, resources, truth)


@pytest.fixture(scope="session")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    path = tmp_path_factory.mktemp("synth") / "export"
    summary = generate_fhir(path, patients=250, seed=11, faults=0.05, duplicates=0.08)
    return read_export(path, summary)
