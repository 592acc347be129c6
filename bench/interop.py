"""Benchmark OMOP ingestion and the OMOP and MEDS exports on GiBleed, beside DuckDB's own read of the same CDM.

    python bench/interop.py

Each step runs in a fresh interpreter (wall time and peak RSS of the process tree):
- carelake ingest omop of the GiBleed CDM (37 gzipped CSV tables, 411k rows): typed bronze, checks, FHIR;
- the reference: DuckDB reading every table of the same folder into Parquet (``read_csv`` with type
  inference, no checks): the speed of light for "CDM CSV files into Parquet";
- carelake export omop (CDM 5.4 CSV) and export meds (after materialising the standard views) from the
  ingested lake, on DuckDB.
Writes bench/out/interop.json.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from _measure import measure  # bench/ is on sys.path when a benchmark runs

HERE = Path(__file__).resolve().parent
GIBLEED = HERE.parent.parent / "shared/testdata/omop-eunomia-gibleed/cdm_v5.3"


def main() -> None:
    work = HERE / "out" / "interop"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    lake = work / "lake"
    results: dict[str, dict[str, float]] = {}

    def record(name: str, seconds: float, rss: float, rows: int) -> None:
        results[name] = {
            "seconds": round(seconds, 2),
            "rows": rows,
            "rows_per_s": round(rows / seconds),
            "peak_rss_mib": round(rss),
        }
        print(f"{name:28} {seconds:7.1f} s  {rows / seconds:>10,.0f} rows/s  peak {rss:6.0f} MiB")

    seconds, rss, out = measure(
        f"import carelake as cl, json; s = cl.ingest_omop({str(GIBLEED)!r}, lake={str(lake)!r}); "
        "print(json.dumps(s.to_dict()))"
    )
    summary = json.loads(out)
    if summary["read"] != summary["stored"] + summary["duplicates"] + summary["quarantined"]:
        raise SystemExit("ingest counts do not reconcile")
    record("carelake ingest omop", seconds, rss, summary["read"])

    ref = work / "duckdb"
    ref.mkdir()
    seconds, rss, _ = measure(
        "import duckdb, pathlib\n"
        f"for f in sorted(pathlib.Path({str(GIBLEED)!r}).glob('*.csv.gz')):\n"
        f"    duckdb.sql(f\"COPY (SELECT * FROM read_csv('{{f}}')) TO '{ref}/{{f.stem}}.parquet' (FORMAT parquet)\")"
    )
    record("duckdb read_csv (reference)", seconds, rss, summary["read"])

    seconds, rss, out = measure(
        "import carelake as cl, json; from carelake.interop import export_omop; "
        f"s = export_omop(cl.open_lake({str(lake)!r}), __import__('pathlib').Path({str(work / 'omop')!r})); "
        "print(json.dumps(s.to_dict()))"
    )
    record("carelake export omop", seconds, rss, sum(json.loads(out)["rows"].values()))

    # MEDS reads the standard views (the patient-event layer); materialising them is views' work, not timed here.
    measure(
        "import carelake as cl; from carelake.fhir import materialize_views, standard_views; "
        f"materialize_views(standard_views(), lake=cl.open_lake({str(lake)!r}))"
    )
    seconds, rss, out = measure(
        "import carelake as cl, json; from carelake.interop import export_meds; "
        f"s = export_meds(cl.open_lake({str(lake)!r}), __import__('pathlib').Path({str(work / 'meds')!r})); "
        "print(json.dumps(s.to_dict()))"
    )
    record("carelake export meds", seconds, rss, json.loads(out)["events"])

    ratio = results["carelake ingest omop"]["seconds"] / results["duckdb read_csv (reference)"]["seconds"]
    print(f"ingest omop / DuckDB read_csv: {ratio:.1f}x the reference's time")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "interop.json").write_text(
        json.dumps({"results": results, "ingest_vs_reference": round(ratio, 2)}, indent=1)
    )


if __name__ == "__main__":
    main()
