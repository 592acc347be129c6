"""Tables whose rows each come from one FHIR resource, refreshed by ingestion run.

A view's row, or a quality fact, is a function of one resource. So after a new day's ingestion, the rows of
resources stored by runs that changed nothing since the last refresh still hold, and only the runs that are
new, or lost resources to newer versions, need computing. Each refresh records in its run manifest which
ingestion runs (and how many of their current resources) each group of files covers, and the fingerprint of
the SQL that computed it; files are named ``<run id>-<n>.parquet``, so a group's files are found by name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from carelake.fhir._expressions import sql_string

if TYPE_CHECKING:
    from carelake.engine import Engine
    from carelake.lake import Lake
    from carelake.lake._lake import Transaction


@dataclass
class Refreshed:
    """One table after a refresh: its rows, the resources read to get there, and where its rows are now."""

    rows: int
    computed: int
    groups: dict[str, Any]
    paths: list[Path] = field(default_factory=list)  # kept files in the lake, then the newly staged ones


def fingerprint(sql: str) -> str:
    """What a group of rows was computed with: a change of definition recomputes everything."""
    return hashlib.sha256(sql.encode()).hexdigest()[:16]


def current_by_run(eng: Engine, types: Iterable[str] | None = None) -> dict[str, dict[str, int]]:
    """Per resource type, how many current resources each ingestion run stored (it only falls, as versions
    arrive): one query for every type, since each query costs Spark about a second whatever its size.

    ``types`` limits the count to those resource types: a view of a small type then skips counting the whole
    lake (the resources are stored by type, so the scan skips the others)."""
    where = ""
    if types is not None:
        where = f" WHERE resource_type IN ({', '.join(sql_string(t) for t in sorted(set(types))) or 'NULL'})"
    found: dict[str, dict[str, int]] = {}
    sql = f"SELECT resource_type, run_id, count(*) AS n FROM resources{where} GROUP BY 1, 2"
    for row in eng.query(sql).to_pylist():
        found.setdefault(row["resource_type"], {})[row["run_id"]] = row["n"]
    return found


def last_groups(lake: Lake, stage: str, names: set[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """Per table, the fingerprint and row groups recorded by the newest run of ``stage`` that wrote it."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for manifest in lake.manifests(stage):
        if not names - set(found):
            break
        fingerprints = manifest.get("parameters", {}).get("fingerprints", {})
        for name, groups in manifest.get("summary", {}).get("groups", {}).items():
            if name in names and name not in found:
                found[name] = (fingerprints.get(name, ""), groups)
    return found


def refresh_by_run(
    tx: Transaction,
    eng: Engine,
    *,
    table: str,
    layer: str,
    sql: Callable[[str], str],
    fingerprint: str,
    previous: tuple[str, dict[str, Any]] | None,
    current: dict[str, int],
) -> Refreshed:
    """Stage what changed of ``table`` and replace it in ``tx``, keeping the files of unchanged runs.

    ``sql(relation)`` computes the table's rows from the resources in ``relation``: the ``resources`` table,
    or a subquery holding the changed runs' resources. ``previous`` comes from :func:`last_groups` (None:
    compute everything), ``current`` from :func:`current_by_run`.
    """
    lake = tx.lake
    entry = lake.catalog.tables.get(table)
    kept = _unchanged(previous, fingerprint, entry, current)
    covered = {run for group in kept.values() for run in group["runs"]}
    todo = {run: n for run, n in current.items() if run not in covered}
    groups = dict(kept)
    files: list[Path] = []
    rows = 0
    if todo or not kept:
        relation = "resources"
        if kept:  # only the changed runs' resources
            listed = ", ".join(sql_string(run) for run in sorted(todo))
            relation = f"(SELECT * FROM resources WHERE run_id IN ({listed})) AS resources"
        files = eng.write_parquet(sql(relation), tx.staging / layer / table)
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        groups[tx.run_id] = {"runs": todo, "rows": rows}
    kept_files = [f for f in (entry.files if entry else []) if written_by(f) in kept]
    kept_rows = sum(group["rows"] for group in kept.values())
    tx.replace(table, layer=layer, files=files, rows=rows, keep=kept_files, kept_rows=kept_rows)
    return Refreshed(
        rows=rows + kept_rows,
        computed=sum(todo.values()),
        groups=groups,
        paths=[lake.root / f for f in kept_files] + files,
    )


def written_by(file: str) -> str:
    """The run that wrote a table's file (the lake names files <run id>-<n>.parquet)."""
    return Path(file).stem.rsplit("-", 1)[0]


def _unchanged(
    previous: tuple[str, dict[str, Any]] | None, fingerprint: str, entry: Any, current: dict[str, int]
) -> dict[str, Any]:
    """The row groups of the last refresh that still hold: same definition, and none of their runs changed."""
    if previous is None or entry is None or previous[0] != fingerprint:
        return {}
    groups = previous[1]
    written = {written_by(f) for f in entry.files}
    if written - set(groups) or any(g["rows"] and name not in written for name, g in groups.items()):
        return {}  # the table was written by something else since
    return {
        name: group for name, group in groups.items() if all(current.get(run) == n for run, n in group["runs"].items())
    }
