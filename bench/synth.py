"""Benchmark the synthetic FHIR generator: patients/s, resources/s, MB written and peak memory.

    python bench/synth.py                 # 5,000 patients, one process
    python bench/synth.py 20000 --workers 2 --faults 0.02 --duplicates 0.03

Writes into a temporary folder (deleted afterwards unless --out is given) and prints one line per figure,
plus a JSON line for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

from carelake.synth import generate_fhir


def _peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of its (worker) children, in MiB (Linux reports KiB)."""
    scale = 1024.0 * (1024.0 if sys.platform == "darwin" else 1.0)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / scale
    return own, children


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("patients", nargs="?", type=int, default=5000, help="patients to generate (default 5000)")
    parser.add_argument("--workers", type=int, default=1, help="simulation processes (default 1)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--faults", type=float, default=0.0)
    parser.add_argument("--duplicates", type=float, default=0.0)
    parser.add_argument("--out", type=Path, default=None, help="keep the export here instead of a temporary folder")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="carelake-synth-bench-") as scratch:
        out = args.out or Path(scratch) / "export"
        summary = generate_fhir(
            out,
            patients=args.patients,
            seed=args.seed,
            faults=args.faults,
            duplicates=args.duplicates,
            workers=args.workers,
        )
    own, children = _peak_rss_mib()
    megabytes = summary.bytes_written / 1e6
    figures = {
        "patients": summary.patients,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "seconds": round(summary.seconds, 2),
        "patients_per_s": round(summary.patients_per_s, 1),
        "resources": summary.total_resources,
        "resources_per_s": round(summary.resources_per_s, 0),
        "mb_written": round(megabytes, 1),
        "mb_per_s": round(megabytes / summary.seconds, 1) if summary.seconds else 0.0,
        "peak_rss_mib": round(own, 1),
        "peak_rss_workers_mib": round(children, 1),
    }
    print(f"patients          {figures['patients']:>12,}  ({args.workers} worker(s), {figures['cpus']} CPUs)")
    print(f"seconds           {figures['seconds']:>12}")
    print(f"patients/s        {figures['patients_per_s']:>12,}")
    print(f"resources         {figures['resources']:>12,}")
    print(f"resources/s       {figures['resources_per_s']:>12,.0f}")
    print(f"MB written        {figures['mb_written']:>12,}  ({figures['mb_per_s']} MB/s)")
    print(f"peak RSS MiB      {figures['peak_rss_mib']:>12}  (largest worker: {figures['peak_rss_workers_mib']})")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
