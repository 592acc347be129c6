"""The public surface: exports, options, the output folder, progress and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import carelake.synth as synth
from carelake.errors import ConfigError
from carelake.synth import generate_fhir


def test_all_is_complete() -> None:
    public = {name for name in dir(synth) if not name.startswith("_")}
    assert set(synth.__all__) == public


@pytest.mark.parametrize(
    "options",
    [
        {"patients": -1},
        {"patients": 2.5},
        {"patients": True},
        {"seed": -3},
        {"faults": 1.5},
        {"duplicates": -0.1},
        {"faults": "lots"},
        {"start_year": 2020, "end_year": 2019},
        {"end_year": 2200},
        {"workers": 0},
    ],
)
def test_bad_options_are_config_errors(tmp_path: Path, options: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as caught:
        generate_fhir(tmp_path / "out", **options)  # type: ignore[arg-type]
    assert caught.value.hint
    assert not (tmp_path / "out").exists()


def test_refuses_a_folder_that_is_not_an_earlier_export(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        generate_fhir(tmp_path, patients=2)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_replaces_an_earlier_export_and_leaves_no_staging(tmp_path: Path) -> None:
    out = tmp_path / "export"
    generate_fhir(out, patients=3, seed=1)
    first = (out / "Patient.ndjson").read_bytes()
    generate_fhir(out, patients=5, seed=2)
    assert (out / "Patient.ndjson").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]


def test_zero_patients_still_writes_a_valid_export(tmp_path: Path) -> None:
    summary = generate_fhir(tmp_path / "out", patients=0)
    assert "Patient" not in summary.resources
    assert summary.resources["Organization"] > 0
    assert (tmp_path / "out" / "manifest.json").exists()
    assert summary.ground_truth["patients"] == 0


class RecordingProgress:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def start(self, description: str, total: float | None) -> None:
        self.calls.append(("start", (description, total)))

    def advance(self, amount: float) -> None:
        self.calls.append(("advance", amount))

    def stop(self) -> None:
        self.calls.append(("stop", None))


def test_progress_is_reported_per_patient(tmp_path: Path) -> None:
    progress = RecordingProgress()
    generate_fhir(tmp_path / "out", patients=70, progress=progress)
    assert progress.calls[0] == ("start", ("generating patients", 70))
    assert progress.calls[-1] == ("stop", None)
    assert sum(amount for kind, amount in progress.calls if kind == "advance") == 70  # type: ignore[misc]


def test_summary_to_dict_is_json(export) -> None:
    summary = export.summary
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["patients"] == 250
    assert data["resources"]["Patient"] == len(export.resources["Patient"])
    assert data["total_resources"] == sum(len(r) for r in export.resources.values())
    assert data["patients_per_s"] > 0
    assert all(Path(p).exists() for p in data["files"])
