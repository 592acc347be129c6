"""Memory stays flat as the population grows: patients are written as they finish, never accumulated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_MEASURE = """
import resource, sys
from carelake.synth import generate_fhir
generate_fhir(sys.argv[1], patients=int(sys.argv[2]), seed=1, faults=0.02, duplicates=0.02)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _peak_rss_mib(folder: Path, patients: int) -> float:
    result = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(folder), str(patients)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return int(result.stdout.split()[-1]) / 1024.0


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_patients(tmp_path: Path) -> None:
    small = _peak_rss_mib(tmp_path / "small", 200)
    large = _peak_rss_mib(tmp_path / "large", 2000)
    # ten times the patients (about 350 MB more output) may cost some buffering and allocator slack
    # (ground-truth row groups, the largest chunk so far), never the whole population
    assert large - small < 80.0, (small, large)
