"""The lake: creation, atomic commits, crash safety, garbage collection and the write lock."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

import carelake as cl
from carelake.lake import Catalog
from carelake.lake._lake import Transaction
from conftest import snapshot


def test_new_lake_has_layout_and_empty_quarantine(lake_path: Path) -> None:
    lake = cl.open_lake(lake_path)
    for layer in ("raw", "bronze", "silver", "gold", "quarantine", "runs", "audit"):
        assert (lake_path / layer).is_dir()
    status = lake.status()
    assert status["tables"] == [
        {"name": "quarantine", "layer": "quarantine", "rows": 0, "files": 1, "bytes": status["tables"][0]["bytes"]}
    ]
    assert status["quarantine"] == {"total": 0, "by_rule": {}}


def test_refuses_a_folder_that_is_not_a_lake(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(cl.LakeError, match="is not a carelake lake"):
        cl.open_lake(tmp_path)


def test_open_without_create_needs_a_lake(tmp_path: Path) -> None:
    with pytest.raises(cl.LakeError, match="no lake at"):
        cl.open_lake(tmp_path / "absent", create=False)


def test_failed_job_leaves_nothing(lake_path: Path, testdata: Path) -> None:
    lake = cl.open_lake(lake_path)
    before = (lake_path / "catalog.json").read_bytes()
    with pytest.raises(RuntimeError, match="boom"), lake.transaction("test", parameters={}) as tx:
        (tx.staging / "x.parquet").write_bytes(b"partial")
        raise RuntimeError("boom")
    assert (lake_path / "catalog.json").read_bytes() == before
    assert not any((lake_path / "_staging").iterdir())


def test_raw_copies_are_compressed_beside_the_job_and_a_failed_one_fails_the_commit(
    lake_path: Path, testdata: Path
) -> None:
    lake = cl.open_lake(lake_path)
    bulk = testdata / "synthea-fhir-r4/bulk-ndjson-10-patients"
    sources = sorted(bulk.glob("*.ndjson"))[:3]
    with lake.transaction("test", parameters={}) as tx:
        for source in sources:
            tx.add_raw(source, hashlib.sha256(source.read_bytes()).hexdigest())
    kept = {f.name: gzip.decompress(f.read_bytes()) for f in (lake_path / "raw").rglob("*.gz")}
    assert kept == {f"{hashlib.sha256(s.read_bytes()).hexdigest()}.ndjson.gz": s.read_bytes() for s in sources}
    # A copy that fails in its thread (here, an input gone) fails the commit, which then changes nothing.
    catalog, raw = (lake_path / "catalog.json").read_bytes(), sorted((lake_path / "raw").rglob("*"))
    with pytest.raises(FileNotFoundError), lake.transaction("test", parameters={}) as tx:
        tx.add_raw(lake_path.parent / "gone.ndjson", "0" * 64)
    assert (lake_path / "catalog.json").read_bytes() == catalog and sorted((lake_path / "raw").rglob("*")) == raw
    # So does a file that no longer holds the bytes the job read and hashed (rewritten meanwhile), compressed
    # or not: its copy would be kept under the name of content that was never copied.
    changed = lake_path.parent / "changed.ndjson"
    changed.write_bytes(b'{"resourceType": "Patient", "id": "now"}\n')
    read = hashlib.sha256(b'{"resourceType": "Patient", "id": "then"}\n').hexdigest()
    for name in ("changed.ndjson", "changed.ndjson.gz"):
        changed = changed.rename(lake_path.parent / name)
        with (
            pytest.raises(cl.InputError, match=f"{name} changed while it was being ingested"),
            lake.transaction("test", parameters={}) as tx,
        ):
            tx.add_raw(changed, read)
        assert (lake_path / "catalog.json").read_bytes() == catalog and sorted((lake_path / "raw").rglob("*")) == raw


def test_crash_between_publish_and_catalog_swap_is_invisible_and_collected(
    lake_path: Path, testdata: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bulk = testdata / "synthea-fhir-r4/bulk-ndjson-10-patients"
    cl.ingest_fhir([bulk / "Patient.000.ndjson"], lake=lake_path)
    state = snapshot(lake_path)
    real_save = Catalog.save

    def crash(self: Catalog, root: Path) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(Catalog, "save", crash)
    with pytest.raises(OSError, match="disk vanished"):
        cl.ingest_fhir([bulk / "Encounter.000.ndjson"], lake=lake_path)
    monkeypatch.setattr(Catalog, "save", real_save)
    orphans = [
        p
        for p in (lake_path / "bronze").rglob("*.parquet")
        if p.relative_to(lake_path).as_posix() not in cl.open_lake(lake_path).catalog.referenced_files()
    ]
    assert orphans  # files were moved into place, but no catalog lists them
    assert snapshot(lake_path) == state
    cl.ingest_fhir([bulk / "Encounter.000.ndjson"], lake=lake_path)  # the next writer collects them
    assert all(
        p.relative_to(lake_path).as_posix() in cl.open_lake(lake_path).catalog.referenced_files()
        for p in (lake_path / "bronze").rglob("*.parquet")
    )


def _big_input(folder: Path, testdata: Path, copies: int) -> Path:
    """Synthea encounters replicated with rewritten ids: enough data to kill an ingest mid-run."""
    lines = (testdata / "synthea-fhir-r4/bulk-ndjson-10-patients/Encounter.000.ndjson").read_bytes().splitlines()
    target = folder / "big.ndjson"
    with target.open("wb") as out:
        for copy in range(copies):
            for line in lines:
                obj = orjson.loads(line)
                obj["id"] = f"{obj['id'][:24]}{copy:012d}"
                out.write(orjson.dumps(obj) + b"\n")
    return target


@pytest.mark.slow
def test_sigkill_mid_ingest_keeps_last_committed_state(tmp_path: Path, testdata: Path) -> None:
    big = _big_input(tmp_path, testdata, copies=40)  # ~48,600 resources, ~75 MB
    base = testdata / "synthea-fhir-r4/bulk-ndjson-10-patients/Patient.000.ndjson"
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    for lake in (killed, clean):
        cl.ingest_fhir([base], lake=lake)
    before_catalog = (killed / "catalog.json").read_bytes()
    before = snapshot(killed)

    code = f"import carelake as cl; cl.ingest_fhir([{str(big)!r}], lake={str(killed)!r})"
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while not list((killed / "_staging").glob("*/keyed")):  # killed while the engine works
        assert proc.poll() is None, "the ingest finished before it could be killed; make the input bigger"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert (killed / "catalog.json").read_bytes() == before_catalog
    assert snapshot(killed) == before
    cl.ingest_fhir([big], lake=killed)
    cl.ingest_fhir([big], lake=clean)
    assert snapshot(killed) == snapshot(clean)


def test_second_writer_fails_clearly_when_it_will_not_wait(lake_path: Path, testdata: Path) -> None:
    lake = cl.open_lake(lake_path)
    patient = testdata / "synthea-fhir-r4/bulk-ndjson-10-patients/Patient.000.ndjson"
    with (
        lake.transaction("holder", parameters={}) as tx,
        pytest.raises(cl.LakeBusyError, match=rf"being written by another job \(run {tx.run_id}, pid {os.getpid()}\)"),
    ):
        cl.ingest_fhir([patient], lake=lake_path, wait_seconds=0)
    assert cl.ingest_fhir([patient], lake=lake_path, wait_seconds=0).stored == 13


@pytest.mark.slow
def test_concurrent_ingests_serialize(lake_path: Path, testdata: Path) -> None:
    bulk = testdata / "synthea-fhir-r4/bulk-ndjson-10-patients"
    cl.open_lake(lake_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "carelake", "--lake", str(lake_path), "ingest", "fhir", str(bulk / name), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in ("Procedure.000.ndjson", "MedicationRequest.000.ndjson", "Procedure.000.ndjson")
    ]
    results = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(r["stored"] for r in results) == [0, 1745, 2056]
    counts = cl.open_lake(lake_path).sql("SELECT resource_type, count(*) AS n FROM resources GROUP BY 1").to_pylist()
    assert {r["resource_type"]: r["n"] for r in counts} == {"Procedure": 2056, "MedicationRequest": 1745}


def test_status_reports_runs_tables_and_quarantine(lake_path: Path, testdata: Path) -> None:
    cl.ingest_fhir([testdata / "synthea-fhir-r4/bulk-ndjson-10-patients"], lake=lake_path)
    status = cl.open_lake(lake_path).status()
    tables = {t["name"]: t["rows"] for t in status["tables"]}
    assert tables["fhir_resources"] == 6065 and tables["quarantine"] == 4
    assert status["quarantine"]["by_rule"] == {"ingest-fhir/missing-resourceType": 4}
    assert [r["job"] for r in status["runs"]] == ["create-lake", "ingest-fhir"]
    manifest = json.loads((lake_path / status["runs"][-1]["manifest"]).read_text())
    assert manifest["summary"]["stored"] == 6065
    assert "Patient" in status["views"] and "resources" in status["views"]


def test_a_refresh_keeps_only_files_the_table_still_has(lake_path: Path) -> None:
    """replace(keep=...) keeps committed files; a file the table no longer lists makes the job fail, not lie."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    lake = cl.open_lake(lake_path)

    def stage(tx: Transaction, rows: list[int]) -> list[Path]:
        folder = tx.stage_dir(f"part-{len(rows)}-{rows[0]}")
        pq.write_table(pa.table({"n": rows}), folder / "p.parquet")
        return [folder / "p.parquet"]

    with lake.transaction("t", parameters={}) as tx:
        tx.replace("t", layer="silver", files=stage(tx, [1, 2]), rows=2)
    first = lake.files("t")
    with lake.transaction("t", parameters={}) as tx:
        tx.replace(
            "t", layer="silver", files=stage(tx, [3]), rows=1, keep=[str(first[0].relative_to(lake.root))], kept_rows=2
        )
    assert sorted(lake.sql("SELECT n FROM t").column("n").to_pylist()) == [1, 2, 3]
    assert {t["name"]: t["rows"] for t in lake.status()["tables"]}["t"] == 3

    before = lake.catalog.version
    with pytest.raises(cl.LakeError, match="no longer has the files"), lake.transaction("t", parameters={}) as tx:
        tx.replace("t", layer="silver", files=stage(tx, [4]), rows=1, keep=["silver/t/gone.parquet"], kept_rows=1)
    assert lake.catalog.version == before
    assert sorted(lake.sql("SELECT n FROM t").column("n").to_pylist()) == [1, 2, 3]
