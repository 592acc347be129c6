"""Open a lake, read its committed state, and change it only through transactions."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carelake.errors import ConfigError, InputError, LakeError
from carelake.lake._catalog import Catalog, TableEntry, ViewEntry
from carelake.lake._lock import LOCK_FILE, WriteLock
from carelake.lake._quarantine import QUARANTINE_SCHEMA, QUARANTINE_TABLE

if TYPE_CHECKING:
    import pyarrow as pa

    from carelake.engine import Engine

MARKER = "carelake.json"
LAYERS = ("raw", "bronze", "silver", "gold", "quarantine", "runs", "audit")
STAGING = "_staging"
# Inputs kept gzip-compressed under raw/ (text compresses well; Parquet, DuckDB files and .gz are kept as they are).
RAW_TEXT_SUFFIXES = (".ndjson", ".jsonl", ".json", ".csv", ".tsv", ".txt")
EMPTY_FILE = "empty.parquet"
# Trained models (carelake.models) keep their artefacts here, outside the catalog: garbage collection skips it.
MODELS_DIR = "gold/models"
DEFAULT_LAKE = "carelake-lake"


def utc_now() -> datetime:
    """The lake's clock; tests may replace it."""
    return datetime.now(UTC)


def open_lake(path: str | os.PathLike[str] | None = None, *, create: bool = True) -> Lake:
    """Open the lake at ``path`` (default ``$CARELAKE_LAKE`` or ``./carelake-lake``), creating it if asked.

    Examples:
        >>> import tempfile, carelake as cl
        >>> lake = cl.open_lake(tempfile.mkdtemp() + "/lake")
        >>> lake.status()["tables"][0]["name"]
        'quarantine'
    """
    root = Path(path if path is not None else os.environ.get("CARELAKE_LAKE", DEFAULT_LAKE))
    return Lake(root, create=create)


class Lake:
    """A lake folder: committed tables and views, read by any engine, changed by transactions."""

    def __init__(self, root: Path, *, create: bool = True) -> None:
        self.root = root.resolve()
        marker = self.root / MARKER
        if not marker.exists():
            if self.root.exists() and any(p.name != LOCK_FILE for p in self.root.iterdir()):
                raise LakeError(
                    f"{self.root} exists and is not a carelake lake",
                    hint="choose an empty or new folder with --lake PATH",
                )
            if not create:
                raise LakeError(
                    f"no lake at {self.root}",
                    hint="ingest something first (carelake ingest fhir PATH) or pass --lake PATH",
                )
            self._create()

    def _create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for layer in LAYERS:
            (self.root / layer).mkdir(exist_ok=True)
        (self.root / MARKER).write_text(json.dumps({"format": 1, "created": utc_now().isoformat()}) + "\n")
        with self.transaction("create-lake", parameters={}) as tx:
            tx.ensure_table(QUARANTINE_TABLE, layer="quarantine", schema=QUARANTINE_SCHEMA)

    @property
    def catalog(self) -> Catalog:
        """The committed state, read afresh: another process may have committed since."""
        return Catalog.load(self.root)

    def manifests(self, job: str) -> Iterator[dict[str, Any]]:
        """The committed run manifests of ``job``, newest first: what earlier runs did, for a job that builds on
        them (an incremental refresh)."""
        for run in reversed(self.catalog.runs):
            if run["job"] == job and run.get("manifest"):
                yield json.loads((self.root / run["manifest"]).read_text(encoding="utf-8"))

    def files(self, table: str) -> list[Path]:
        entry = self.catalog.tables.get(table)
        if entry is None:
            raise LakeError(f"no table {table!r} in the lake", hint="run `carelake status` to list tables")
        return [self.root / f for f in entry.files]

    def connect(self, engine: str | Engine = "duckdb", **engine_options: Any) -> Engine:
        """An engine with every committed table and view registered under its name."""
        from carelake.engine import make_engine

        eng = make_engine(engine, **engine_options) if isinstance(engine, str) else engine
        catalog = self.catalog
        for name, entry in catalog.tables.items():
            eng.register_parquet(name, [self.root / f for f in entry.files])
        for name, view in catalog.views.items():
            eng.create_view(name, view.sql)
        return eng

    def sql(self, query: str, *, engine: str | Engine = "duckdb", **engine_options: Any) -> pa.Table:
        """Run a read-only query over the committed lake."""
        eng = self.connect(engine, **engine_options)
        try:
            return eng.query(query)
        finally:
            if isinstance(engine, str):
                eng.close()

    @contextmanager
    def transaction(
        self, job: str, *, parameters: dict[str, Any], wait_seconds: float = 600.0
    ) -> Iterator[Transaction]:
        """Stage a job's output and commit it atomically on success; discard it on any error."""
        run_id = f"{utc_now():%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"
        lock = WriteLock(self.root, run_id=run_id, wait_seconds=wait_seconds)
        lock.acquire()
        try:
            self._collect_garbage()
            tx = Transaction(self, run_id=run_id, job=job, parameters=parameters)
            try:
                yield tx
            except BaseException:
                tx.abort()
                raise
            tx.commit()
        finally:
            lock.release()

    def _collect_garbage(self) -> None:
        """Remove what crashed jobs left: staging folders and files no committed catalog lists."""
        shutil.rmtree(self.root / STAGING, ignore_errors=True)
        referenced = self.catalog.referenced_files()
        for layer in ("bronze", "silver", "gold", "quarantine"):
            for file in (self.root / layer).rglob("*.parquet"):
                relative = file.relative_to(self.root).as_posix()
                if relative not in referenced and not relative.startswith(MODELS_DIR + "/"):
                    file.unlink()

    def status(self) -> dict[str, Any]:
        """Tables with row counts, views, runs and quarantine counts by rule, as plain data."""
        catalog = self.catalog
        tables = [
            {
                "name": name,
                "layer": entry.layer,
                "rows": entry.rows,
                "files": len(entry.files),
                "bytes": sum((self.root / f).stat().st_size for f in entry.files),
            }
            for name, entry in sorted(catalog.tables.items(), key=lambda kv: (kv[1].layer != "quarantine", kv[0]))
        ]
        quarantine: dict[str, Any] = {"total": catalog.tables[QUARANTINE_TABLE].rows, "by_rule": {}}
        if quarantine["total"]:
            counts = self.sql(f"SELECT stage, rule, count(*) AS n FROM {QUARANTINE_TABLE} GROUP BY 1, 2 ORDER BY 1, 2")
            quarantine["by_rule"] = {f"{s}/{r}": n for s, r, n in zip(*counts.to_pydict().values(), strict=True)}
        return {
            "lake": str(self.root),
            "catalog_version": catalog.version,
            "tables": tables,
            "views": list(catalog.views),
            "runs": catalog.runs,
            "quarantine": quarantine,
        }


class Transaction:
    """One job's pending changes; nothing is visible until ``commit``."""

    def __init__(self, lake: Lake, *, run_id: str, job: str, parameters: dict[str, Any]) -> None:
        self.lake = lake
        self.run_id = run_id
        self.job = job
        self.parameters = parameters
        self.started = utc_now()
        self.staging = lake.root / STAGING / run_id
        self.staging.mkdir(parents=True)
        self.summary: dict[str, Any] = {}
        self._appends: list[tuple[str, str, list[Path], int]] = []
        self._replaced: dict[str, tuple[str, list[str], int]] = {}
        self._new_tables: dict[str, tuple[str, pa.Schema]] = {}
        self._views: dict[str, ViewEntry] = {}
        self._raw: list[tuple[Path, Path]] = []
        self._compressing: list[Future[None]] = []  # raw copies being written while the job reads its input
        self._compressor: ThreadPoolExecutor | None = None

    def stage_dir(self, name: str) -> Path:
        """A fresh folder inside this run's staging area."""
        path = self.staging / name
        path.mkdir(parents=True, exist_ok=False)
        return path

    def ensure_table(self, table: str, *, layer: str, schema: pa.Schema) -> None:
        """Declare a table so it exists (empty) even before any rows arrive."""
        if layer not in LAYERS:
            raise ConfigError(f"unknown layer {layer!r}", hint=f"one of {', '.join(LAYERS)}")
        self._new_tables[table] = (layer, schema)

    def append(self, table: str, *, layer: str, files: list[Path], rows: int) -> None:
        """Add staged Parquet files to a table at commit."""
        self._appends.append((table, layer, files, rows))

    def add_raw(self, source: Path, sha256: str) -> None:
        """Keep an input file as received, content-addressed under raw/ by its SHA-256, at commit.

        A text file is kept gzip-compressed (``<sha256>.ndjson.gz``; ``zcat`` gives back the bytes received):
        FHIR and CSV exports shrink about tenfold, and the raw copy was four fifths of a lake's disk."""
        suffix = "".join(source.suffixes[-2:]) if source.name.endswith(".gz") else source.suffix
        compress = suffix.lower() in RAW_TEXT_SUFFIXES
        plain = self.lake.root / "raw" / sha256[:2] / f"{sha256}{suffix}"
        target = plain.with_name(f"{plain.name}.gz") if compress else plain
        # A lake written before raw copies were compressed keeps the plain one: the same input is there.
        if target.exists() or plain.exists() or any(t == target for _, t in self._raw):
            return
        staged = self.staging / "raw" / target.name
        staged.parent.mkdir(exist_ok=True)
        if compress:
            # In a thread: zlib lets go of the GIL, so the copy is made on another core while the job parses.
            self._compressor = self._compressor or ThreadPoolExecutor(1, thread_name_prefix="carelake-raw")
            self._compressing.append(self._compressor.submit(_copy, source, staged, sha256, compress=True))
        else:
            _copy(source, staged, sha256, compress=False)
        self._raw.append((staged, target))

    def _raw_written(self, *, cancel: bool = False) -> None:
        """Wait for the raw copies (raising the first failure), or drop those not started when cancelling."""
        if self._compressor is None:
            return
        self._compressor.shutdown(wait=True, cancel_futures=cancel)
        self._compressor = None
        if not cancel:
            for job in self._compressing:
                job.result()

    def replace(
        self, table: str, *, layer: str, files: list[Path], rows: int, keep: Sequence[str] = (), kept_rows: int = 0
    ) -> None:
        """Make staged Parquet files the whole content of a table at commit (a refresh).

        ``keep`` lists committed files of the table (as the catalog names them) that stay part of it, holding
        ``kept_rows`` rows: an incremental refresh rewrites only what changed.
        """
        self._replaced[table] = (layer, list(keep), kept_rows)
        self.append(table, layer=layer, files=files, rows=rows)

    def define_view(self, name: str, sql: str, *, layer: str) -> None:
        self._views[name] = ViewEntry(layer=layer, sql=sql)

    def commit(self) -> None:
        """Publish: move files into place, write the run manifest, then swap the catalog (the atomic step)."""
        import pyarrow.parquet as pq

        self._raw_written()
        root = self.lake.root
        catalog = Catalog.load(root)
        for table, (layer, schema) in self._new_tables.items():
            if table not in catalog.tables:
                target = root / layer / table / EMPTY_FILE
                target.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(schema.empty_table(), target)
                catalog.tables[table] = TableEntry(layer=layer, files=[_rel(root, target)], rows=0)
        for table, (layer, keep, kept_rows) in self._replaced.items():
            # The old files stay on disk until the next writer's garbage collection: readers may hold them.
            current = catalog.tables.get(table)
            if set(keep) - set(current.files if current else []):
                raise LakeError(f"table {table} no longer has the files this job meant to keep", hint="run it again")
            catalog.tables[table] = TableEntry(layer=layer, files=list(keep), rows=kept_rows)
        for table, layer, files, rows in self._appends:
            entry = catalog.tables.setdefault(table, TableEntry(layer=layer))
            folder = root / layer / table
            folder.mkdir(parents=True, exist_ok=True)
            start = len(entry.files)
            for i, file in enumerate(files):
                target = folder / f"{self.run_id}-{start + i:05d}.parquet"
                os.replace(file, target)
                entry.files.append(_rel(root, target))
            entry.rows += rows
        for staged, target in self._raw:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
        for name, view in self._views.items():
            catalog.views[name] = view  # an existing view keeps its place, so dependents stay after it
        finished = utc_now()
        manifest = {
            "run_id": self.run_id,
            "job": self.job,
            "parameters": self.parameters,
            "started": self.started.isoformat(),
            "finished": finished.isoformat(),
            "catalog_version": catalog.version + 1,
            "summary": self.summary,
        }
        manifest_path = root / "runs" / f"{self.run_id}.json"
        manifest_path.write_text(json.dumps(manifest, indent=1, default=str) + "\n", encoding="utf-8")
        catalog.version += 1
        catalog.runs.append(
            {
                "run_id": self.run_id,
                "job": self.job,
                "started": manifest["started"],
                "finished": manifest["finished"],
                "manifest": _rel(root, manifest_path),
            }
        )
        catalog.save(root)
        shutil.rmtree(self.staging, ignore_errors=True)

    def abort(self) -> None:
        self._raw_written(cancel=True)
        shutil.rmtree(self.staging, ignore_errors=True)


def _copy(source: Path, target: Path, sha256: str, *, compress: bool) -> None:
    """Copy a file the job has read, checking that it still holds the bytes read (``sha256``).

    Ingestion hashes a file as it parses it, and the copy is made after (in a thread, while the next file is
    parsed): a file rewritten in between would otherwise be kept under the name of content never copied."""
    digest = hashlib.sha256()
    # gzip level 1: 300 MB/s on a core, and most of level 9's gain
    with (
        source.open("rb") as read,
        gzip.open(target, "wb", compresslevel=1) if compress else target.open("wb") as write,
    ):
        while chunk := read.read(1 << 20):
            digest.update(chunk)
            write.write(chunk)
    if digest.hexdigest() != sha256:
        raise InputError(
            f"{source} changed while it was being ingested, so its raw copy would not be what was read",
            hint="ingest it again once nothing is writing to it; nothing was committed",
        )


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()
