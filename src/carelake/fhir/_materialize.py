"""Materialise ViewDefinitions as silver tables: compiled once, written by the engine, committed atomically."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow.parquet as pq

from carelake.errors import ConfigError, InputError
from carelake.fhir._compile import compile_view
from carelake.fhir._errors import ViewDefinitionError

if TYPE_CHECKING:
    from carelake.lake import Lake

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
STAGE = "materialize-views"
STANDARD = Path(__file__).with_name("standard")  # the view library shipped with carelake (docs/views.md)


def load_views(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """ViewDefinitions from JSON files and folders of them (sorted), each checked to be an object."""
    views = []
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise InputError(f"no such file or directory: {path}", hint="pass ViewDefinition files or folders")
        for file in sorted(path.glob("*.json")) if path.is_dir() else [path]:
            try:
                view = orjson.loads(file.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise InputError(
                    f"{file}: invalid JSON at line {exc.lineno} column {exc.colno}", hint="fix the ViewDefinition file"
                ) from exc
            if not isinstance(view, dict):
                raise InputError(f"{file} is not a JSON object", hint="a ViewDefinition is one JSON object")
            views.append(view)
    return views


def standard_views() -> list[dict[str, Any]]:
    """carelake's standard view library: patients, encounters, conditions, observations and more."""
    return load_views([STANDARD])


def materialize_views(views: Iterable[Mapping[str, Any]], *, lake: Lake, engine: str = "duckdb") -> dict[str, int]:
    """Write each view's rows as the silver table named by the view's ``name``; return rows per table.

    Every view is compiled before anything runs, so one bad view stops the job before it writes; all tables
    are replaced in one commit, so re-running refreshes them without duplicating rows.
    """
    compiled: dict[str, str] = {}
    for index, view in enumerate(views):
        name = view.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ViewDefinitionError(
                f"view {index}: name must be a SQL identifier ([A-Za-z][A-Za-z0-9_]*) to name its silver table"
            )
        if name in compiled:
            raise ViewDefinitionError(f"view {index}: a second view is named {name!r}")
        compiled[name] = compile_view(view)
    existing = {n.lower(): entry for n, entry in [*lake.catalog.views.items(), *lake.catalog.tables.items()]}
    for name in compiled:
        clash = existing.get(name.lower())
        if clash is not None and clash.layer != "silver":
            raise ConfigError(
                f"a {clash.layer} table or view is already called {name!r}",
                hint="rename the ViewDefinition (its 'name')",
            )
    counts: dict[str, int] = {}
    fingerprints = {name: _fingerprint(sql) for name, sql in compiled.items()}
    parameters = {"views": sorted(compiled), "engine": engine, "fingerprints": fingerprints}
    with lake.transaction(STAGE, parameters=parameters) as tx:
        with closing(lake.connect(engine)) as eng:
            for name, sql in compiled.items():
                files = eng.write_parquet(sql, tx.staging / "views" / name)
                counts[name] = sum(pq.read_metadata(f).num_rows for f in files)
                tx.replace(name, layer="silver", files=files, rows=counts[name])
        tx.summary = {"rows": counts}
    return counts


def _fingerprint(sql: str) -> str:
    import hashlib

    return hashlib.sha256(sql.encode()).hexdigest()[:16]


def fresh_views(lake: Lake, views: Iterable[Mapping[str, Any]]) -> set[str]:
    """Names of the given views whose silver tables were materialised from these very definitions after the
    lake's last ingestion: a job can read those tables instead of computing the views again."""
    import json

    from carelake.sources.fhir._ingest import STAGE as INGEST

    wanted = {v["name"]: _fingerprint(compile_view(v)) for v in views if isinstance(v.get("name"), str)}
    fresh: set[str] = set()
    for run in lake.catalog.runs:  # oldest first: an ingestion makes everything before it stale
        if run["job"] == INGEST:
            fresh.clear()
        elif run["job"] == STAGE and run.get("manifest"):
            manifest = json.loads((lake.root / run["manifest"]).read_text())
            made = manifest.get("parameters", {}).get("fingerprints", {})
            fresh.update(n for n, f in made.items() if wanted.get(n) == f)
            fresh.difference_update(n for n in made if wanted.get(n) != made[n])
    return {n for n in fresh if n in lake.catalog.tables}
