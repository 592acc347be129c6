"""The main job, end to end on the embedded default: generate, ingest, check, de-identify, report.

Each capability adds its stage here, so ``make demo`` always shows everything carelake can do. Stages that
need identities (ingestion, quality, matching) run on the identified lake; everything analysts see after
de-identification (views, risk, cohorts, features, models and worklists) runs on the de-identified lake, as a
real deployment would.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from carelake.errors import ConfigError
from carelake.progress import NoProgress, Progress

MARKER = ".carelake-demo"


@dataclass
class DemoSummary:
    """Where the demo wrote things and the key figures of each stage."""

    out: str
    lake: str
    deid_lake: str
    report: str
    patients: int
    seed: int
    stages: dict[str, dict[str, Any]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_demo(
    out: str | Path = "carelake-demo",
    *,
    patients: int = 2000,
    seed: int = 7,
    progress: Progress | None = None,
    stage_progress: Progress | None = None,
) -> DemoSummary:
    """Run every capability on a fresh synthetic population; a second run replaces the first."""
    from carelake.cohorts import build_cohort, shipped_tasks
    from carelake.errors import LakeError
    from carelake.features import build_features
    from carelake.fhir import materialize_views, standard_views
    from carelake.interop import export_meds, export_omop
    from carelake.lake import open_lake
    from carelake.match import match_patients
    from carelake.models import evaluate_model, score_model, train_model
    from carelake.privacy import Policy, deidentify, keygen, reidentification_risk, verify
    from carelake.quality import run_quality
    from carelake.reports import Report, lake_overview, match_overview, quality_overview, views_overview
    from carelake.reports._cohorts import cohort_overview
    from carelake.reports._model_card import model_overview, worklist_overview
    from carelake.reports._privacy import deid_overview
    from carelake.sources.fhir import ingest_fhir
    from carelake.synth import generate_fhir

    started = time.perf_counter()
    progress = progress or NoProgress()
    root = _fresh_folder(Path(out))
    stages: dict[str, dict[str, Any]] = {}

    data = root / "synthetic-fhir"
    synth = generate_fhir(data, patients=patients, seed=seed, faults=0.01, duplicates=0.02, progress=progress)
    stages["generate"] = synth.to_dict()

    lake = open_lake(root / "lake")
    ingest = ingest_fhir([data / "manifest.json"], lake=lake, progress=stage_progress or progress)
    stages["ingest"] = ingest.to_dict()

    views_started = time.perf_counter()
    view_rows = materialize_views(standard_views(), lake=lake)
    stages["views"] = {"rows": view_rows, "seconds": round(time.perf_counter() - views_started, 2)}

    # The export's transactionTime is the data's as-of date: events after it are "in the future".
    as_of = json.loads((data / "manifest.json").read_text())["transactionTime"][:10]
    quality = run_quality(lake, as_of=as_of, progress=stage_progress or progress)
    stages["quality"] = quality.to_dict()

    matching = match_patients(lake, progress=stage_progress or progress)
    stages["match"] = matching.to_dict() | _match_accuracy(lake, data / "ground_truth" / "duplicates.parquet")

    # The key lives beside the lakes, never inside one; shifted dates keep the intervals analyses need.
    key = root / "keys" / "deid.key"
    keygen(key)
    deid_lake = root / "lake-deid"
    deid = deidentify(
        lake, deid_lake, key_file=key, policy=Policy.of("safe-harbor", "shift"), as_of=as_of,
        views=False, progress=stage_progress or progress,
    )  # fmt: skip
    deid_lake_opened = open_lake(deid_lake, create=False)
    deid_view_rows = materialize_views(standard_views(), lake=deid_lake_opened)
    swept = verify(deid_lake, lake, iso_dates=False, progress=stage_progress or progress)  # dates are shifted
    risk = reidentification_risk(deid_lake_opened, k=11, as_of=as_of)
    stages["deid"] = deid.to_dict() | {"verify": swept.to_dict(), "risk": risk.to_dict()}

    # Study cohorts are built where analysts work: on the de-identified lake.
    cohorts = [build_cohort(task, lake=deid_lake_opened, as_of=as_of) for task in shipped_tasks()]
    stages["cohorts"] = {c.name: c.to_dict() for c in cohorts}
    features = [build_features(c.name, lake=deid_lake_opened) for c in cohorts]
    stages["features"] = {f.cohort: f.to_dict() for f in features}
    # Each task's model is trained, re-evaluated against the generator's truth (its ids pseudonymised with the
    # same key) and used to score the patients at risk now into a worklist.
    models, worklists = [], []
    stages["models"] = {}
    for cohort in cohorts:
        try:
            train_model(cohort.name, lake=deid_lake_opened)
        except LakeError as exc:  # a small demo population may hold too few outcomes to train on
            stages["models"][cohort.name] = {"skipped": exc.message}
            continue
        model = evaluate_model(cohort.name, lake=deid_lake_opened, truth=data / "ground_truth", key_file=key)
        models.append(model)
        stages["models"][cohort.name] = model.to_dict() | {"worklist": {"patients": 0}}
        try:
            worklist = score_model(cohort.name, lake=deid_lake_opened)
        except LakeError as exc:  # nobody at risk on the as-of date: the model stands, the worklist is empty
            stages["models"][cohort.name]["worklist"] |= {"note": exc.message}
            continue
        worklists.append(worklist)
        stages["models"][cohort.name]["worklist"] = worklist.to_dict()

    # Care teams work on identified data: the same cohorts and features on the identified lake, scored with the
    # models trained on the de-identified one, give the clinicians' worklists in the web application.
    care = {}
    for cohort in cohorts:
        if "skipped" in stages["models"][cohort.name]:
            continue
        build_cohort(cohort.name, lake=lake, as_of=as_of)
        build_features(cohort.name, lake=lake)
        try:
            scored = score_model(cohort.name, lake=lake, model=stages["models"][cohort.name]["model_dir"])
            care[cohort.name] = scored.patients
        except LakeError as exc:  # nobody at risk now in a small population
            care[cohort.name] = exc.message
    stages["care_worklists"] = care
    stages["web"] = _web_users(root, lake)

    # Research networks get the de-identified lake in their own formats; both exports are swept for identifiers.
    meds = export_meds(deid_lake_opened, root / "exports" / "meds")
    omop = export_omop(deid_lake_opened, root / "exports" / "omop")
    stages["exports"] = {
        "meds": meds.to_dict(),
        "omop": omop.to_dict(),
        "verify": verify(root / "exports", lake, iso_dates=False).to_dict(),
    }

    report = Report("carelake demo", subtitle=f"{patients:,} synthetic patients, seed {seed}, DuckDB")
    report.heading("Ingestion")
    report.metrics(
        {
            "records read": ingest.read,
            "stored": ingest.stored,
            "new versions": ingest.new_versions,
            "duplicates": ingest.duplicates,
            "quarantined": ingest.quarantined,
            "MB/s": ingest.mb_per_s,
        }
    )
    report.text(
        "Every record read is stored, counted as a duplicate or new version, or quarantined with a "
        f"reason: {ingest.read:,} = {ingest.stored:,} + {ingest.new_versions:,} + {ingest.duplicates:,} "
        f"+ {ingest.quarantined:,}."
    )
    report.table(
        ["resource type", "read", "stored", "new versions", "duplicates"],
        [[t, c["read"], c["stored"], c["new_versions"], c["duplicates"]] for t, c in ingest.by_type.items()],
    )
    quality_overview(lake, report, quality)
    match_overview(lake, report, matching)
    accuracy = stages["match"]
    report.text(
        f"Against the generator's ground truth ({accuracy['true_pairs']:,} planted duplicate records): "
        f"precision {accuracy['precision']:.3f}, recall {accuracy['recall']:.3f}."
    )
    deid_overview(report, deid, swept, risk)
    lake_overview(deid_lake_opened, report)
    views_overview(deid_lake_opened, report, deid_view_rows)
    cohort_overview(report, cohorts)
    for model in models:
        model_overview(report, model)
    for worklist in worklists:
        worklist_overview(report, worklist)
    report.heading("Exports of the de-identified lake")
    report.text(
        f"MEDS: {meds.subjects:,} subjects, {meds.events:,} events in {meds.shards} shard(s), validated with the "
        "meds package. OMOP CDM 5.4 (no vocabulary given, so concept ids are 0 and the codes are listed in "
        "unmapped_codes.csv): " + ", ".join(f"{t} {n:,}" for t, n in omop.rows.items()) + ". See docs/interop.md."
    )
    report_path = report.save(root / "report" / "index.html")
    # The report is an output too: it must not carry any identifier of the source either.
    stages["deid"]["verify_report"] = verify(report_path.parent, lake, iso_dates=False).to_dict()

    return DemoSummary(
        out=str(root),
        lake=str(lake.root),
        deid_lake=str(deid_lake_opened.root),
        report=str(report_path),
        patients=patients,
        seed=seed,
        stages=stages,
        seconds=round(time.perf_counter() - started, 2),
    )


def _web_users(root: Path, lake: Any) -> dict[str, Any]:
    """One demo user per role for `carelake serve`; their tokens go to a 0600 file beside the lakes."""
    from carelake.web import Users

    users = Users(lake.root)
    patient = lake.sql("SELECT id FROM patients ORDER BY id LIMIT 1").column(0)[0].as_py()
    tokens = {
        "admin": users.add("admin", "admin"),
        "analyst": users.add("analyst", "analyst"),
        "clinician": users.add("clinician", "clinician"),
        "patient": users.add("patient", "patient", patient=patient),
    }
    file = root / "web-tokens.txt"
    file.touch(mode=0o600)
    file.write_text("".join(f"{name}\t{token}\n" for name, token in tokens.items()), encoding="utf-8")
    return {"users": list(tokens), "tokens_file": str(file)}


def _match_accuracy(lake: Any, truth: Path) -> dict[str, Any]:
    """Precision and recall of the person keys against the planted duplicates (synthetic data only)."""
    import pyarrow.parquet as pq

    pairs = {tuple(sorted(p)) for p in pq.read_table(truth).select(["patient_id", "duplicate_patient_id"]).to_pylist()
             for p in [(p["patient_id"], p["duplicate_patient_id"])]}  # fmt: skip
    linked = lake.sql(
        "SELECT a.patient_id AS l, b.patient_id AS r FROM patient_links a JOIN patient_links b "
        "ON a.person_key = b.person_key AND a.patient_id < b.patient_id"
    ).to_pylist()
    found = {(x["l"], x["r"]) for x in linked}
    hits = len(found & pairs)
    return {
        "true_pairs": len(pairs),
        "precision": round(hits / len(found), 4) if found else 1.0,
        "recall": round(hits / len(pairs), 4) if pairs else 1.0,
    }


def _fresh_folder(root: Path) -> Path:
    """Empty the demo folder, refusing to touch a folder the demo did not create."""
    if root.exists() and any(root.iterdir()):
        if not (root / MARKER).exists():
            raise ConfigError(
                f"{root} exists and was not created by `carelake demo`",
                hint="choose another folder with --out, or empty this one",
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("created by carelake demo; the next demo run replaces this folder\n")
    return root.resolve()
