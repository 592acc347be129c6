"""``carelake demo``: the main job, end to end, on the embedded default."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from carelake.cli._app import app
from carelake.cli._console import RichProgress, emit_json, err, say
from carelake.cli._options import JsonOption


@app.command("demo", epilog="Example:  carelake demo --patients 2000 --seed 7 --out carelake-demo")
def demo_command(
    patients: Annotated[int, typer.Option("--patients", min=10, help="Size of the synthetic population.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic population.")] = 7,
    out: Annotated[Path, typer.Option("--out", help="Folder for data, lake and report (replaced on re-run).")] = Path(
        "carelake-demo"
    ),
    json: JsonOption = False,
) -> None:
    """Generate a synthetic population, ingest it, run every capability and write an HTML report."""
    from carelake.demo import run_demo

    summary = run_demo(
        out, patients=patients, seed=seed, progress=RichProgress(unit_bytes=False), stage_progress=RichProgress()
    )
    if json:
        emit_json(summary.to_dict())
    ingest = summary.stages["ingest"]
    err.rule("carelake demo")
    say(f"generated  {patients:,} synthetic patients (seed {seed}) -> {summary.out}/synthetic-fhir")
    say(
        f"ingested   {ingest['read']:,} records = {ingest['stored']:,} stored + {ingest['new_versions']:,} new "
        f"versions + {ingest['duplicates']:,} duplicates + {ingest['quarantined']:,} quarantined "
        f"({ingest['mb_per_s']} MB/s)"
    )
    views = summary.stages["views"]
    say(
        f"views      {len(views['rows'])} standard views as silver tables, {sum(views['rows'].values()):,} rows "
        f"({views['seconds']:.1f} s)"
    )
    quality = summary.stages["quality"]
    say(
        f"quality    {quality['checks']:,} checks, {quality['resolved']:,} resolved: {quality['passed']:,} passed, "
        f"{quality['failed']:,} failed ({quality['seconds']:.1f} s)"
    )
    match = summary.stages["match"]
    say(
        f"matching   {match['persons_with_multiple_records']:,} people with more than one record; precision "
        f"{match['precision']:.3f}, recall {match['recall']:.3f} against the planted duplicates"
    )
    deid = summary.stages["deid"]
    verified = deid["verify"]["passed"] and deid["verify_report"]["passed"]
    say(
        f"de-identified {deid['written']:,} resources ({deid['policy']['name']}, dates shifted), "
        f"{sum(deid['patients_excluded'].values()):,} patients left out by consent; leak sweep: "
        f"{'no identifier found' if verified else 'LEAKS FOUND'}; "
        f"{deid['risk']['share_below_k']:.1%} of patients in classes below k={deid['risk']['k']}"
    )
    for name, cohort in summary.stages["cohorts"].items():
        rate = "n/a" if cohort["outcome_rate"] is None else f"{cohort['outcome_rate']:.1%}"
        say(
            f"cohort     {name}: {cohort['index_events']:,} index events of {cohort['patients']:,} patients, "
            f"outcome in {rate}, {len(summary.stages['features'][name]['features'])} features per index event"
        )
    for task, model in summary.stages["models"].items():
        if "metrics" not in model:
            say(f"model      {task}: skipped ({model['skipped']})")
            continue
        oracle = model["evaluation"].get("oracle") or {}
        say(
            f"model      {task} LightGBM: held-out AUROC {model['metrics']['auroc']:.3f} "
            f"({model['baseline']['name']} {model['baseline'].get('auroc', float('nan')):.3f}, true probabilities "
            f"{oracle.get('oracle_auroc', float('nan')):.3f}), calibration slope "
            f"{model['metrics']['calibration_slope']:.2f}; worklist of {model['worklist']['patients']:,} patients "
            f"at risk now"
        )
    exports = summary.stages["exports"]
    say(
        f"exports    MEDS {exports['meds']['subjects']:,} subjects, {exports['meds']['events']:,} events; OMOP CDM 5.4 "
        f"{exports['omop']['rows']['person']:,} persons, {sum(exports['omop']['rows'].values()):,} rows; leak sweep: "
        f"{'no identifier found' if exports['verify']['passed'] else 'LEAKS FOUND'}"
    )
    say(f"report     {summary.report}")
    web = summary.stages["web"]
    # Under `make demo` the virtualenv is not on PATH: show the commands as they can be pasted.
    if shutil.which("carelake"):
        exe = "carelake"
    elif sys.argv[0].endswith("__main__.py"):
        exe = f"{sys.executable} -m carelake"
    else:
        exe = sys.argv[0]
    say(f"done in {summary.seconds:.0f} s. Explore:")
    say(f"  {exe} --lake {summary.deid_lake} status")
    query = "select class_code, count(*), avg(length_of_stay_days) from encounters group by 1"
    say(f'  {exe} --lake {summary.deid_lake} sql "{query}"')
    say(f"  {exe} deid verify {summary.deid_lake} --source {summary.lake}")
    say(f"  open {summary.report}")
    say(f"  {exe} --lake {summary.lake} serve --analysis-lake {summary.deid_lake}   # then http://127.0.0.1:8000")
    admin = Path(web["tokens_file"]).read_text(encoding="utf-8").splitlines()[0].split("\t")[1]
    say(f"     sign in as admin with token {admin}")
    say(f"     analyst, clinician and patient tokens: {web['tokens_file']}")
