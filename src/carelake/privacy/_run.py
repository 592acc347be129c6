"""``deidentify``: a whole lake in, a separate de-identified lake out, with a manifest of what changed.

The source lake is read once, sorted by patient, in bounded Arrow batches; each resource passes through
:class:`~carelake.privacy._walk.Deidentifier` with its patient's date offset and known identifiers, and
the output is staged, checked and keyed by ingestion's own SQL into a new lake built beside ``out``, in one
commit. Only when everything has been written does that lake replace ``out`` (two renames), so a crash leaves
the previous output intact and a re-run with the same key produces the same lake again.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from carelake.errors import ConfigError, InputError, LakeError
from carelake.lake import QUARANTINE_SCHEMA, QUARANTINE_TABLE, Lake, open_lake
from carelake.lake._lake import MARKER
from carelake.privacy._keys import DeidKey
from carelake.privacy._policy import Policy
from carelake.privacy._text import Known, TextScrubber
from carelake.privacy._walk import Deidentifier, Quarantined, Subject
from carelake.progress import NoProgress, Progress, StageTimer

if TYPE_CHECKING:
    from carelake.lake import Transaction
    from carelake.sources.fhir._staging import StagingWriter

STAGE = "deid-run"
_BATCH = 2_000

# Consents that deny research use: the provision type and the scope a patient's Consent must carry.
_CONSENT_VIEW = {
    "resourceType": "ViewDefinition",
    "name": "research_consents",
    "resource": "Consent",
    "status": "active",
    "select": [
        {
            "column": [
                {"name": "patient_id", "path": "patient.getReferenceKey(Patient)"},
                {"name": "status", "path": "status"},
                {"name": "provision_type", "path": "provision.type"},
                {"name": "research", "path": "scope.coding.where(code = 'research').exists()", "type": "boolean"},
                {"name": "ends", "path": "provision.period.end", "type": "dateTime"},
            ]
        }
    ],
}


@dataclass
class DeidSummary:
    """What a run did: counts that reconcile (read = written + excluded + quarantined) and per category."""

    run_id: str
    out: str
    policy: dict[str, Any]
    key_fingerprint: str
    as_of: str
    read: int = 0
    written: int = 0
    excluded: int = 0
    quarantined: int = 0
    patients_excluded: dict[str, int] = field(default_factory=dict)
    quarantined_by_rule: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    elements: dict[str, int] = field(default_factory=dict)
    k_anonymity: dict[str, Any] | None = None  # the plan applied with --k: generalisation and suppression
    seconds: float = 0.0
    resources_per_s: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)  # prepare, de-identify, ingest, views

    @property
    def reconciles(self) -> bool:
        return self.read == self.written + self.excluded + self.quarantined

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"reconciles": self.reconciles}


def deidentify(
    source: Lake | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    key_file: str | os.PathLike[str] | None,
    policy: Policy | None = None,
    as_of: str | dt.date | None = None,
    opt_out: str | os.PathLike[str] | None = None,
    k: int | None = None,
    engine: str = "duckdb",
    views: bool = True,
    workers: int | None = None,
    progress: Progress | None = None,
) -> DeidSummary:
    """De-identify every current FHIR resource of ``source`` into the lake at ``out``.

    Patients with an active Consent denying research, or listed in ``opt_out`` (one patient id per line),
    are left out with all their data. The key file must lie outside both lakes. With ``k``, the patients
    are made k-anonymous on age band, sex, ZIP3, race and ethnicity: ZIP codes are coarsened as
    :func:`~carelake.privacy.achieve_k` plans, and the patients still in classes below k are left out.
    ``workers`` processes share the work (default: one per core for large lakes); the output is the same.

    Examples:
        >>> s = deidentify("lake", "lake-deid", key_file="~/deid.key")  # doctest: +SKIP
        >>> s.reconciles, s.policy["safe_harbor"]  # doctest: +SKIP
        (True, True)
    """
    started = time.perf_counter()
    timer = StageTimer()
    progress = progress or NoProgress()
    policy = policy or Policy()
    lake = source if isinstance(source, Lake) else open_lake(source, create=False)
    target = Path(out).expanduser().resolve()
    key = DeidKey.load(Path(key_file).expanduser() if key_file else None, forbidden=(lake.root, target))
    _check_target(lake, target)
    opted_out = _read_opt_out(Path(opt_out)) if opt_out else set()
    _recover(target)

    work = target.parent / f".{target.name}.deid-work"
    shutil.rmtree(work, ignore_errors=True)  # a crashed run's leftovers; the output itself is untouched
    work.mkdir(parents=True)
    try:
        with closing(lake.connect(engine)) as eng:
            reference_date = _as_of(eng, as_of)
            consents = _denied_by_consent(lake, engine, reference_date)
            conditional = _conditional_references(eng)
            staged = eng.write_parquet(
                "SELECT resource_type, id, patient_id, resource FROM resources "
                "ORDER BY patient_id NULLS LAST, resource_type, id",
                work / "source",
            )
        plan = None
        if k is not None:
            from carelake.privacy._risk import achieve_k

            plan = achieve_k(lake, k=k, as_of=reference_date, engine=engine)
        suppressed = set(plan.suppressed_ids) if plan else set()
        from carelake.privacy._known import known_identifiers

        known = known_identifiers(lake, engine=engine).sort_by("patient_id")
        # Towns where anyone in the lake lives are scrubbed from every text, facility names included.
        places = {r["value"] for r in known.filter(pc.equal(known["category"], "address")).to_pylist()}
        job = _Job(
            policy=policy,
            key=key,
            places=tuple(sorted(p for p in places if not any(ch.isdigit() for ch in p))),
            conditional=conditional,
            geography=plan.generalisation.geography if plan else "zip3",
            as_of=reference_date,
        )
        summary = DeidSummary(
            run_id="",
            out=str(target),
            policy=policy.to_dict(),
            key_fingerprint=key.fingerprint,
            as_of=reference_date.isoformat(),
            k_anonymity=plan.to_dict() if plan else None,
        )
        excluded_patients: dict[str, set[str]] = {"consent": set(), "opt_out": set(), "k_anonymity": set()}
        quarantine: list[dict[str, Any]] = []
        total = sum(pq.read_metadata(f).num_rows for f in staged)
        timer.lap("prepare")  # the source sorted by patient, consents, known identifiers, the k plan
        by_type: Counter[str] = Counter()
        counts: Counter[str] = Counter()

        def tasks() -> Iterator[list[tuple[list[dict[str, Any]], str | None, Known]]]:
            """Patients to de-identify, a few thousand resources at a time; the left-out are counted here."""
            task: list[tuple[list[dict[str, Any]], str | None, Known]] = []
            size = 0
            for rows, patient, knowledge in _by_patient(staged, known):
                summary.read += len(rows)
                why = (
                    "consent" if patient in consents
                    else "opt_out" if patient in opted_out
                    else "k_anonymity" if patient in suppressed
                    else None
                )  # fmt: skip
                if why:
                    summary.excluded += len(rows)
                    excluded_patients[why].add(patient)
                    progress.advance(len(rows))
                    continue
                task.append((rows, patient, knowledge))
                size += len(rows)
                if size >= _TASK_ROWS:
                    yield task
                    task, size = [], 0
            if task:
                yield task

        from carelake.sources.fhir._ingest import stage_records
        from carelake.sources.fhir._staging import StagingWriter

        built = open_lake(work / "lake")
        with built.transaction(STAGE, parameters={"policy": summary.policy, "as_of": summary.as_of}) as tx:
            summary.run_id = tx.run_id
            # The output goes straight to ingestion's staging, as OMOP rows converted to FHIR do: no NDJSON
            # in between (at 100,000 patients that was 17 GB written, read back and hashed).
            writer = StagingWriter(tx.staging / "deidentified")
            writer.add_file(0, STAGE, None)
            progress.start(f"de-identifying {total:,} resources", total)
            try:
                for written, refused, changed in _run_tasks(job, tasks(), workers=_workers(workers, total)):
                    _stage(writer, written)
                    by_type.update(resource_type for resource_type, _ in written)
                    quarantine.extend(refused)
                    counts.update(changed)
                    summary.written += len(written)
                    progress.advance(len(written) + len(refused))
            finally:
                writer.close()
                progress.stop()
            timer.lap("de-identify")

            summary.quarantined = len(quarantine)
            summary.quarantined_by_rule = dict(Counter(q["rule"] for q in quarantine))
            summary.patients_excluded = {k: len(v) for k, v in excluded_patients.items()}
            summary.by_type = dict(sorted(by_type.items()))
            summary.elements = dict(sorted(counts.items()))
            progress.start(f"committing {summary.written:,} resources on {engine}", None)
            try:
                with timer("ingest"), closing(built.connect(engine)) as eng:
                    stage_records(eng, tx, writer)  # ingestion's checks and keys, into the new lake's bronze
            finally:
                progress.stop()
            _append_quarantine(tx, quarantine)
            tx.summary = summary.to_dict()
        if views and summary.written:
            from carelake.fhir import materialize_views, standard_views

            with timer("views"):
                materialize_views(standard_views(), lake=built, engine=engine)
        summary.stage_seconds = timer.seconds
        summary.seconds = round(time.perf_counter() - started, 3)
        summary.resources_per_s = round(summary.read / summary.seconds, 1) if summary.seconds else 0.0
        _publish(built.root, target, summary)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def output_policy(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The policy the latest ``deid run`` wrote ``out`` with, from its manifest; None when it made no such lake."""
    root = Path(out)
    if not (root / MARKER).exists():
        return None
    runs = [run for run in open_lake(root, create=False).catalog.runs if run["job"] == STAGE]
    if not runs:
        return None
    manifest = orjson.loads((root / runs[-1]["manifest"]).read_bytes())
    return manifest["summary"]["policy"]


# -- inputs --------------------------------------------------------------------------------------------------------
def _check_target(lake: Lake, target: Path) -> None:
    if target == lake.root or target.is_relative_to(lake.root) or lake.root.is_relative_to(target):
        raise ConfigError(
            "the de-identified lake must be a separate folder from the source lake",
            hint="pass --out a folder outside the source lake",
        )
    if not target.exists():
        return
    if not (target / MARKER).exists():
        if any(target.iterdir()):
            raise LakeError(f"{target} exists and is not a carelake lake", hint="choose an empty or new folder")
        return
    if not any(run["job"] == STAGE for run in open_lake(target, create=False).catalog.runs):
        raise LakeError(
            f"{target} is a lake that `carelake deid run` did not make; refusing to replace it",
            hint="choose a new --out folder for the de-identified lake",
        )


def _read_opt_out(path: Path) -> set[str]:
    """Patient ids, one per line (``Patient/`` prefix allowed, ``#`` comments and blank lines ignored)."""
    if not path.is_file():
        raise InputError(f"no opt-out file at {path}", hint="pass a text file with one patient id per line")
    ids = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        text = text.removeprefix("Patient/")
        if not text.replace("-", "").replace(".", "").isalnum() or len(text) > 64:
            raise InputError(f"{path}:{number} is not a patient id", hint="one FHIR Patient id per line")
        ids.add(text)
    return ids


def _as_of(eng: Any, as_of: str | dt.date | None) -> dt.date:
    """The date ages are measured at: given, or the latest clinical time in the lake (so re-runs agree)."""
    if isinstance(as_of, dt.date):
        return as_of
    if as_of:
        try:
            return dt.date.fromisoformat(as_of)
        except ValueError:
            raise ConfigError(f"--as-of {as_of!r} is not a date", hint="write it as YYYY-MM-DD") from None
    latest = eng.query("SELECT max(clinical_time) AS t FROM resources").column("t")[0].as_py()
    return latest.date() if latest is not None else dt.date(2000, 1, 1)


def _denied_by_consent(lake: Lake, engine: str, as_of: dt.date) -> set[str]:
    from carelake.fhir import run_view

    denied = set()
    for row in run_view(_CONSENT_VIEW, lake=lake, engine=engine).to_pylist():
        ends = row["ends"]
        if ends is not None and str(ends)[:10] < as_of.isoformat():
            continue
        if row["patient_id"] and row["status"] == "active" and row["provision_type"] == "deny" and row["research"]:
            denied.add(row["patient_id"])
    return denied


def _conditional_references(eng: Any) -> dict[str, tuple[str, str]]:
    """Where each conditional reference points: it resolves the same from any resource, so one entry each."""
    rows = eng.query("""
        SELECT DISTINCT reference, target_type, target_id FROM fhir_reference_targets
        WHERE kind = 'conditional' AND target_id IS NOT NULL""").to_pylist()
    return {r["reference"]: (r["target_type"], r["target_id"]) for r in rows}


# -- the stream ----------------------------------------------------------------------------------------------------
def _by_patient(staged: list[Path], known: pa.Table) -> Iterator[tuple[list[dict[str, Any]], str | None, Known]]:
    """Resources grouped by patient (in sorted order), each group with what the record knows of that patient."""
    known_rows = iter(known.to_batches(max_chunksize=_BATCH))
    pending: list[dict[str, Any]] = []
    buffered: deque[dict[str, Any]] = deque()

    def knowledge_for(patient: str | None) -> Known:
        # Known rows are sorted by patient like the resources: read ahead until past this patient.
        found: dict[str, list[str]] = defaultdict(list)
        while True:
            while buffered and buffered[0]["patient_id"] is not None and buffered[0]["patient_id"] < (patient or ""):
                buffered.popleft()
            while buffered and buffered[0]["patient_id"] == patient:
                row = buffered.popleft()
                found[row["category"]].append(row["value"])
            if buffered or patient is None:
                break
            batch = next(known_rows, None)
            if batch is None:
                break
            buffered.extend(batch.to_pylist())
        return _known(found)

    current: str | None = None
    for file in staged:
        for batch in pq.ParquetFile(file).iter_batches(batch_size=_BATCH):
            for row in batch.to_pylist():
                if pending and row["patient_id"] != current:
                    yield pending, current, knowledge_for(current) if current else Known()
                    pending = []
                current = row["patient_id"]
                pending.append(row)
    if pending:
        yield pending, current, knowledge_for(current) if current else Known()


def _known(found: dict[str, list[str]]) -> Known:
    return Known(
        names=tuple(found.get("name", ())),
        identifiers=tuple(found.get("identifier", []) + found.get("url", [])),
        phones=tuple(found.get("phone", ())),
        emails=tuple(found.get("email", ())),
        addresses=tuple(found.get("address", ())),
        dates=tuple(found.get("birth_date", ())),
    )


def _subject(
    key: DeidKey, patient: str | None, known: Known, rows: list[dict[str, Any]], policy: Policy, as_of: dt.date
) -> Subject | None:
    if patient is None:
        return None
    cap = None
    if policy.caps_age:
        for row in rows:
            if row["resource_type"] == "Patient" and row["id"] == patient:
                cap = _birth_year_cap(orjson.loads(row["resource"]), as_of)
    return Subject(shift_days=key.shift_days(f"Patient/{patient}"), known=known, birth_year_cap=cap)


def _own_subject(key: DeidKey, row: dict[str, Any]) -> Subject:
    """Resources with no patient (practitioners, organisations) move by their own offset."""
    return Subject(shift_days=key.shift_days(f"{row['resource_type']}/{row['id']}"))


def _birth_year_cap(patient: dict[str, Any], as_of: dt.date) -> str | None:
    """Safe Harbor: a patient 90 or older (at death, or at the reference date) is born 'in' as_of - 90."""
    birth = patient.get("birthDate")
    if not isinstance(birth, str) or not birth[:4].isdigit():
        return None
    at = as_of
    death = patient.get("deceasedDateTime")
    if isinstance(death, str) and death[:4].isdigit():
        at = dt.date(int(death[:4]), int(death[5:7] or 1) if len(death) >= 7 else 12, 28)
    born = (int(birth[:4]), int(birth[5:7]) if len(birth) >= 7 else 1, int(birth[8:10]) if len(birth) >= 10 else 1)
    age = at.year - born[0] - ((at.month, at.day) < born[1:])
    return str(at.year - 90) if age > 89 else None


def _quarantine_row(key: DeidKey, row: dict[str, Any], exc: Quarantined) -> dict[str, Any]:
    # The record stays in the source lake only: the de-identified lake learns the pseudonym and the reason.
    pseudonym = key.pseudonym(row["resource_type"], row["id"])
    return {
        "stage": STAGE,
        "rule": exc.rule,
        "message": f"{row['resource_type']}/{pseudonym}: {exc.message}",
    }


def _stage(writer: StagingWriter, written: list[tuple[str, bytes]]) -> None:
    """A task's output as staged lines, numbered in the order they were written (the run's one "file")."""
    if not written:
        return
    first = writer.records + 1
    writer.add_lines(
        0,
        pa.array(range(first, first + len(written)), type=pa.int64()),
        pa.nulls(len(written), pa.int64()),
        pa.array([line for _, line in written], type=pa.string()),
    )


# -- the work, in this process or in worker processes ------------------------------------------------------------
_TASK_ROWS = 2_000
_IN_PROCESS_BELOW = 20_000  # resources: starting workers (each loads the scrubber) costs more than it saves


@dataclass(frozen=True)
class _Job:
    """Everything a worker needs to de-identify any patient's resources (picklable; the key stays in memory)."""

    policy: Policy
    key: DeidKey
    places: tuple[str, ...]
    conditional: dict[str, tuple[str, str]]
    geography: str
    as_of: dt.date


_Done = tuple[list[tuple[str, bytes]], list[dict[str, Any]], Counter[str]]
_WORKER: tuple[_Job, Deidentifier] | None = None


def _start_worker(job: _Job) -> None:
    global _WORKER
    scrubber = TextScrubber(places=job.places)
    _WORKER = (job, Deidentifier(job.policy, job.key, scrubber=scrubber, conditional=job.conditional,
                                 geography=job.geography))  # fmt: skip


def _work(task: list[tuple[list[dict[str, Any]], str | None, Known]]) -> _Done:
    """De-identify a few patients' resources: NDJSON lines by type, quarantine rows, element counts."""
    assert _WORKER is not None
    job, deid = _WORKER
    deid.counts = Counter()
    written: list[tuple[str, bytes]] = []
    refused: list[dict[str, Any]] = []
    for rows, patient, knowledge in task:
        subject = _subject(job.key, patient, knowledge, rows, job.policy, job.as_of)
        for row in rows:
            try:
                clean = deid.resource(orjson.loads(row["resource"]), subject or _own_subject(job.key, row))
            except Quarantined as exc:
                refused.append(_quarantine_row(job.key, row, exc))
                continue
            written.append((row["resource_type"], orjson.dumps(clean)))
    return written, refused, deid.counts


def _workers(asked: int | None, total: int) -> int:
    if asked is not None:
        return max(1, asked)
    return 1 if total < _IN_PROCESS_BELOW else min(len(os.sched_getaffinity(0)), 8)


def _run_tasks(job: _Job, tasks: Iterator[Any], *, workers: int) -> Iterator[_Done]:
    """Results in task order (so the output is the same however many workers), at most 2 per worker queued."""
    if workers == 1:
        _start_worker(job)
        yield from map(_work, tasks)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # no fork of a process that has run DuckDB's threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(job,)) as pool:
        pending: deque[Any] = deque()
        for task in tasks:
            pending.append(pool.submit(_work, task))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


# -- the output lake -----------------------------------------------------------------------------------------------
def _append_quarantine(tx: Transaction, quarantine: list[dict[str, Any]]) -> None:
    """Resources the walk refused: the pseudonym and the reason only (the record stays in the source lake)."""
    if not quarantine:
        return
    rows = [
        {"run_id": tx.run_id, "source_file": None, "source_sha256": None, "line": None, "entry_index": None,
         "byte_offset": None, "record": None, **q}
        for q in quarantine
    ]  # fmt: skip
    file = tx.stage_dir("quarantine") / "part-0.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA), file)
    tx.append(QUARANTINE_TABLE, layer="quarantine", files=[file], rows=len(rows))


def _publish(built: Path, target: Path, summary: DeidSummary) -> None:
    """Swap the new lake into place: the old output is renamed away first and deleted last."""
    manifest = built / "runs" / f"{summary.run_id}.json"
    data = orjson.loads(manifest.read_bytes())
    data["summary"] = summary.to_dict()  # the final timings, known only now
    manifest.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    old = target.parent / f".{target.name}.deid-replaced"
    if target.exists():
        os.replace(target, old)
    os.replace(built, target)
    shutil.rmtree(old, ignore_errors=True)


def _recover(target: Path) -> None:
    """After a crash between the two renames, put the previous output back."""
    old = target.parent / f".{target.name}.deid-replaced"
    if old.exists():
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, target)
