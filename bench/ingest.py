"""Benchmark FHIR ingestion against DuckDB's raw NDJSON scan and fhiry, on the same file, in one run.

    python bench/ingest.py                    # builds a >= 2 GB NDJSON from the Synthea corpus
    python bench/ingest.py --size-mb 300      # a quicker look

Prints MB/s, resources/s and peak RSS for carelake, the DuckDB reference (``read_ndjson_objects`` to
Parquet: the speed of light for "JSON lines into Parquet") and fhiry (what a pandas user picks today,
measured on a prefix of the same file because it is slow), then the ratios. Writes bench/out/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from _measure import measure  # bench/ is on sys.path when a benchmark runs

HERE = Path(__file__).resolve().parent
SYNTHEA = HERE.parent.parent / "shared/testdata/synthea-fhir-r4/bulk-ndjson-10-patients"
UUID = re.compile(rb"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-)[0-9a-f]{12}")


def build_input(target: Path, size_mb: int) -> tuple[int, int]:
    """Replicate the Synthea resources with rewritten UUIDs (references stay consistent within a copy)."""
    lines = [ln for f in sorted(SYNTHEA.glob("*.000.ndjson")) for ln in f.read_bytes().splitlines() if ln.strip()]
    if target.exists() and target.stat().st_size >= size_mb * 1e6:
        count = sum(1 for _ in target.open("rb"))
        return target.stat().st_size, count
    written = count = 0
    copy = 0
    with target.open("wb") as out:
        while written < size_mb * 1e6:
            suffix = b"%012d" % copy
            chunk = b"\n".join(UUID.sub(lambda m, s=suffix: m.group(1) + s, ln) for ln in lines) + b"\n"
            out.write(chunk)
            written += len(chunk)
            count += len(lines)
            copy += 1
    return written, count


def report(name: str, r: dict[str, float]) -> None:
    print(
        f"{name:<30}{r['mb_s']:>10.2f}{r['resources_s']:>14,.0f}{r['peak_rss_mib']:>14,.0f}{r['seconds']:>10.1f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2100)
    parser.add_argument("--fhiry-mb", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    source = args.out / "ingest-input.ndjson"
    size, count = build_input(source, args.size_mb)
    print(f"input: {source} {size / 1e6:,.0f} MB, {count:,} resources", flush=True)
    results: dict[str, dict[str, float]] = {}
    print(f"{'tool':<30}{'MB/s':>10}{'resources/s':>14}{'peak RSS MiB':>14}{'seconds':>10}", flush=True)

    def record(name: str, seconds: float, rss: float, mb: float, resources: int) -> None:
        results[name] = {
            "seconds": seconds,
            "mb_s": mb / seconds,
            "resources_s": resources / seconds,
            "peak_rss_mib": rss,
            "input_mb": mb,
        }
        report(name, results[name])

    lake = args.out / "bench-lake"
    shutil.rmtree(lake, ignore_errors=True)
    seconds, rss, stdout = measure(
        "import carelake as cl, json; "
        f"s = cl.ingest_fhir([{str(source)!r}], lake={str(lake)!r}); print(json.dumps(s.to_dict()))"
    )
    summary = json.loads(stdout)
    if summary["stored"] != count or summary["quarantined"]:
        raise SystemExit(f"ingest stored {summary['stored']:,} of {count:,} resources")
    record("carelake", seconds, rss, size / 1e6, count)
    print(f"  carelake stages (s): {summary['stage_seconds']}", flush=True)
    shutil.rmtree(lake, ignore_errors=True)

    ref = args.out / "duckdb-reference.parquet"
    seconds, rss, _ = measure(
        'import duckdb; duckdb.sql("COPY (SELECT * FROM read_ndjson_objects('
        f"'{source}')) TO '{ref}' (FORMAT parquet, COMPRESSION zstd)\")"
    )
    record("duckdb_read_ndjson_objects", seconds, rss, size / 1e6, count)
    ref.unlink(missing_ok=True)

    # fhiry flattens every resource into a pandas frame: measured on a prefix of the same file.
    prefix = args.out / "fhiry" / "prefix.ndjson"
    prefix.parent.mkdir(exist_ok=True)
    with source.open("rb") as src, prefix.open("wb") as dst:
        n = 0
        for line in src:
            dst.write(line)
            n += 1
            if dst.tell() >= args.fhiry_mb * 1e6:
                break
    try:
        seconds, rss, _ = measure(
            "import fhiry.parallel as fp; df = fp.ndjson(" + repr(str(prefix)) + "); print(len(df))", timeout=900
        )
        record("fhiry", seconds, rss, prefix.stat().st_size / 1e6, n)
    except SystemExit as exc:
        print(f"fhiry could not run: {str(exc)[-300:]} (pip install 'carelake[bench]')")

    ours = results["carelake"]["mb_s"]
    print(f"carelake / DuckDB reference: {ours / results['duckdb_read_ndjson_objects']['mb_s']:.2f}x (target >= 0.7x)")
    if "fhiry" in results:
        print(f"carelake / fhiry: {ours / results['fhiry']['mb_s']:.0f}x (target >= 100x)")
    print(f"carelake peak RSS: {results['carelake']['peak_rss_mib']:,.0f} MiB (target < 1536 MiB)")
    (args.out / "ingest.json").write_text(
        json.dumps({"input_mb": size / 1e6, "resources": count, "results": results}, indent=1)
    )


if __name__ == "__main__":
    main()
