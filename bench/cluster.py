"""A simulated Spark cluster: a standalone master and two workers on loopback, running the same pipeline.

``python bench/cluster.py [--patients 1000]``

Starts ``org.apache.spark.deploy.master.Master`` and two ``Worker`` processes (1 core, 2 GiB each) from the
Spark that ships with pyspark, points carelake at them with ``CARELAKE_SPARK_MASTER=spark://127.0.0.1:7077``
— the only change a real cluster needs — and runs ingestion, the standard views, the quality suite, and the
shipped cohorts with their features on the cluster; then the same stages on DuckDB, and compares every
table of the two lakes (run ids and timestamps aside). Writes ``bench/out/cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from _docs import fill
from _measure import measure

HERE = Path(__file__).resolve().parent
MASTER_PORT, MASTER_UI = 7077, 8080
AS_OF = "2025-12-31"

PIPELINE = """
import json, time
import carelake as cl
from carelake.cohorts import build_cohort, shipped_tasks
from carelake.features import build_features
from carelake.fhir import materialize_views, standard_views
from carelake.quality import run_quality
root, engine = __import__("pathlib").Path({root!r}), {engine!r}
lake = cl.open_lake(root / f"lake-{{engine}}")
seconds = {{}}
started = time.perf_counter()
s = cl.ingest_fhir([root / "fhir" / "manifest.json"], lake=lake, engine=engine)
seconds["ingest"] = time.perf_counter() - started
started = time.perf_counter()
materialize_views(standard_views(), lake=lake, engine=engine)
seconds["views"] = time.perf_counter() - started
started = time.perf_counter()
run_quality(lake, engine=engine, as_of={as_of!r})
seconds["quality"] = time.perf_counter() - started
started = time.perf_counter()
for task in shipped_tasks():
    build_features(build_cohort(task, lake=lake, as_of={as_of!r}, engine=engine).name, lake=lake, engine=engine)
seconds["cohorts+features"] = time.perf_counter() - started
print(json.dumps({{"resources": s.stored, "seconds": seconds}}))
"""

# Columns that say which run or engine wrote a row, not what the row is.
RUN_COLUMNS = {"run_id", "ingested_at", "checked_at", "created_at", "built_at", "engine"}
FLOAT_DIGITS = 10  # significant digits floats are compared to: the engines sum in different orders


def spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def _wait_for_workers(count: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{MASTER_UI}/json/", timeout=2) as response:
                state = json.loads(response.read())
            if sum(w.get("state") == "ALIVE" for w in state.get("workers", [])) >= count:
                return state
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit(f"the standalone master did not see {count} workers within {timeout:.0f} s")


def start_cluster(log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """A master and two 1-core workers on loopback; each logs to a file."""
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", MASTER_PORT)) == 0:
            raise SystemExit(f"port {MASTER_PORT} is taken: is another Spark master running?")
    env = os.environ | {
        "SPARK_HOME": str(spark_class().parent.parent),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
    }
    log_dir.mkdir(parents=True, exist_ok=True)

    def start(name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (log_dir / f"{name}.log").open("wb")
        return subprocess.Popen([str(spark_class()), *args], env=env, stdout=log, stderr=subprocess.STDOUT)

    processes = [
        start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(MASTER_PORT),
              "--webui-port", str(MASTER_UI)),
    ]  # fmt: skip
    for i in (1, 2):
        processes.append(
            start(f"worker-{i}", "org.apache.spark.deploy.worker.Worker", f"spark://127.0.0.1:{MASTER_PORT}",
                  "--cores", "1", "--memory", "2g", "--webui-port", str(MASTER_UI + i),
                  "--work-dir", str(log_dir / f"work-{i}"))
        )  # fmt: skip
    return processes


def stop_cluster(processes: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(processes):
        p.terminate()
    for p in processes:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()


def compare_lakes(a: Path, b: Path) -> dict[str, Any]:
    """Every table of lake a against lake b, as multisets of rows without run-specific columns."""
    import pyarrow as pa

    import carelake as cl

    left, right = cl.open_lake(a, create=False), cl.open_lake(b, create=False)
    names = sorted(set(left.catalog.tables) | set(right.catalog.tables))
    differing: list[str] = []
    types: list[str] = []
    rows: dict[str, int] = {}
    con = left.connect("duckdb")
    try:
        for name in names:
            if name not in left.catalog.tables or name not in right.catalog.tables:
                differing.append(f"{name}: only in one lake")
                continue
            con.register_parquet("_a", left.files(name))
            con.register_parquet("_b", right.files(name))
            schema = con.query("SELECT * FROM _a LIMIT 0").schema
            other = con.query("SELECT * FROM _b LIMIT 0").schema
            for f in schema:
                if f.name in other.names and other.field(f.name).type != f.type:
                    types.append(f"{name}.{f.name}: {f.type} on DuckDB, {other.field(f.name).type} on the cluster")
            listed = ", ".join(
                f"printf('%.{FLOAT_DIGITS}g', CAST(\"{f.name}\" AS DOUBLE))"
                if pa.types.is_floating(f.type)
                else f'"{f.name}"'
                for f in schema
                if f.name not in RUN_COLUMNS
            )
            extra = con.query(
                f"SELECT (SELECT count(*) FROM (SELECT {listed} FROM _a EXCEPT ALL SELECT {listed} FROM _b)) AS a, "
                f"(SELECT count(*) FROM (SELECT {listed} FROM _b EXCEPT ALL SELECT {listed} FROM _a)) AS b, "
                "(SELECT count(*) FROM _a) AS n"
            ).to_pylist()[0]
            rows[name] = extra["n"]
            if extra["a"] or extra["b"]:
                differing.append(f"{name}: {extra['a']:,} rows only on DuckDB, {extra['b']:,} only on the cluster")
    finally:
        con.close()
    # A column typed differently is a difference too, even when the values agree.
    return {"tables": len(names), "rows": sum(rows.values()), "differing": differing + types}


def markdown(result: dict[str, Any]) -> str:
    cluster, duck, compared = result["cluster"], result["duckdb"], result["compared"]
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')}: {result['patients']:,} generated patients "
        f"({result['resources']:,} resources), master and two 1-core workers on loopback.",
        "",
        "| stage | standalone cluster s | DuckDB s |",
        "|---|---:|---:|",
    ]
    for stage, seconds in duck["seconds"].items():
        lines.append(f"| {stage} | {cluster['seconds'][stage]:,.1f} | {seconds:,.1f} |")
    lines.append(f"| whole run (fresh interpreter) | {cluster['wall_seconds']:,.1f} | {duck['wall_seconds']:,.1f} |")
    verdict = (
        "**every table equal, column types included**"
        if not compared["differing"]
        else "**differences**: " + "; ".join(compared["differing"])
    )
    lines += ["", f"{compared['tables']} tables, {compared['rows']:,} rows compared: {verdict}."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--no-docs", action="store_true", help="print and save figures, leave docs/ alone")
    args = parser.parse_args()
    root = args.out / f"cluster-{args.patients}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    from carelake.synth import generate_fhir

    generate_fhir(root / "fhir", patients=args.patients, seed=7)

    processes = start_cluster(root / "spark")
    try:
        state = _wait_for_workers(2)
        print(f"standalone master spark://127.0.0.1:{MASTER_PORT}: {len(state['workers'])} workers, "
              f"{state.get('cores', '?')} cores", flush=True)  # fmt: skip
        os.environ["CARELAKE_SPARK_MASTER"] = f"spark://127.0.0.1:{MASTER_PORT}"
        cluster_s, cluster_rss, out = measure(PIPELINE.format(root=str(root), engine="spark", as_of=AS_OF))
        cluster = json.loads(out.strip().splitlines()[-1])
    finally:
        os.environ.pop("CARELAKE_SPARK_MASTER", None)
        stop_cluster(processes)
    duck_s, duck_rss, out = measure(PIPELINE.format(root=str(root), engine="duckdb", as_of=AS_OF))
    duck = json.loads(out.strip().splitlines()[-1])
    compared = compare_lakes(root / "lake-duckdb", root / "lake-spark")

    print(f"{'stage':<20}{'cluster s':>11}{'DuckDB s':>10}")
    for stage in duck["seconds"]:
        print(f"{stage:<20}{cluster['seconds'][stage]:>11.1f}{duck['seconds'][stage]:>10.1f}")
    rss = f"driver peak RSS {cluster_rss:,.0f} / {duck_rss:,.0f} MiB"
    print(f"{'whole run':<20}{cluster_s:>11.1f}{duck_s:>10.1f}  ({rss})")
    verdict = "the same" if not compared["differing"] else "DIFFERENT"
    print(f"{compared['tables']} tables, {compared['rows']:,} rows: {verdict}")
    for line in compared["differing"]:
        print("  " + line)
    result = {
        "patients": args.patients,
        "resources": duck["resources"],
        "cluster": {"master": f"spark://127.0.0.1:{MASTER_PORT}", "workers": 2, "cores_per_worker": 1,
                    "seconds": cluster["seconds"], "wall_seconds": cluster_s, "driver_peak_rss_mib": cluster_rss},
        "duckdb": {"seconds": duck["seconds"], "wall_seconds": duck_s, "peak_rss_mib": duck_rss},
        "compared": compared,
    }  # fmt: skip
    (args.out / "cluster.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    if not args.no_docs:
        fill(HERE.parent / "docs" / "scale-out.md", "cluster", markdown(result))
    shutil.rmtree(root)
    if compared["differing"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
