"""The lake as a MEDS dataset, for the machine-learning tools that read the Medical Event Data Standard.

MEDS (https://medical-event-data-standard.github.io, schemas from the ``meds`` package) is one long table of
(subject_id, time, code, numeric_value, text_value) rows in Parquet shards, plus metadata. The export writes::

    data/00000.parquet …             each subject in exactly one shard, its rows contiguous and sorted by time,
                                     static rows (time null) first; ties ordered by code, value, text
    metadata/dataset.json            dataset_name (the lake folder's name), dataset_version (its catalog version)
    metadata/codes.parquet           every code the shards use, once, in code order
    metadata/subject_splits.parquet  train / tuning / held_out for every subject in the shards

What becomes a row: each clinical event of ``cl_events`` once (its primary coding), at its start time (UTC, as
a time-zone-less timestamp); ``MEDS_BIRTH`` at the birth date and ``MEDS_DEATH`` at the date of death when it is
known; and static rows (time null) for gender, race and ethnicity (``GENDER/female``, ``RACE/2106-3``,
``ETHNICITY/2186-5``). Codes are ``<OMOP vocabulary_id>/<code>`` (``SNOMED/44054006``, ``LOINC/4548-4``; the
system URI stays as prefix for a system not in ``VOCABULARIES``); an encounter is its class (``ENCOUNTER/IMP``);
a screening answer is its question (``LOINC/<question>``) with the answer code as text_value. Observation and
screening values go in numeric_value. Subjects are numbered by ``cl_person_ids``, like the OMOP export. An event
without a patient in ``patients``, a time or a code cannot be a MEDS row; the summary counts those by reason.

Splits are by rank, not by a per-subject coin: subjects are ordered by ``(subject_id mod p) * m mod p`` (p = 2^31
- 1, m ≈ p / golden ratio, so consecutive ids spread evenly; ties by subject_id), and the first round(N x train)
are ``train``, the next up to round(N x (train + tuning)) ``tuning``, the rest ``held_out``. The order is integer
arithmetic both engines compute alike, so a lake's split depends only on its subject ids and the fractions.

The engine sorts the events and writes them to staging; shards are then cut from that file in record batches,
in row groups of a fixed size, so memory stays flat whatever the lake's size and a re-run writes the same bytes.
Everything is written into a hidden folder beside ``out`` and renamed into place once every file has passed
the ``meds`` schemas.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from carelake._version import __version__
from carelake.engine._base import first_line
from carelake.errors import ConfigError, EngineError, LakeError
from carelake.fhir._events import EVENT_VIEWS, SYSTEMS, VOCABULARY_OF_SYSTEM, register_events, vocabulary_sql
from carelake.interop._ids import PERSON_IDS, register_person_ids
from carelake.interop._output import export_folder
from carelake.lake._lake import utc_now
from carelake.progress import NoProgress, Progress

if TYPE_CHECKING:
    from carelake.lake import Lake

STAGED = "cl_meds_staged"
BATCH_ROWS = 65_536
ROW_GROUP_ROWS = 100_000  # fixed, so a shard's bytes depend on its rows, not on how the engine batched them
SPLIT_PRIME = 2_147_483_647  # 2^31 - 1; (id mod p) * m stays inside a BIGINT
SPLIT_MULTIPLIER = 1_327_217_885  # about p / golden ratio (Fibonacci hashing)
DESCRIPTIONS = {"MEDS_BIRTH": "Birth", "MEDS_DEATH": "Death"}
_NO_TIME = np.iinfo(np.int64).min  # a static row's time, for the order check: before every real time


@dataclass
class MedsSummary:
    """A written MEDS export: where, how big, and the events left out by reason (no_subject, no_time, no_code)."""

    out: str
    subjects: int
    events: int
    shards: int
    codes: int
    by_domain: dict[str, int]
    skipped: dict[str, int]
    seconds: float
    events_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def meds_sql() -> str:
    """Every MEDS row of the lake with its domain and, for an event that cannot be one, why (DuckDB dialect)."""
    loinc = VOCABULARY_OF_SYSTEM[SYSTEMS["loinc"]]
    code = (
        "CASE WHEN e.domain = 'encounter' THEN 'ENCOUNTER/' || e.code "
        f"WHEN e.domain = 'screening' THEN '{loinc}/' || e.system "
        f"ELSE {vocabulary_sql('e.system')} || '/' || e.code END"
    )
    none = "CAST(NULL AS FLOAT) AS numeric_value, CAST(NULL AS VARCHAR) AS text_value"

    def static(prefix: str, column: str) -> str:
        return (
            f"SELECT person_id, CAST(NULL AS TIMESTAMPTZ), '{prefix}/' || {column}, {none}, 'demographics', "
            f"CAST(NULL AS VARCHAR) FROM people WHERE {column} IS NOT NULL"
        )

    return f"""
        WITH events AS (
            SELECT p.person_id AS subject_id, e.start_time AS time, {code} AS code,
                   CAST(e.value AS FLOAT) AS numeric_value, CASE WHEN e.domain = 'screening' THEN e.code END
                   AS text_value, e.domain
            FROM cl_events e LEFT JOIN {PERSON_IDS} p ON p.patient_id = e.patient_id
            WHERE e.is_primary),
        people AS (
            SELECT ids.person_id, pt.gender, pt.race_code, pt.ethnicity_code,
                   cl_fhir_time(pt.birth_date) AS birth, cl_fhir_time(pt.deceased_date) AS death
            FROM patients pt JOIN {PERSON_IDS} ids ON ids.patient_id = pt.id),
        meds_rows AS (
            SELECT subject_id, time, code, numeric_value, text_value, domain,
                   CASE WHEN subject_id IS NULL THEN 'no_subject' WHEN time IS NULL THEN 'no_time'
                        WHEN code IS NULL THEN 'no_code' END AS skipped
            FROM events
            UNION ALL
            SELECT person_id, birth, 'MEDS_BIRTH', {none}, 'birth', CAST(NULL AS VARCHAR)
            FROM people WHERE birth IS NOT NULL
            UNION ALL
            SELECT person_id, death, 'MEDS_DEATH', {none}, 'death', CAST(NULL AS VARCHAR)
            FROM people WHERE death IS NOT NULL
            UNION ALL {static("GENDER", "gender")}
            UNION ALL {static("RACE", "race_code")}
            UNION ALL {static("ETHNICITY", "ethnicity_code")})
        SELECT * FROM meds_rows
        ORDER BY subject_id NULLS FIRST, time NULLS FIRST, code NULLS FIRST, numeric_value NULLS FIRST,
                 text_value NULLS FIRST"""


def split_sql(source: str, *, train: int, tuning: int) -> str:
    """Each subject of ``source`` with its split: the first ``train`` in the rank order, then up to ``tuning``."""
    rank = f"(subject_id % {SPLIT_PRIME}) * {SPLIT_MULTIPLIER} % {SPLIT_PRIME}"
    return f"""
        SELECT subject_id,
               CASE WHEN k <= {int(train)} THEN 'train' WHEN k <= {int(tuning)} THEN 'tuning' ELSE 'held_out' END
               AS split
        FROM (SELECT subject_id, row_number() OVER (ORDER BY {rank}, subject_id) AS k
              FROM (SELECT DISTINCT subject_id FROM {source} WHERE skipped IS NULL) s) r
        ORDER BY subject_id"""


def export_meds(
    lake: Lake,
    out: Path,
    *,
    engine: str = "duckdb",
    shard_subjects: int = 10_000,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    progress: Progress | None = None,
) -> MedsSummary:
    """Write the lake's patients and events as a MEDS dataset in ``out`` (new, empty, or a previous MEDS export).

    Examples:
        >>> export_meds(lake, Path("meds"), shard_subjects=1000).to_dict()["shards"]  # doctest: +SKIP
        3
    """
    import meds

    started = time.perf_counter()
    progress = progress or NoProgress()
    if isinstance(shard_subjects, bool) or not isinstance(shard_subjects, int) or shard_subjects < 1:
        raise ConfigError(f"shard_subjects {shard_subjects!r} is not a positive number", hint="e.g. 10000")
    fractions = _fractions(split)
    catalog = lake.catalog
    missing = [v for v in ("patients", *EVENT_VIEWS) if v not in catalog.tables]
    if missing:
        raise LakeError(
            f"the lake lacks the standard views {', '.join(missing)}", hint="carelake view materialize --standard"
        )
    out = Path(out).absolute()
    try:
        with export_folder(out, kind="MEDS", marker=meds.dataset_metadata_filepath) as work:
            (work / "data").mkdir()
            (work / "metadata").mkdir()
            staging = work / "_staging"
            with closing(lake.connect(engine)) as eng:
                register_events(eng)
                register_person_ids(eng)
                progress.start("MEDS: sorting events", None)
                # Numbered once: the events and the patients both join to the ids.
                eng.register_parquet(PERSON_IDS, eng.write_parquet(f"SELECT * FROM {PERSON_IDS}", staging / "ids"))
                staged = eng.write_parquet(meds_sql(), staging / "events")
                eng.register_parquet(STAGED, staged)
                tallies = eng.query(f"SELECT domain, skipped, count(*) AS n FROM {STAGED} GROUP BY domain, skipped")
                by_domain: dict[str, int] = {}
                skipped: dict[str, int] = {}
                for row in tallies.to_pylist():
                    tally = by_domain if row["skipped"] is None else skipped
                    key = row["domain"] if row["skipped"] is None else row["skipped"]
                    tally[key] = tally.get(key, 0) + row["n"]
                events = sum(by_domain.values())
                progress.start("MEDS: writing shards", total=sum(pq.read_metadata(f).num_rows for f in staged))
                shards, subjects, written = _write_shards(
                    staged, work / "data", shard_subjects=shard_subjects, progress=progress, engine=eng.name
                )
                if written != events:
                    raise EngineError(
                        f"the MEDS shards hold {written} rows where the {eng.name} engine counted {events}",
                        hint="re-run; if it persists, report it with the lake's engine and version",
                    )
                train = _round(subjects * fractions[0])
                tuning = max(train, _round(subjects * (fractions[0] + fractions[1])))
                split_files = eng.write_parquet(split_sql(STAGED, train=train, tuning=tuning), staging / "splits")
                codes = eng.query(f"SELECT code FROM {STAGED} WHERE skipped IS NULL GROUP BY code ORDER BY code")
            splits_path = work / meds.subject_splits_filepath
            with _ParquetSink(splits_path, meds.SubjectSplitSchema.schema()) as sink:
                for batch in _batches(split_files, ["subject_id", "split"]):
                    sink.write(pa.Table.from_batches([batch]))
            names = codes.column("code").to_pylist()
            code_table = pa.table(
                {
                    "code": pa.array(names, pa.string()),
                    "description": pa.array([DESCRIPTIONS.get(c) for c in names], pa.string()),
                    "parent_codes": pa.nulls(len(names), pa.list_(pa.string())),
                },
                schema=meds.CodeMetadataSchema.schema(),
            )
            pq.write_table(code_table, work / meds.code_metadata_filepath, compression="zstd")
            dataset = {
                "dataset_name": lake.root.name,
                "dataset_version": str(catalog.version),
                "etl_name": "carelake",
                "etl_version": __version__,
                "meds_version": meds.__version__,
                "created_at": utc_now().isoformat(),
            }
            (work / meds.dataset_metadata_filepath).write_text(json.dumps(dataset, indent=2) + "\n", encoding="utf-8")
            shutil.rmtree(staging)
            validate_meds(work)
    finally:
        progress.stop()
    seconds = time.perf_counter() - started
    return MedsSummary(
        out=str(out),
        subjects=subjects,
        events=events,
        shards=len(shards),
        codes=len(names),
        by_domain=dict(sorted(by_domain.items())),
        skipped=dict(sorted(skipped.items())),
        seconds=round(seconds, 3),
        events_per_s=round(events / seconds, 1) if seconds > 0 else 0.0,
    )


def validate_meds(root: Path) -> None:
    """Check every shard and metadata file of a MEDS dataset against the ``meds`` schemas, row group by row group.

    Raises EngineError naming the file when one does not conform: the export wrote something MEDS readers
    would reject.
    """
    import meds
    from flexible_schema.exceptions import SchemaValidationError, TableValidationError

    def check(path: Path, schema: Any) -> None:
        try:
            if path.suffix == ".json":
                schema.validate(json.loads(path.read_text(encoding="utf-8")))
                return
            parquet = pq.ParquetFile(path)
            schema.validate(parquet.schema_arrow)
            for group in range(parquet.num_row_groups):
                schema.validate(parquet.read_row_group(group))
        except (SchemaValidationError, TableValidationError, OSError, ValueError) as exc:
            raise EngineError(
                f"{path.relative_to(root)} is not valid MEDS: {first_line(exc)}",
                hint="this is a carelake bug: report it with the lake's engine and version",
            ) from exc

    for shard in sorted((root / meds.data_subdirectory).glob("*.parquet")):
        check(shard, meds.DataSchema)
    check(root / meds.code_metadata_filepath, meds.CodeMetadataSchema)
    check(root / meds.subject_splits_filepath, meds.SubjectSplitSchema)
    check(root / meds.dataset_metadata_filepath, meds.DatasetMetadataSchema)


class _ParquetSink:
    """A Parquet file written in row groups of exactly ROW_GROUP_ROWS rows (the last one shorter)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self._writer = pq.ParquetWriter(path, schema, compression="zstd")
        self._pending: list[pa.Table] = []
        self._buffered = 0

    def __enter__(self) -> _ParquetSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, table: pa.Table) -> None:
        self._pending.append(table.select(self.schema.names).cast(self.schema))
        self._buffered += table.num_rows
        while self._buffered >= ROW_GROUP_ROWS:
            self._flush(ROW_GROUP_ROWS)

    def close(self) -> None:
        if self._buffered:
            self._flush(self._buffered)
        self._writer.close()

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self._pending).combine_chunks()
        self._writer.write_table(table.slice(0, rows), row_group_size=rows)
        rest = table.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._buffered = rest.num_rows


def _write_shards(
    files: Sequence[Path], folder: Path, *, shard_subjects: int, progress: Progress, engine: str
) -> tuple[list[Path], int, int]:
    """Cut the sorted staged rows into shards of ``shard_subjects`` subjects; (shards, subjects, rows)."""
    import meds

    schema = meds.DataSchema.schema()
    shards: list[Path] = []
    sink: _ParquetSink | None = None
    subjects = rows = 0
    last: tuple[int, int] | None = None  # (subject_id, time) of the previous kept row
    try:
        for batch in _batches(files, [*schema.names, "skipped"]):
            progress.advance(batch.num_rows)
            kept = pa.Table.from_batches([batch]).filter(pc.is_null(batch.column("skipped")))
            if not kept.num_rows:
                continue
            ids = kept.column("subject_id").to_numpy()
            times = pc.fill_null(kept.column("time").cast(pa.int64()), _NO_TIME).to_numpy()
            _check_order(ids, times, last, engine)
            new = np.empty(len(ids), dtype=bool)
            new[0] = last is None or ids[0] != last[0]
            new[1:] = ids[1:] != ids[:-1]
            ordinal = subjects - 1 + np.cumsum(new)  # each row's subject, counted from 0 over the whole export
            shard_of = ordinal // shard_subjects
            for shard in np.unique(shard_of):
                start, stop = np.searchsorted(shard_of, [shard, shard + 1])
                if sink is None or int(shard) != len(shards) - 1:
                    if sink is not None:
                        sink.close()
                    shards.append(folder / f"{len(shards):05d}.parquet")
                    sink = _ParquetSink(shards[-1], schema)
                sink.write(kept.slice(int(start), int(stop - start)))
            subjects = int(ordinal[-1]) + 1
            rows += kept.num_rows
            last = (int(ids[-1]), int(times[-1]))
    finally:
        if sink is not None:
            sink.close()
    return shards, subjects, rows


def _check_order(ids: np.ndarray, times: np.ndarray, last: tuple[int, int] | None, engine: str) -> None:
    """Raise unless the rows, after the previous batch's last one, are sorted by subject, then time."""
    if last is not None:
        ids = np.concatenate([[last[0]], ids])
        times = np.concatenate([[last[1]], times])
    same = ids[1:] == ids[:-1]
    if bool(np.any(ids[1:] < ids[:-1]) or np.any(same & (times[1:] < times[:-1]))):
        raise EngineError(
            f"the {engine} engine returned the MEDS rows out of order, so subjects would not be contiguous",
            hint="re-run with --engine duckdb, and report it with the engine's version",
        )


def _batches(files: Sequence[Path], columns: list[str]) -> Iterator[pa.RecordBatch]:
    for file in files:
        yield from pq.ParquetFile(file).iter_batches(batch_size=BATCH_ROWS, columns=columns)


def _fractions(split: tuple[float, float, float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(f) for f in split)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or any(not 0.0 <= f <= 1.0 for f in values) or abs(sum(values) - 1.0) > 1e-6:
        raise ConfigError(
            f"split {split!r} is not three fractions (train, tuning, held_out) that add up to 1",
            hint="e.g. (0.8, 0.1, 0.1)",
        )
    return values  # type: ignore[return-value]


def _round(value: float) -> int:
    """Half up, and robust to 0.1 + 0.7 = 0.7999999999999999."""
    return int(np.floor(round(value, 9) + 0.5))
