"""Load benchmark of the web application: 50 concurrent clients on the API for 30 s, loopback only.

    python bench/web_load.py                                     # builds a 2,000-patient demo lake first
    python bench/web_load.py --demo carelake-demo --clients 50 --seconds 30

``carelake serve`` runs in its own process on a free 127.0.0.1 port, over the demo's identified and
de-identified lakes. Client threads sign in with the demo's tokens and cycle through aggregate endpoints
(analyst: /api/overview, /api/outcomes, /api/models) and patient-level ones (clinician: /api/worklist,
/fhir/Patient/{id}, a paged Observation search). Prints requests/s, p50/p95/p99 latency per group and errors;
writes bench/out/web_load.json. Target: 0 errors and p95 < 300 ms for aggregate endpoints.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=HERE / "out" / "web-demo", help="a `carelake demo` folder")
    parser.add_argument("--patients", type=int, default=2000, help="demo size when it must be built")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=HERE / "out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.demo / "web-tokens.txt").exists():
        from carelake.demo import run_demo

        print(f"building a {args.patients:,}-patient demo in {args.demo} ...")
        run_demo(args.demo, patients=args.patients)
    tokens = dict(line.split("\t") for line in (args.demo / "web-tokens.txt").read_text().splitlines())
    import carelake as cl

    query = "SELECT patient_id FROM resources WHERE resource_type = 'Observation' LIMIT 1"
    patient = cl.open_lake(args.demo / "lake", create=False).sql(query).column(0)[0].as_py()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server_log = (args.out / "web_load-server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "carelake", "--lake", str(args.demo / "lake"), "serve", "--port", str(port),
         "--analysis-lake", str(args.demo / "lake-deid")],
        stdout=server_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(base)
        plan = [
            ("aggregate", "analyst", "/api/overview"),
            ("aggregate", "analyst", "/api/outcomes"),
            ("aggregate", "analyst", "/api/models"),
            ("patient-level", "clinician", "/api/worklist"),
            ("patient-level", "clinician", f"/fhir/Patient/{patient}"),
            ("patient-level", "clinician", f"/fhir/Observation?patient={patient}&_count=20"),
        ]
        latencies: dict[str, list[float]] = {"aggregate": [], "patient-level": []}
        errors: list[str] = []
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds

        def client(k: int) -> None:
            i = k
            while time.monotonic() < stop:
                group, role, path = plan[i % len(plan)]
                i += 1
                request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {tokens[role]}"})
                start = time.perf_counter()
                reason = None
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        response.read()
                except Exception as exc:  # every failure (HTTP error, timeout, reset) is an error to count
                    reason = f"{path}: {exc}"
                elapsed = time.perf_counter() - start
                with lock:
                    latencies[group].append(elapsed)
                    if reason is not None:
                        errors.append(reason)

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(10)
    total = sum(len(v) for v in latencies.values())
    result: dict[str, object] = {"clients": args.clients, "seconds": round(wall, 1), "requests": total,
                                 "requests_per_s": round(total / wall, 1), "errors": len(errors),
                                 "error_examples": errors[:5]}  # fmt: skip
    print(f"{args.clients} clients for {wall:.0f} s on loopback: {total:,} requests ({total / wall:.0f}/s), "
          f"{len(errors)} errors")  # fmt: skip
    for group, values in latencies.items():
        values.sort()
        if not values:
            continue
        p50, p95, p99 = (values[int(q * (len(values) - 1))] * 1000 for q in (0.5, 0.95, 0.99))
        result[group] = {"requests": len(values), "p50_ms": round(p50, 1), "p95_ms": round(p95, 1),
                         "p99_ms": round(p99, 1)}  # fmt: skip
        print(f"  {group:14s} {len(values):6,} requests  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  p99 {p99:7.1f} ms")
    print("target: 0 errors, aggregate p95 < 300 ms")
    (args.out / "web_load.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def _wait(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/fhir/metadata", timeout=5):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not start")


if __name__ == "__main__":
    main()
