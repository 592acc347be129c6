"""Materialise ViewDefinitions as silver tables: compiled once, written by the engine, committed atomically."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from carelake.errors import ConfigError, InputError
from carelake.fhir._by_run import current_by_run, fingerprint, last_groups, refresh_by_run
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


def materialize_views(
    views: Iterable[Mapping[str, Any]], *, lake: Lake, engine: str = "duckdb", full: bool = False
) -> dict[str, int]:
    """Write each view's rows as the silver table named by the view's ``name``; return rows per table.

    Every view is compiled before anything runs, so one bad view stops the job before it writes; all tables
    are replaced in one commit, so re-running refreshes them without duplicating rows.

    The refresh is incremental: a view's rows come from one resource each, so the rows of resources stored
    by ingestion runs that changed nothing since the last refresh are kept, and only the runs that are new,
    or lost resources to newer versions, are computed again (``full=True`` computes everything).
    """
    compiled: dict[str, str] = {}
    by_name: dict[str, Mapping[str, Any]] = {}
    for index, view in enumerate(views):
        name = view.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ViewDefinitionError(
                f"view {index}: name must be a SQL identifier ([A-Za-z][A-Za-z0-9_]*) to name its silver table"
            )
        if name in compiled:
            raise ViewDefinitionError(f"view {index}: a second view is named {name!r}")
        compiled[name] = compile_view(view)
        by_name[name] = view
    existing = {n.lower(): entry for n, entry in [*lake.catalog.views.items(), *lake.catalog.tables.items()]}
    for name in compiled:
        clash = existing.get(name.lower())
        if clash is not None and clash.layer != "silver":
            raise ConfigError(
                f"a {clash.layer} table or view is already called {name!r}",
                hint="rename the ViewDefinition (its 'name')",
            )
    counts: dict[str, int] = {}
    fingerprints = {name: fingerprint(sql) for name, sql in compiled.items()}
    previous = {} if full else last_groups(lake, STAGE, set(compiled))
    parameters = {"views": sorted(compiled), "engine": engine, "fingerprints": fingerprints, "full": full}
    groups: dict[str, dict[str, Any]] = {}
    computed: dict[str, int] = {}
    with lake.transaction(STAGE, parameters=parameters) as tx:
        with closing(lake.connect(engine)) as eng:
            runs = current_by_run(eng, {view["resource"] for view in by_name.values()})
            for name, view in by_name.items():

                def sql(resources: str, name: str = name, view: Mapping[str, Any] = view) -> str:
                    return compiled[name] if resources == "resources" else compile_view(view, resources=resources)

                refreshed = refresh_by_run(
                    tx,
                    eng,
                    table=name,
                    layer="silver",
                    sql=sql,
                    fingerprint=fingerprints[name],
                    previous=previous.get(name),
                    current=runs.get(view["resource"], {}),
                )
                counts[name], computed[name], groups[name] = refreshed.rows, refreshed.computed, refreshed.groups
        tx.summary = {"rows": counts, "resources_computed": computed, "groups": groups}
    return counts


def fresh_views(lake: Lake, views: Iterable[Mapping[str, Any]]) -> set[str]:
    """Names of the given views whose silver tables were materialised from these very definitions after the
    lake's last ingestion: a job can read those tables instead of computing the views again."""
    import json

    from carelake.sources.fhir._ingest import STAGE as INGEST

    wanted = {v["name"]: fingerprint(compile_view(v)) for v in views if isinstance(v.get("name"), str)}
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
