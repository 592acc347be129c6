"""De-identifying whole lakes: consent, counts, pseudonym linkage, re-runs, crashes, CLI, engines and corpora."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import carelake as cl
from carelake.cli import main
from carelake.errors import ConfigError, LakeError
from carelake.privacy import DeidKey, deidentify, keygen
from carelake.privacy._verify import verify
from carelake.progress import NoProgress


def _resources(lake_path: Path) -> dict[tuple[str, str], str]:
    lake = cl.open_lake(lake_path, create=False)
    rows = lake.sql("SELECT resource_type, id, resource FROM resources").to_pylist()
    return {(r["resource_type"], r["id"]): r["resource"] for r in rows}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("deid")
    cl.generate_fhir(root / "fhir", patients=120, seed=5)
    source = cl.open_lake(root / "lake")
    cl.ingest_fhir([root / "fhir" / "manifest.json"], lake=source)
    key = root / "keys" / "deid.key"
    keygen(key)
    truth = pq.read_table(root / "fhir" / "ground_truth" / "patients.parquet").to_pylist()
    patients = [p["patient_id"] for p in truth]
    opted_out = next(p for p in patients if not any(t["research_opt_out"] for t in truth if t["patient_id"] == p))
    (root / "opt-out.txt").write_text(f"# withdrawn by letter\nPatient/{opted_out}\n")
    summary = deidentify(source, root / "out", key_file=key, opt_out=root / "opt-out.txt", policy=cl.privacy.Policy())
    return {
        "root": root,
        "source": source,
        "key": key,
        "summary": summary,
        "truth": truth,
        "opted_out": opted_out,
    }


def test_counts_reconcile_and_consent_and_opt_out_leave_patients_out(synthetic: dict[str, object]) -> None:
    summary = synthetic["summary"]
    source: cl.Lake = synthetic["source"]
    assert summary.reconciles and summary.read == source.catalog.tables["fhir_resources"].rows
    denied = {t["patient_id"] for t in synthetic["truth"] if t["research_opt_out"]}
    assert summary.patients_excluded == {"consent": len(denied), "opt_out": 1, "k_anonymity": 0}
    assert list(summary.stage_seconds) == ["prepare", "de-identify", "ingest", "views"]  # where the time went
    assert 0 < sum(summary.stage_seconds.values()) <= summary.seconds
    key = DeidKey.load(synthetic["key"])
    out = _resources(synthetic["root"] / "out")
    for patient in [*denied, synthetic["opted_out"]]:
        pseudonym = key.pseudonym("Patient", patient)
        assert ("Patient", pseudonym) not in out
        assert not any(pseudonym in text for text in out.values())
    excluded = (
        source.sql(
            "SELECT count(*) AS n FROM resources WHERE patient_id IN ("
            + ", ".join(f"'{p}'" for p in [*denied, synthetic["opted_out"]])
            + ")"
        )
        .column("n")[0]
        .as_py()
    )
    assert summary.excluded == excluded
    manifest = json.loads(
        next((synthetic["root"] / "out" / "runs").glob(f"{summary.run_id}.json")).read_text(encoding="utf-8")
    )
    assert manifest["summary"]["key_fingerprint"] == key.fingerprint
    assert manifest["summary"]["policy"]["census_vintage"].startswith("2000 Census")
    assert manifest["summary"]["elements"]["name:removed"] > 0
    assert key.fingerprint in json.dumps(manifest) and Path(synthetic["key"]).read_text().split()[1] not in json.dumps(
        manifest
    )


def test_the_output_is_a_valid_linked_lake_that_views_run_on(synthetic: dict[str, object]) -> None:
    out = cl.open_lake(synthetic["root"] / "out", create=False)
    targets = out.sql(
        "SELECT count(*) AS n, sum(CASE WHEN resolved THEN 1 ELSE 0 END) AS ok FROM fhir_reference_targets"
    )
    n, ok = targets.column("n")[0].as_py(), targets.column("ok")[0].as_py()
    assert n > 1000 and ok == n  # every reference still points at a resource in the de-identified lake
    patients = out.sql("SELECT * FROM patients").to_pylist()
    source_patients = synthetic["source"].sql("SELECT count(*) AS n FROM Patient").column("n")[0].as_py()
    assert len(patients) == source_patients - sum(synthetic["summary"].patients_excluded.values())
    assert all(p["birth_date"] is None or len(p["birth_date"]) == 4 for p in patients)
    assert all(p["postal_code"] is None or len(p["postal_code"]) == 3 for p in patients)
    counts = out.sql("SELECT count(*) AS n FROM encounters").column("n")[0].as_py()
    assert counts == synthetic["summary"].by_type["Encounter"]


def test_verify_finds_no_identifier_in_the_output(synthetic: dict[str, object]) -> None:
    result = verify(synthetic["root"] / "out", synthetic["source"])
    assert result.files_scanned > 20 and result.identifiers > 500
    assert result.passed, result.to_dict()["hits"][:5]


def test_rerun_with_the_same_key_gives_the_same_lake_and_a_crash_keeps_the_last_one(
    synthetic: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root: Path = synthetic["root"]
    before = _resources(root / "out")
    shown = _Shown()
    again = deidentify(
        synthetic["source"], root / "out", key_file=synthetic["key"], opt_out=root / "opt-out.txt", progress=shown
    )
    assert _resources(root / "out") == before and again.written == synthetic["summary"].written
    # Both long steps show progress: the walk, and the commit of its output (checks, keys, bronze).
    assert [d.split()[0] for d in shown.started][:2] == ["de-identifying", "committing"]
    monkeypatch.setattr("carelake.privacy._run._publish", _crash)
    with pytest.raises(RuntimeError, match="power cut"):
        deidentify(synthetic["source"], root / "out", key_file=synthetic["key"])
    assert _resources(root / "out") == before  # the opted-out patient is still out: nothing half-written
    assert not (root / ".out.deid-work").exists()
    other_key = tmp_path / "other.key"
    keygen(other_key)
    monkeypatch.undo()
    deidentify(synthetic["source"], tmp_path / "other", key_file=other_key, views=False)
    assert not set(_resources(tmp_path / "other")) & set(before)


def test_one_worker_or_three_give_the_same_lake_and_counts(synthetic: dict[str, object], tmp_path: Path) -> None:
    summaries = {
        workers: deidentify(synthetic["source"], tmp_path / str(workers), key_file=synthetic["key"],
                            opt_out=synthetic["root"] / "opt-out.txt", workers=workers, views=False)
        for workers in (1, 3)
    }  # fmt: skip
    one, three = summaries[1].to_dict(), summaries[3].to_dict()
    for field in ("read", "written", "excluded", "quarantined", "by_type", "elements", "patients_excluded"):
        assert one[field] == three[field] == synthetic["summary"].to_dict()[field], field
    assert _resources(tmp_path / "1") == _resources(tmp_path / "3") == _resources(synthetic["root"] / "out")


class _Shown(NoProgress):
    """Keeps what each progress bar said it was doing."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def start(self, description: str, total: float | None) -> None:
        self.started.append(description)


def _crash(*args: object) -> None:
    raise RuntimeError("power cut")


def test_refuses_to_overwrite_what_it_did_not_make_and_keys_inside_lakes(
    synthetic: dict[str, object], tmp_path: Path
) -> None:
    source: cl.Lake = synthetic["source"]
    other = cl.open_lake(tmp_path / "other-lake")
    with pytest.raises(LakeError, match="did not make"):
        deidentify(source, other.root, key_file=synthetic["key"])
    inside = tmp_path / "out" / "deid.key"
    inside.parent.mkdir()
    shutil.copy(synthetic["key"], inside)
    inside.chmod(0o600)
    with pytest.raises(ConfigError, match="inside the lake"):
        deidentify(source, tmp_path / "out", key_file=inside)
    with pytest.raises(ConfigError, match="separate folder"):
        deidentify(source, source.root / "deid", key_file=synthetic["key"])


def test_cli_keygen_run_and_verify(synthetic: dict[str, object], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    key = tmp_path / "k.key"
    with pytest.raises(SystemExit) as done:
        main(["deid", "keygen", "--out", str(key), "--json"])
    assert done.value.code in (0, None)
    assert json.loads(capsys.readouterr().out)["fingerprint"].startswith("sha256:")
    lake = str(synthetic["source"].root)
    out = tmp_path / "deid"
    with pytest.raises(SystemExit) as done:
        main(["--lake", lake, "deid", "run", "--key-file", str(key), "--out", str(out), "--date-mode", "shift",
              "--no-views", "--json"])  # fmt: skip
    assert done.value.code in (0, None)
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["reconciles"] and summary["policy"]["date_mode"] == "shift" and not summary["policy"]["safe_harbor"]
    assert "not Safe Harbor" in captured.err
    with pytest.raises(SystemExit) as done:
        main(["deid", "verify", str(out), "--source", lake, "--json"])
    assert done.value.code in (0, None)
    assert json.loads(capsys.readouterr().out)["passed"]
    with pytest.raises(SystemExit) as done:
        main(["--lake", lake, "deid", "run", "--out", str(tmp_path / "x")])
    assert done.value.code == 1
    assert "no key file given" in capsys.readouterr().err


def test_shift_mode_keeps_every_interval_within_a_patient(synthetic: dict[str, object], tmp_path: Path) -> None:
    import datetime as dt

    source: cl.Lake = synthetic["source"]
    policy = cl.privacy.Policy.of("safe-harbor", "shift")
    deidentify(source, tmp_path / "shifted", key_file=synthetic["key"], policy=policy, views=False)
    key = DeidKey.load(synthetic["key"])
    periods = (
        "SELECT id, patient_id, json_extract_string(resource, '$.period.start') AS s, "
        "json_extract_string(resource, '$.period.end') AS e FROM Encounter"
    )
    before = source.sql(periods).to_pylist()
    after = {r["id"]: r for r in cl.open_lake(tmp_path / "shifted", create=False).sql(periods).to_pylist()}
    first_visit: dict[str, tuple[dt.datetime, dt.datetime]] = {}
    checked = 0
    for row in before:
        moved = after.get(key.pseudonym("Encounter", row["id"]))
        if moved is None:
            continue  # the patient was left out by consent or opt-out
        start, new_start = dt.datetime.fromisoformat(row["s"]), dt.datetime.fromisoformat(moved["s"])
        assert new_start - start == dt.timedelta(days=key.shift_days(f"Patient/{row['patient_id']}"))
        assert dt.datetime.fromisoformat(moved["e"]) - new_start == dt.datetime.fromisoformat(row["e"]) - start
        # Intervals between a patient's visits survive too.
        first = first_visit.setdefault(row["patient_id"], (start, new_start))
        assert new_start - first[1] == start - first[0]
        checked += 1
    assert checked > 100


@pytest.mark.slow
def test_synthea_corpus_is_de_identified_and_verified(testdata: Path, tmp_path: Path) -> None:
    source = cl.open_lake(tmp_path / "synthea")
    cl.ingest_fhir([testdata / "synthea-fhir-r4"], lake=source)
    keygen(tmp_path / "k.key")
    summary = deidentify(source, tmp_path / "out", key_file=tmp_path / "k.key")
    assert summary.reconciles and summary.written > 1000
    assert summary.elements["note:scrubbed"] > 0 and summary.elements["reference:pseudonymised"] > 1000
    out = cl.open_lake(tmp_path / "out", create=False)
    unresolved = out.sql("SELECT count(*) AS n FROM fhir_reference_targets WHERE NOT resolved").column("n")[0].as_py()
    source_unresolved = (
        source.sql("SELECT count(*) AS n FROM fhir_reference_targets WHERE NOT resolved").column("n")[0].as_py()
    )
    assert unresolved <= source_unresolved
    result = verify(tmp_path / "out", source)
    assert result.passed, result.to_dict()["hits"][:5]


@pytest.mark.spark
def test_spark_gives_the_same_de_identified_lake(synthetic: dict[str, object], tmp_path: Path) -> None:
    deidentify(synthetic["source"], tmp_path / "spark", key_file=synthetic["key"],
               opt_out=synthetic["root"] / "opt-out.txt", engine="spark", views=False)  # fmt: skip
    assert _resources(tmp_path / "spark") == _resources(synthetic["root"] / "out")


def test_k_option_leaves_out_the_patients_a_k_anonymity_plan_suppresses(
    synthetic: dict[str, object], tmp_path: Path
) -> None:
    from carelake.privacy import achieve_k

    source: cl.Lake = synthetic["source"]
    summary = deidentify(source, tmp_path / "k", key_file=synthetic["key"], k=5, views=False)
    plan = achieve_k(source, k=5, as_of=summary.as_of)
    assert summary.k_anonymity is not None and summary.k_anonymity["records_suppressed"] == plan.records_suppressed
    assert summary.patients_excluded["k_anonymity"] == len(set(plan.suppressed_ids) - _denied(synthetic))
    assert summary.reconciles
    out = _resources(tmp_path / "k")
    key = DeidKey.load(synthetic["key"])
    assert not any(("Patient", key.pseudonym("Patient", p)) in out for p in plan.suppressed_ids)
    if plan.generalisation.geography != "zip3":
        assert not any('"postalCode"' in text for (kind, _), text in out.items() if kind == "Patient")


def _denied(synthetic: dict[str, object]) -> set[str]:
    return {t["patient_id"] for t in synthetic["truth"] if t["research_opt_out"]}
