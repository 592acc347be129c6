"""``generate_fhir``: run the simulation chunk by chunk and stream a Bulk Data export with its ground truth.

Patients are simulated in fixed chunks of ``CHUNK`` patients; chunk ``i`` draws from its own random streams
derived from ``(seed, i)``, so a run's bytes do not depend on how many worker processes made them, and the
first N patients of a larger run are the same people as a run of N. The export is written into a hidden
staging folder next to ``out`` and moved into place when complete: a crashed run leaves nothing at ``out``.
"""

from __future__ import annotations

import gc
import multiprocessing
import shutil
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

from carelake._version import __version__
from carelake.errors import CarelakeError, ConfigError
from carelake.progress import NoProgress, Progress
from carelake.synth._calendar import calendar_for
from carelake.synth._draws import streams
from carelake.synth._faults import FaultInjector
from carelake.synth._life import Context, PatientLife, Truth
from carelake.synth._output import (
    GROUND_TRUTH,
    MANIFEST,
    MANIFEST_EXTENSION,
    NdjsonWriter,
    TruthWriter,
    serialise,
    truth_columns,
    write_manifest,
)
from carelake.synth._world import World, build_world

CHUNK = 64


@dataclass(frozen=True, slots=True)
class _Options:
    seed: int
    patients: int
    faults: float
    duplicates: float
    start_year: int
    end_year: int


_TRUTH_TABLES = ("patients", "readmissions", "diabetes", "duplicates", "faults")


@dataclass(slots=True)
class _ChunkResult:
    lines: dict[str, bytes]
    counts: dict[str, int]
    truth: dict[str, dict[str, list[Any]]]


@dataclass(frozen=True)
class SynthSummary:
    """What a generator run produced: counts, files, timing."""

    out: Path
    patients: int
    seed: int
    resources: dict[str, int]
    files: tuple[Path, ...]
    ground_truth: dict[str, int]
    bytes_written: int
    seconds: float
    patients_per_s: float
    resources_per_s: float
    workers: int = 1
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def total_resources(self) -> int:
        return sum(self.resources.values())

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (paths as strings), e.g. for ``--json`` output."""
        return {
            "out": str(self.out),
            "patients": self.patients,
            "seed": self.seed,
            "resources": dict(self.resources),
            "total_resources": self.total_resources,
            "files": [str(p) for p in self.files],
            "ground_truth": dict(self.ground_truth),
            "bytes_written": self.bytes_written,
            "seconds": round(self.seconds, 3),
            "patients_per_s": round(self.patients_per_s, 1),
            "resources_per_s": round(self.resources_per_s, 1),
            "workers": self.workers,
            "options": dict(self.options),
        }


def generate_fhir(
    out: str | Path,
    *,
    patients: int = 1000,
    seed: int = 7,
    faults: float = 0.0,
    duplicates: float = 0.0,
    start_year: int = 2015,
    end_year: int = 2025,
    progress: Progress | None = None,
    workers: int = 1,
) -> SynthSummary:
    """Write a synthetic FHIR R4 Bulk Data export of ``patients`` people, with ground truth, into ``out``.

    The same arguments always produce byte-identical files. ``faults`` is the share of clinical resources
    given one data-quality fault; ``duplicates`` the share of patients who also appear as a second Patient
    record. ``workers`` > 1 simulates chunks in that many processes (a script calling this must then guard
    its entry point with ``if __name__ == "__main__":``).

    Examples:
        >>> from carelake.synth import generate_fhir
        >>> summary = generate_fhir("synthetic-export", patients=100, faults=0.02)  # doctest: +SKIP
        >>> summary.resources["Patient"]                                          # doctest: +SKIP
        100
    """
    options = _validate(
        patients=patients,
        seed=seed,
        faults=faults,
        duplicates=duplicates,
        start_year=start_year,
        end_year=end_year,
        workers=workers,
    )
    target = Path(out).resolve()
    _check_target(target)
    staging = target.parent / f".{target.name}.partial"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    progress = progress or NoProgress()
    started = time.perf_counter()
    ndjson = NdjsonWriter(staging)
    truth = TruthWriter(staging / GROUND_TRUTH)
    progress.start("generating patients", patients)
    try:
        world = _world(seed)
        for resource_type in ("Organization", "Practitioner", "Location"):
            resources = [r for t, r in world.resources if t == resource_type]
            ndjson.write(resource_type, serialise(resources), len(resources))
        for result, count in _results(options, workers):
            for resource_type, data in result.lines.items():
                ndjson.write(resource_type, data, result.counts[resource_type])
            for table, columns in result.truth.items():
                truth.add(table, columns)
            progress.advance(count)
        ndjson.close()
        truth_files = truth.close()
        extension = {
            "generator": "carelake.synth",
            "version": __version__,
            "seed": seed,
            "patients": patients,
            "faults": faults,
            "duplicates": duplicates,
            "startYear": start_year,
            "endYear": end_year,
            "groundTruth": [f"{GROUND_TRUTH}/{p.name}" for p in truth_files],
        }
        write_manifest(staging, ndjson, transaction_time=f"{end_year + 1}-01-01T00:00:00Z", extension=extension)
    except BaseException:
        ndjson.close()
        truth.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        progress.stop()
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    seconds = time.perf_counter() - started
    bytes_written = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    files = tuple(
        [target / f"{t}.ndjson" for t in ndjson.types()]
        + [target / MANIFEST]
        + [target / GROUND_TRUTH / p.name for p in truth_files]
    )
    total = sum(ndjson.counts.values())
    return SynthSummary(
        out=target,
        patients=patients,
        seed=seed,
        resources={t: ndjson.counts[t] for t in ndjson.types()},
        files=files,
        ground_truth=dict(truth.rows),
        bytes_written=bytes_written,
        seconds=seconds,
        patients_per_s=patients / seconds if seconds > 0 else 0.0,
        resources_per_s=total / seconds if seconds > 0 else 0.0,
        workers=workers,
        options={"faults": faults, "duplicates": duplicates, "start_year": start_year, "end_year": end_year},
    )


def _validate(
    *, patients: int, seed: int, faults: float, duplicates: float, start_year: int, end_year: int, workers: int
) -> _Options:
    def whole(name: str, value: object, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(
                f"{name} must be a whole number of at least {low}, got {value!r}",
                hint=f"pass {name}={max(low, 1)} or more",
            )
        return value

    def share(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
            raise ConfigError(
                f"{name} must be a share between 0 and 1, got {value!r}", hint=f"for example {name}=0.05 for 5 %"
            )
        return float(value)

    whole("patients", patients, 0)
    whole("seed", seed, 0)
    whole("workers", workers, 1)
    whole("start_year", start_year, 1950)
    whole("end_year", end_year, 1950)
    if end_year < start_year or end_year > 2100:
        raise ConfigError(
            f"the record window {start_year}-{end_year} is not a range of years up to 2100",
            hint="pass start_year <= end_year, e.g. start_year=2015, end_year=2025",
        )
    return _Options(seed, patients, share("faults", faults), share("duplicates", duplicates), start_year, end_year)


def _check_target(target: Path) -> None:
    """Refuse to replace anything but an empty folder or an earlier synthetic export."""
    if not target.exists():
        return
    if not target.is_dir():
        raise ConfigError(f"{target} exists and is not a folder", hint="choose a new folder for the export")
    if not any(target.iterdir()):
        return
    manifest = target / MANIFEST
    try:
        earlier = orjson.loads(manifest.read_bytes())
        ours = MANIFEST_EXTENSION in earlier.get("extension", {})
    except (OSError, orjson.JSONDecodeError, AttributeError):
        ours = False
    if not ours:
        raise ConfigError(
            f"{target} is not empty and is not an earlier synthetic export",
            hint="choose an empty or new folder; carelake only replaces its own synthetic exports",
        )


@lru_cache(maxsize=4)
def _world(seed: int) -> World:
    return build_world(seed)


def _results(options: _Options, workers: int) -> Iterator[tuple[_ChunkResult, int]]:
    """Chunk results in chunk order, computed here or in worker processes (at most 2 per worker in flight)."""
    chunks = [
        (index, min(CHUNK, options.patients - index * CHUNK))
        for index in range((options.patients + CHUNK - 1) // CHUNK)
    ]
    if workers == 1 or len(chunks) <= 1:
        for index, count in chunks:
            yield _simulate_chunk(options, index, count), count
        return
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        window: deque[tuple[Future[_ChunkResult], int]] = deque()
        pending = iter(chunks)
        for index, count in pending:
            window.append((pool.submit(_simulate_chunk, options, index, count), count))
            if len(window) >= 2 * workers:
                break
        while window:
            future, count = window.popleft()
            try:
                result = future.result()
            except BrokenProcessPool as exc:
                raise CarelakeError(
                    "the generator's worker processes stopped before finishing",
                    hint='call generate_fhir under `if __name__ == "__main__":` in scripts, or pass workers=1',
                ) from exc
            following = next(pending, None)
            if following is not None:
                window.append((pool.submit(_simulate_chunk, options, *following), following[1]))
            yield result, count
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while simulating.

    A chunk allocates hundreds of thousands of small, acyclic dicts that reference counting frees on its own;
    collector passes over them cost about a fifth of the run time and reclaim nothing.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _simulate_chunk(options: _Options, index: int, count: int) -> _ChunkResult:
    """Simulate patients ``index * CHUNK`` onwards; pure in its arguments."""
    with _collector_paused():
        return _simulate(options, index, count)


def _simulate(options: _Options, index: int, count: int) -> _ChunkResult:
    cal = calendar_for(options.start_year - 115, options.end_year + 6)
    draws, ids = streams(options.seed, 1, index)
    noise, noise_ids = streams(options.seed, 2, index)
    truth = Truth()
    window_start = cal.day(options.start_year)
    window_end = cal.day(options.end_year, 12, 31)
    context = Context(
        draws=draws,
        ids=ids,
        cal=cal,
        world=_world(options.seed),
        window_start=window_start,
        window_end=window_end,
        end_year=options.end_year,
        duplicate_rate=options.duplicates,
        noise=noise,
        noise_ids=noise_ids,
        truth=truth,
    )
    injector = FaultInjector(noise, noise_ids, cal, rate=options.faults, window_end=window_end)
    lines: dict[str, list[bytes]] = {}
    dumps = orjson.dumps
    for _ in range(count):
        life = PatientLife(context, ids.new())
        life.run()
        truth.faults.extend(injector.inject(life.chart, patient_id=life.id, birth=life.birth, death=life.death))
        # serialise now, so only bytes (not millions of small dicts) stay alive until the chunk is written
        for resource_type, resource in life.chart.items:
            bucket = lines.get(resource_type)
            if bucket is None:
                lines[resource_type] = bucket = []
            bucket.append(dumps(resource))
    return _ChunkResult(
        lines={t: b"\n".join(b) + b"\n" for t, b in lines.items()},
        counts={t: len(b) for t, b in lines.items()},
        truth={table: truth_columns(table, getattr(truth, table)) for table in _TRUTH_TABLES},
    )
