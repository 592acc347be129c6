"""Scale ladder: the whole pipeline at growing population sizes, stage by stage, beside its peers.

``python bench/scale.py [--patients 1000 10000 100000] [--spark-up-to 1000] [--resume]``

For each size, a synthetic population is generated and taken through every stage the demo runs — ingest,
standard views, quality, patient matching, de-identification, cohorts and features, model training and
scoring — each stage in a fresh interpreter, timed, with the peak RSS of its process tree. Where a peer
exists it runs in the same ladder on the same data: DuckDB's raw NDJSON scan for ingestion, the hand-written
DuckDB SQL of ``bench/views.py`` for the views, a plain scikit-learn pipeline for training. Spark (local
mode) repeats ingestion and views up to ``--spark-up-to`` patients. The CLI's cold start is timed too.

Writes ``bench/out/scale.json``, the charts ``docs/img/scale-*.png`` and the ladder section of
``docs/performance.md`` (between its ``scale-ladder`` markers). Costs that grow faster than the population
show up as a slope above 1 in the log-log fit each table prints.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from _docs import fill
from _measure import measure

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SEED = 7
# Peak disk of a rung per patient (input NDJSON, the lake with its raw copy, de-identification's work, DuckDB's
# spill), measured at 100,000 patients (66 GB, at de-identification), with a margin.
DISK_MB_PER_PATIENT = 0.7

_PRELUDE = """
import json, sys, time
sys.path.insert(0, {bench!r})
root = __import__("pathlib").Path({root!r})
manifest = root / "fhir" / "manifest.json"
as_of = json.loads(manifest.read_text())["transactionTime"][:10] if manifest.exists() else None  # the data's date
start = time.perf_counter()
"""

# Each stage prints one JSON object: "units" (what its throughput counts) and "n" (how many).
STAGES: dict[str, str] = {
    "generate": """
from carelake.synth import generate_fhir
s = generate_fhir(root / "fhir", patients={patients}, seed={seed}, faults=0.01, duplicates=0.02, workers=2)
print(json.dumps({{"units": "resources", "n": sum(s.resources.values()), "mb": s.bytes_written / 1e6}}))
""",
    "ingest": """
import carelake as cl
s = cl.ingest_fhir([root / "fhir" / "manifest.json"], lake=cl.open_lake(root / "lake-{engine}"), engine="{engine}")
assert s.reconciles
print(json.dumps({{"units": "resources", "n": s.read, "stored": s.stored, "quarantined": s.quarantined,
                  "stages": s.stage_seconds}}))
""",
    "views": """
import carelake as cl
from carelake.fhir import materialize_views, standard_views
rows = materialize_views(standard_views(), lake=cl.open_lake(root / "lake-{engine}", create=False), engine="{engine}")
print(json.dumps({{"units": "rows", "n": sum(rows.values())}}))
""",
    "quality": """
import carelake as cl
from carelake.quality import run_quality
lake = cl.open_lake(root / "lake-duckdb", create=False)
q = run_quality(lake, as_of=as_of)
n = lake.sql("SELECT count(*) AS n FROM resources").column("n")[0].as_py()
print(json.dumps({{"units": "resources", "n": n, "checks": q.checks}}))
""",
    "match": """
import carelake as cl
from carelake.demo import _match_accuracy
from carelake.match import match_patients
lake = cl.open_lake(root / "lake-duckdb", create=False)
m = match_patients(lake)
accuracy = _match_accuracy(lake, root / "fhir" / "ground_truth" / "duplicates.parquet")
print(json.dumps({{"units": "patients", "n": m.records, "pairs": m.matched_pairs}} | accuracy))
""",
    "deidentify": """
import shutil
import carelake as cl
from carelake.privacy import Policy, deidentify, keygen
shutil.rmtree(root / "lake-deid", ignore_errors=True)
(root / "keys").mkdir(exist_ok=True)
if not (root / "keys" / "deid.key").exists():
    keygen(root / "keys" / "deid.key")
lake = cl.open_lake(root / "lake-duckdb", create=False)
s = deidentify(lake, root / "lake-deid", key_file=root / "keys" / "deid.key",
               policy=Policy.of("safe-harbor", "shift"), as_of=as_of, views=False)
print(json.dumps({{"units": "resources", "n": s.read, "stages": s.stage_seconds}}))
""",
    "cohorts+features": """
import carelake as cl
from carelake.cohorts import build_cohort, shipped_tasks
from carelake.features import build_features
lake = cl.open_lake(root / "lake-duckdb", create=False)
n = 0
for task in shipped_tasks():
    c = build_cohort(task, lake=lake, as_of=as_of)
    n += build_features(c.name, lake=lake).rows
print(json.dumps({{"units": "index events", "n": n}}))
""",
    "train": """
import carelake as cl
from carelake.models import train_model
m = train_model("readmission-30d", lake=cl.open_lake(root / "lake-duckdb", create=False))
print(json.dumps({{"units": "index events", "n": m.train_rows + m.test_rows}}))
""",
    "score": """
import carelake as cl
from carelake.models import score_model
s = score_model("readmission-30d", lake=cl.open_lake(root / "lake-duckdb", create=False))
print(json.dumps({{"units": "open events", "n": s.scored}}))
""",
}

# A new day's export (1 % more patients, another seed) into the full lake, then every refresh after it.
NEW_DAY = """
import carelake as cl
from carelake.cohorts import build_cohort, shipped_tasks
from carelake.features import build_features
from carelake.fhir import materialize_views, standard_views
from carelake.models import score_model
from carelake.quality import run_quality
from carelake.synth import generate_fhir
generate_fhir(root / "day2", patients=max({patients} // 100, 10), seed={seed} + 1, faults=0.01, duplicates=0.02)
lake = cl.open_lake(root / "lake-duckdb", create=False)
seconds = {{}}
started = time.perf_counter()
s = cl.ingest_fhir([root / "day2" / "manifest.json"], lake=lake)
seconds["ingest"] = time.perf_counter() - started
started = time.perf_counter()
materialize_views(standard_views(), lake=lake)
seconds["views"] = time.perf_counter() - started
started = time.perf_counter()
run_quality(lake, as_of=as_of)
seconds["quality"] = time.perf_counter() - started
started = time.perf_counter()
for task in shipped_tasks():
    build_features(build_cohort(task, lake=lake, as_of=as_of).name, lake=lake)
seconds["cohorts+features"] = time.perf_counter() - started
started = time.perf_counter()
score_model("readmission-30d", lake=lake)
seconds["score"] = time.perf_counter() - started
print(json.dumps({{"units": "resources", "n": s.read, "stages": seconds}}))
"""

# The peer of a stage, on the same data in the same ladder.
PEERS: dict[str, tuple[str, str]] = {
    "ingest": (
        "DuckDB read_ndjson_objects → Parquet",
        """
import duckdb
files = sorted(str(p) for p in (root / "fhir").glob("*.ndjson"))
con = duckdb.connect()
con.execute("SET threads = 2")
(root / "peer-ingest").mkdir(exist_ok=True)
con.execute(f"COPY (SELECT * FROM read_ndjson_objects({{files!r}})) TO '{{root / 'peer-ingest' / 'raw.parquet'}}'")
n = con.execute(f"SELECT count(*) FROM '{{root / 'peer-ingest' / 'raw.parquet'}}'").fetchone()[0]
print(json.dumps({{"units": "resources", "n": n}}))
""",
    ),
    "views": (
        "hand-written DuckDB SQL (bench/views.py)",
        """
import shutil
import carelake as cl
from views import HAND_SQL
import pyarrow.parquet as pq
lake = cl.open_lake(root / "lake-duckdb", create=False)
eng = lake.connect("duckdb")
n = 0
for name, sql in HAND_SQL.items():
    shutil.rmtree(root / "peer-views" / name, ignore_errors=True)
    n += sum(pq.read_metadata(f).num_rows for f in eng.write_parquet(sql, root / "peer-views" / name))
eng.close()
print(json.dumps({{"units": "rows", "n": n}}))
""",
    ),
    "train": (
        "plain scikit-learn HistGradientBoosting",
        """
import pyarrow.parquet as pq
import carelake as cl
from train import PEER
table = pq.read_table(cl.open_lake(root / "lake-duckdb", create=False).files("features_readmission_30d"))
exec(PEER)
print(json.dumps({{"units": "index events", "n": table.num_rows}}))
""",
    ),
}

SPARK_STAGES = ("ingest", "views")


def run_stage(code: str, root: Path, patients: int, engine: str = "duckdb") -> dict[str, Any]:
    """One stage in a fresh interpreter: seconds, peak RSS and what it reports."""
    prelude = _PRELUDE.format(bench=str(HERE), root=str(root))
    body = code.format(patients=patients, seed=SEED, engine=engine)
    seconds, rss, stdout = measure(prelude + body)
    result = json.loads(stdout.strip().splitlines()[-1])
    return result | {"seconds": round(seconds, 2), "peak_rss_mib": round(rss), "per_s": result["n"] / seconds}


def cold_start(repeat: int = 5) -> dict[str, float]:
    """Wall time of ``carelake --help`` and ``carelake ingest fhir --help`` in fresh processes (best of n)."""
    cli = Path(sys.executable).with_name("carelake")
    result = {}
    for label, args in (("carelake --help", ["--help"]), ("carelake ingest fhir --help", ["ingest", "fhir", "--help"])):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            subprocess.run([str(cli), *args], check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        result[label] = round(min(times), 3)
    return result


class DiskPeak:
    """The most disk the file system holding ``folder`` had in use while the block ran, above what it held before
    ``folder``'s contents.

    Sampled every second from a thread; what other processes write at the same time is counted too, so read it
    on a quiet machine."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.peak_mb, self._stop = folder, 0.0, threading.Event()

    def __enter__(self) -> DiskPeak:
        # What the folder already holds counts as in use: a resumed size starts with its lake on disk.
        held = sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())
        self._start = shutil.disk_usage(self.folder).used - held
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self.peak_mb = max(self.peak_mb, (shutil.disk_usage(self.folder).used - self._start) / 1e6)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def check_disk(sizes: list[int], out: Path) -> None:
    """Stop before starting when the largest rung cannot fit: a full disk would end the ladder hours in."""
    need_gb = max(sizes) * DISK_MB_PER_PATIENT / 1000
    free_gb = shutil.disk_usage(out).free / 1e9
    if need_gb > free_gb:
        raise SystemExit(
            f"{max(sizes):,} patients need about {need_gb:,.0f} GB of free disk under {out}; {free_gb:,.0f} GB are "
            "free. Free some, pass --out on a larger disk, or leave the largest size out of --patients."
        )


def ladder(sizes: list[int], spark_up_to: int, out: Path, *, resume: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {
        "measured": time.strftime("%Y-%m-%d"),
        "sizes": {},
        "peers": {stage: label for stage, (label, _) in PEERS.items()},
    }
    for patients in sizes:
        results["sizes"][str(patients)] = rung(patients, spark_up_to, out, resume=resume)
    return results


def rung(patients: int, spark_up_to: int, out: Path, *, resume: bool = False) -> dict[str, Any]:
    """One size through every stage. Its figures are saved after each stage: the top of the ladder runs for
    hours, and ``--resume`` carries on from the first stage not yet measured (or reuses a finished size)."""
    root = out / f"scale-{patients}"
    partial, finished = out / f"scale-{patients}.partial.json", out / f"scale-{patients}.json"
    if resume and finished.exists():
        print(f"{patients:>9,} patients: measured before, {finished} reused", flush=True)
        return json.loads(finished.read_text(encoding="utf-8"))
    figures: dict[str, Any] = {}
    if resume and partial.exists() and root.exists():
        figures = json.loads(partial.read_text(encoding="utf-8"))
        print(f"{patients:>9,} patients: resuming after {', '.join(s for s in STAGES if s in figures)}", flush=True)
    else:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
    with DiskPeak(root) as disk:
        for stage, code in STAGES.items():
            if stage in figures:
                continue
            try:
                measured = run_stage(code, root, patients)
                _print(patients, stage, measured)
                if stage in PEERS:
                    label, peer_code = PEERS[stage]
                    measured["peer"] = run_stage(peer_code, root, patients)
                    _print(patients, f"  peer: {label}", measured["peer"])
                    shutil.rmtree(root / f"peer-{stage}", ignore_errors=True)  # its output is not read again
                if stage in SPARK_STAGES and patients <= spark_up_to:
                    measured["spark"] = run_stage(code, root, patients, engine="spark")
                    _print(patients, f"  {stage} on Spark (local[2])", measured["spark"])
            except SystemExit as failure:
                raise SystemExit(
                    f"{failure}\n\n{patients:,} patients: the {stage} stage failed. The figures measured so far are "
                    f"in {partial}; once the cause is fixed, run again with --resume to carry on from {stage}."
                ) from None
            if stage == "ingest":  # the lake keeps its own raw copy; no later stage reads the export again
                for export in (root / "fhir").glob("*.ndjson"):
                    export.unlink()
            figures[stage] = measured
            figures["disk_peak_mb"] = max(round(disk.peak_mb), figures.get("disk_peak_mb", 0))
            partial.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    figures["total_seconds"] = round(sum(figures[stage]["seconds"] for stage in STAGES), 1)
    figures["new_day"] = run_stage(NEW_DAY, root, patients)
    print(
        f"{patients:>9,} a new day ({figures['new_day']['n']:,} resources): "
        + ", ".join(
            f"{stage} {t:.1f} s ({t / figures[stage]['seconds']:.2f}× full)"
            for stage, t in figures["new_day"]["stages"].items()
        ),
        flush=True,
    )
    figures["input_mb"] = round(figures["generate"]["mb"])
    finished.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    partial.unlink(missing_ok=True)
    shutil.rmtree(root)  # tens of GB at the top of the ladder
    print(
        f"{patients:>9,} patients: whole pipeline {figures['total_seconds']:,.0f} s, "
        f"disk at most {figures['disk_peak_mb'] / 1000:,.1f} GB",
        flush=True,
    )
    return figures


def _print(patients: int, stage: str, f: dict[str, Any]) -> None:
    print(
        f"{patients:>9,} {stage:<44}{f['seconds']:>9.1f} s {f['per_s']:>12,.0f} {f['units']}/s "
        f"{f['peak_rss_mib']:>7,} MiB",
        flush=True,
    )


def slope(points: list[tuple[int, float]]) -> float | None:
    """Exponent b of seconds ≈ a · patients^b (least squares in log-log); 1 is linear."""
    if len(points) < 2:
        return None
    xs = [math.log(p) for p, _ in points]
    ys = [math.log(max(s, 1e-3)) for _, s in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def projected(sizes: list[str], seconds: list[float], target: int = 1_000_000) -> float:
    """Seconds at ``target`` patients, from the largest size measured and the growth exponent between the two
    largest sizes (at least 1: the small sizes' fixed costs make exponents below 1 that large sizes do not keep)."""
    b = slope([(int(n), t) for n, t in zip(sizes[-2:], seconds[-2:], strict=True)]) or 1.0
    return seconds[-1] * (target / int(sizes[-1])) ** max(b, 1.0)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:,.1f} h" if seconds >= 3600 else f"{seconds / 60:,.0f} min"


def markdown(results: dict[str, Any]) -> str:
    sizes = sorted(results["sizes"], key=int)
    lines = [
        f"Measured {results['measured']} by `python bench/scale.py --patients {' '.join(sizes)}` "
        "(each stage in a fresh interpreter; peak RSS of its process tree).",
        "",
        "| stage | "
        + " | ".join(f"{int(s):,} patients" for s in sizes)
        + f" | growth exponent, {int(sizes[-2]):,}→{int(sizes[-1]):,} | 1 M patients, projected |"
        if len(sizes) > 1
        else " | growth exponent | 1 M patients, projected |",
        "|---|" + "---:|" * len(sizes) + "---:|---:|",
    ]
    for stage in STAGES:
        cells = []
        for s in sizes:
            f = results["sizes"][s][stage]
            cells.append(f"{f['seconds']:,.1f} s · {f['per_s']:,.0f} {f['units']}/s · {f['peak_rss_mib']:,} MiB")
        seconds = [results["sizes"][s][stage]["seconds"] for s in sizes]
        b = slope([(int(s), t) for s, t in zip(sizes[-2:], seconds[-2:], strict=True)])
        at_million = _duration(projected(sizes, seconds))
        lines.append(f"| {stage} | " + " | ".join(cells) + f" | {'' if b is None else f'{b:.2f}'} | {at_million} |")
        for key, label in (("peer", f"↳ peer: {results['peers'].get(stage)}"), ("spark", "↳ on Spark local[2]")):
            if all(key in results["sizes"][s][stage] for s in sizes[:1]):
                row = []
                for s in sizes:
                    f = results["sizes"][s][stage].get(key)
                    ratio = f and results["sizes"][s][stage]["seconds"] / f["seconds"]
                    row.append(
                        "—"
                        if f is None
                        else f"{f['seconds']:,.1f} s · {f['peak_rss_mib']:,} MiB"
                        + (f" (carelake {ratio:.1f}×)" if key == "peer" else "")
                    )
                lines.append(f"| {label} | " + " | ".join(row) + " | | |")
    total = " | ".join(f"**{results['sizes'][s]['total_seconds']:,.0f} s**" for s in sizes)
    b = slope([(int(s), results["sizes"][s]["total_seconds"]) for s in sizes[-2:]])
    whole = sum(projected(sizes, [results["sizes"][s][stage]["seconds"] for s in sizes]) for stage in STAGES)
    lines.append(f"| **whole pipeline** | {total} | {'' if b is None else f'{b:.2f}'} | **{_duration(whole)}** |")
    mb = [results["sizes"][s]["input_mb"] for s in sizes]
    million_gb = mb[-1] * 1_000_000 / int(sizes[-1]) / 1000
    lines.append("| input NDJSON | " + " | ".join(f"{m:,} MB" for m in mb) + f" | | {million_gb:,.0f} GB |")
    if all("disk_peak_mb" in results["sizes"][s] for s in sizes):
        disk = [results["sizes"][s]["disk_peak_mb"] for s in sizes]
        lines.append(
            "| peak disk in use | "
            + " | ".join(f"{d / 1000:,.1f} GB" for d in disk)
            + f" | | {disk[-1] * 1_000_000 / int(sizes[-1]) / 1000:,.0f} GB |"
        )
    if all("precision" in results["sizes"][s]["match"] for s in sizes):
        lines += [
            "",
            "Matching against the generator's planted duplicates (2 % of patients have a second record): "
            + "; ".join(
                f"{int(s):,} patients precision {results['sizes'][s]['match']['precision']:.3f}, "
                f"recall {results['sizes'][s]['match']['recall']:.3f}"
                for s in sizes
            )
            + ".",
        ]
    lines += [
        "",
        "A new day: 1 % more patients (another seed) ingested into the full lake, then every refresh after it, "
        "in seconds and as a share of the same stage's full run above:",
        "",
        "| patients | new resources | " + " | ".join(results["sizes"][sizes[0]]["new_day"]["stages"]) + " |",
        "|---:|---:|" + "---:|" * len(results["sizes"][sizes[0]]["new_day"]["stages"]),
    ]
    for s in sizes:
        day = results["sizes"][s]["new_day"]
        cells = [f"{t:,.1f} s ({t / results['sizes'][s][stage]['seconds']:.2f}×)" for stage, t in day["stages"].items()]
        lines.append(f"| {int(s):,} | {day['n']:,} | " + " | ".join(cells) + " |")
    lines += ["", "CLI cold start (best of 5): " + ", ".join(f"`{k}` {v:.2f} s" for k, v in results["cold"].items())]
    lines += ["", "![seconds per stage](img/scale-seconds.png) ![peak RSS per stage](img/scale-rss.png)"]
    return "\n".join(lines)


def charts(results: dict[str, Any], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results["sizes"], key=int)
    xs = [int(s) for s in sizes]
    for key, label, name in (
        ("seconds", "seconds", "scale-seconds.png"),
        ("peak_rss_mib", "peak RSS (MiB)", "scale-rss.png"),
    ):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
        for stage in STAGES:
            ax.plot(xs, [results["sizes"][s][stage][key] for s in sizes], marker="o", label=stage)
        if key == "seconds":
            totals = [results["sizes"][s]["total_seconds"] for s in sizes]
            ax.plot(xs, totals, marker="s", color="black", label="whole pipeline")
            first = totals[0]
            ax.plot(xs, [first * x / xs[0] for x in xs], linestyle=":", color="grey", label="linear growth")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("patients")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(folder / name)
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--spark-up-to", type=int, default=1000, help="largest size also run on Spark")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--no-docs", action="store_true", help="print and save figures, leave docs/ alone")
    parser.add_argument("--report", action="store_true", help="only rewrite docs and charts from the last scale.json")
    parser.add_argument(
        "--resume", action="store_true", help="reuse sizes already measured and carry on a size from where it stopped"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    saved = args.out / "scale.json"
    if args.report:
        results = json.loads(saved.read_text(encoding="utf-8"))
    else:
        if not args.resume:  # a resumed size already holds its disk
            check_disk(args.patients, args.out)
        results = ladder(sorted(args.patients), args.spark_up_to, args.out, resume=args.resume)
        results["cold"] = cold_start()
        print("cold start:", results["cold"], flush=True)
        saved.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    if not args.no_docs:
        charts(results, ROOT / "docs" / "img")
        fill(ROOT / "docs" / "performance.md", "scale-ladder", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
