"""Same seed, same bytes; the seed, not the machine or the worker count, decides the data."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from carelake.synth import generate_fhir


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    options = {"patients": 70, "seed": 5, "faults": 0.05, "duplicates": 0.1}
    generate_fhir(tmp_path / "a", **options)
    generate_fhir(tmp_path / "b", **options)
    first, second = _digests(tmp_path / "a"), _digests(tmp_path / "b")
    assert first == second
    assert "ground_truth/faults.parquet" in first


def test_different_seed_gives_different_people(tmp_path: Path) -> None:
    generate_fhir(tmp_path / "a", patients=20, seed=5)
    generate_fhir(tmp_path / "b", patients=20, seed=6)
    assert (tmp_path / "a" / "Patient.ndjson").read_bytes() != (tmp_path / "b" / "Patient.ndjson").read_bytes()


def test_worker_processes_do_not_change_the_bytes(tmp_path: Path) -> None:
    generate_fhir(tmp_path / "one", patients=140, seed=3, faults=0.02, duplicates=0.05, workers=1)
    generate_fhir(tmp_path / "two", patients=140, seed=3, faults=0.02, duplicates=0.05, workers=2)
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")


def test_a_larger_run_starts_with_the_same_patients(tmp_path: Path) -> None:
    generate_fhir(tmp_path / "small", patients=10, seed=9)
    generate_fhir(tmp_path / "large", patients=80, seed=9)
    small = (tmp_path / "small" / "Patient.ndjson").read_bytes().splitlines()
    large = (tmp_path / "large" / "Patient.ndjson").read_bytes().splitlines()
    assert large[: len(small)] == small


def test_faults_and_duplicates_do_not_change_who_the_patients_are(tmp_path: Path) -> None:
    generate_fhir(tmp_path / "clean", patients=30, seed=4)
    generate_fhir(tmp_path / "dirty", patients=30, seed=4, faults=0.1, duplicates=0.2)
    clean = tmp_path / "clean" / "ground_truth" / "patients.parquet"
    dirty = tmp_path / "dirty" / "ground_truth" / "patients.parquet"
    columns = ["patient_id", "birth_date", "sex", "race", "conditions_at_end"]
    assert pq.read_table(clean, columns=columns).equals(pq.read_table(dirty, columns=columns))


def test_python_hash_randomisation_does_not_change_the_bytes(tmp_path: Path) -> None:
    script = (
        "import sys; from carelake.synth import generate_fhir; generate_fhir(sys.argv[1], patients=40, seed=8, "
        "faults=0.05, duplicates=0.1)"
    )
    for name, hash_seed in (("a", "1"), ("b", "2")):
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / name)],
            check=True,
            timeout=120,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
