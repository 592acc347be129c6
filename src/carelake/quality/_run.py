"""Run the check catalog over a lake: set-based SQL on DuckDB or Spark, results committed to the lake.

Element checks read each resource type's JSON once (every path's kind and text in one pass), judge every
check on it there, and keep the outcomes in a silver table of facts, ``quality_facts_<type>``; a run sums
them. A fact is a function of one resource, so the facts of ingestion runs that changed nothing since the
last quality run are kept and only new runs are read (see :mod:`carelake.fhir._by_run`). Query checks run
over the standard views, built for the run into its staging area; all instances of a type are one UNION ALL
query. Validators from well-kept libraries (python-stdnum for LOINC and SNOMED CT check digits, ucumvert
for UCUM) judge each distinct code once.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carelake.errors import ConfigError
from carelake.progress import NoProgress, Progress
from carelake.quality._catalog import SEVERITIES, Check, build_checks

if TYPE_CHECKING:
    import pyarrow as pa

    from carelake.engine import Engine
    from carelake.lake import Lake

STAGE = "quality-run"
RESULTS_TABLE = "quality_results"
FACTS_PREFIX = "quality_facts_"  # + the resource type, lower case: per-resource facts the element checks count
VIOLATIONS_TABLE = "quality_violations"
EXAMPLES = 5
VIOLATIONS_PER_CHECK = 100_000  # record locators kept per failing check (the count is always exact)
# Relations a run computes once, for the query checks whose records read them. References are resolved by a
# bronze view that joins every identifier and every resource: read once, not once per referring resource type.
# Only the current versions' references count. Every reference row belongs to a stored resource (ingestion
# writes both together), so "current" is "not superseded": an anti-join with the small superseded table,
# rather than a join with every current resource (which ran out of memory at 100,000 patients).
PREPARED = {
    "quality_reference_targets": """
SELECT t.resource_type, t.id, t.resolved
FROM fhir_reference_targets t
WHERE NOT EXISTS (SELECT 1 FROM fhir_superseded s
                  WHERE s.resource_type = t.resource_type AND s.id = t.id AND s.version = t.version)""",
}


def results_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("run_id", pa.string()),
            ("checked_at", pa.timestamp("us", tz="UTC")),
            ("engine", pa.string()),
            ("check_id", pa.string()),
            ("check_type", pa.string()),
            ("category", pa.string()),
            ("subcategory", pa.string()),
            ("severity", pa.string()),
            ("resource_type", pa.string()),
            ("field", pa.string()),
            ("numerator", pa.int64()),
            ("denominator", pa.int64()),
            ("pct_violated", pa.float64()),
            ("threshold_pct", pa.float64()),
            ("status", pa.string()),
            ("examples", pa.list_(pa.string())),
        ]
    )


def violations_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [("run_id", pa.string()), ("check_id", pa.string()), ("resource_type", pa.string()), ("id", pa.string())]
    )


@dataclass
class QualityRun:
    """What a quality run found: counts by status, category and severity; where the results went."""

    run_id: str
    engine: str
    checks: int
    passed: int
    failed: int
    not_applicable: int
    failed_by_severity: dict[str, int]
    by_category: dict[str, dict[str, int]]
    fatal_failures: list[str]
    seconds: float
    results: pa.Table = field(repr=False)

    @property
    def resolved(self) -> int:
        """Checks that had data to judge (DQD's 'resolved' checks)."""
        return self.passed + self.failed

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("results")
        out["resolved"] = self.resolved
        return out


def run_quality(
    lake: Lake,
    *,
    engine: str = "duckdb",
    as_of: str | None = None,
    full: bool = False,
    progress: Progress | None = None,
) -> QualityRun:
    """Run every check on the lake's current data and commit the results (history kept, one row per check).

    The element checks' facts are refreshed incrementally: only resources of ingestion runs that are new or
    changed since the last quality run are read (``full=True`` reads everything). Checks across resources
    (references, uniqueness, plausibility over the views) always look at all the data.
    """
    from carelake.fhir import compile_view, standard_views
    from carelake.fhir._by_run import current_by_run, last_groups
    from carelake.fhir._materialize import fresh_views

    started = time.perf_counter()
    progress = progress or NoProgress()
    as_of = str(as_of or datetime.now(UTC).date().isoformat())[:10]
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", as_of):
        raise ConfigError(
            f"as-of {as_of!r} is not a date", hint="give it as YYYY-MM-DD, e.g. the export's transactionTime"
        )
    if "fhir_resources" not in lake.catalog.tables:
        raise ConfigError("the lake has no FHIR data to check", hint="run `carelake ingest fhir PATH` first")
    with (
        lake.transaction(STAGE, parameters={"engine": engine, "as_of": as_of, "full": full}) as tx,
        closing(lake.connect(engine)) as eng,
    ):
        by_run = current_by_run(eng)
        counts = {resource_type: sum(runs.values()) for resource_type, runs in by_run.items()}
        checks = build_checks(counts, as_of=as_of, tables=lake.catalog.tables)
        views = standard_views()
        fresh = fresh_views(lake, views)  # silver tables already current: read them as they are
        query_types = {c.type.id for c in checks if c.type.evaluator == "query"}
        progress.start("quality checks", total=len(views) + len(counts) + len(query_types))
        for view in views:  # the standard views the query checks read, as of now
            if view["name"] not in fresh:
                files = eng.write_parquet(compile_view(view), tx.staging / "views" / view["name"])
                eng.register_parquet(view["name"], files)
            progress.advance(1)
        for name, sql in PREPARED.items():
            if any(name in c.type.records for c in checks if c.type.evaluator == "query"):
                eng.register_parquet(name, eng.write_parquet(sql, tx.staging / "prepared" / name))
        tallies: dict[str, tuple[int, int]] = {}
        violations: dict[str, list[tuple[str, str]]] = defaultdict(list)
        element = [c for c in checks if c.type.evaluator == "element"]
        previous = {} if full else last_groups(lake, STAGE, {_facts_table(t) for t in counts})
        facts = _Facts(tx, eng, previous, by_run)
        for resource_type in sorted(counts):
            own = [c for c in element if c.resource_type == resource_type]
            if own:
                _run_element_checks(eng, facts.refresh(resource_type, own), own, tallies, violations)
            progress.advance(1)
        by_type: dict[str, list[Check]] = defaultdict(list)
        for c in checks:
            if c.type.evaluator == "query":
                by_type[c.type.id].append(c)
        for type_checks in by_type.values():
            _run_query_checks(eng, type_checks, tallies, violations, tx.staging)
            progress.advance(1)
        checked_at = datetime.now(UTC)
        results = _results(tx.run_id, checked_at, engine, checks, tallies, violations)
        _write(tx, results, violations)
        tx.parameters["fingerprints"] = facts.fingerprints
        tx.summary = {
            "checks": len(checks),
            "failed": sum(1 for s in results.column("status").to_pylist() if s == "fail"),
            "resources_computed": facts.computed,
            "groups": facts.groups,
        }
    progress.stop()
    return _summary(tx.run_id, engine, results, time.perf_counter() - started)


class _Facts:
    """Each resource type's facts table, refreshed by ingestion run; what was read is recorded for the manifest."""

    def __init__(
        self,
        tx: Any,
        eng: Engine,
        previous: dict[str, tuple[str, dict[str, Any]]],
        current: dict[str, dict[str, int]],
    ) -> None:
        self.tx, self.eng, self.previous, self.current = tx, eng, previous, current
        self.fingerprints: dict[str, str] = {}
        self.computed: dict[str, int] = {}
        self.groups: dict[str, dict[str, Any]] = {}

    def refresh(self, resource_type: str, checks: list[Check]) -> str:
        """Bring the type's facts up to date with the lake and register them; returns the name to query.

        A fact row holds a resource's id and, for the i-th check, whether it applies to the resource (``a<i>``)
        and whether the resource violates it (``b<i>``). They are judged from the JSON kind at every path
        the checks read (``k``), the text at the paths whose value a check judges (``v``) and, where a check
        needs them, its member names, all read in one pass over the resource. Judging once per resource, when
        it is read, leaves each run only sums over booleans to do.
        """
        from carelake.fhir._by_run import fingerprint, refresh_by_run

        kind_paths, value_paths = _fact_paths(checks)
        columns = ["id", f"cl_json_kinds(resource, [{_paths(kind_paths)}]) AS k"]
        if value_paths:
            columns.append(f"cl_json_strings(resource, [{_paths(value_paths)}]) AS v")
        if any("{keys}" in c.type.violated for c in checks):
            columns.append("cl_json_keys(resource) AS keys")
        judged = ["id"]
        for i, (applies, violated) in enumerate(_conditions(checks, kind_paths, value_paths), start=1):
            judged += [f"coalesce({applies}, FALSE) AS a{i}", f"{violated} AS b{i}"]

        def sql(resources: str) -> str:
            read = f"SELECT {', '.join(columns)} FROM {resources} WHERE resource_type = '{resource_type}'"
            return f"SELECT {', '.join(judged)} FROM ({read}) AS _cl_read"

        table = _facts_table(resource_type)
        self.fingerprints[table] = fingerprint(sql("resources"))
        refreshed = refresh_by_run(
            self.tx,
            self.eng,
            table=table,
            layer="silver",
            sql=sql,
            fingerprint=self.fingerprints[table],
            previous=self.previous.get(table),
            current=self.current.get(resource_type, {}),
        )
        self.computed[resource_type] = refreshed.computed
        self.groups[table] = refreshed.groups
        self.eng.register_parquet(f"_cl_{table}", refreshed.paths)
        return f"_cl_{table}"


def _facts_table(resource_type: str) -> str:
    return FACTS_PREFIX + resource_type.lower()


def _fact_paths(checks: list[Check]) -> tuple[list[str], list[str]]:
    """The paths whose JSON kind the checks read, and those whose text they judge."""
    kind_paths = sorted({p for c in checks for p in c.paths})
    value_paths = sorted({c.paths[0] for c in checks if c.paths and "{value}" in c.type.violated + c.type.applies})
    return kind_paths, value_paths


def _conditions(checks: list[Check], kind_paths: list[str], value_paths: list[str]) -> list[tuple[str, str]]:
    """Each check's ``(applies, violated)`` as SQL over one resource's kinds ``k``, texts ``v`` and ``keys``."""
    kind_at = {p: i + 1 for i, p in enumerate(kind_paths)}  # carelake SQL lists are 1-based
    value_at = {p: i + 1 for i, p in enumerate(value_paths)}
    conditions = []
    for c in checks:
        kinds = [f"k[{kind_at[p]}]" for p in c.paths] or ["NULL"]
        kind = kinds[0] if len(kinds) == 1 else f"coalesce({', '.join(kinds)})"
        value = f"v[{value_at[c.paths[0]]}]" if c.paths and c.paths[0] in value_at else "NULL"
        fill = {**c.params, "kind": kind, "value": value, "keys": "keys"}
        applies, violated = c.type.applies.format(**fill), c.type.violated.format(**fill)
        conditions.append((applies, f"coalesce(({applies}) AND ({violated}), FALSE)"))
    return conditions


def _run_element_checks(
    eng: Engine,
    facts: str,
    checks: list[Check],
    tallies: dict[str, tuple[int, int]],
    violations: dict[str, list[tuple[str, str]]],
) -> None:
    """Count every check of one resource type over its facts: one pass, whatever the number of checks."""
    resource_type = checks[0].resource_type
    aggregates = []
    for i in range(1, len(checks) + 1):
        aggregates += [f"count_if(a{i}) AS d{i}", f"count_if(b{i}) AS n{i}"]
    row = eng.query(f"SELECT {', '.join(aggregates)} FROM {facts}").to_pylist()[0]
    for i, c in enumerate(checks, start=1):
        tallies[c.id] = (int(row[f"n{i}"] or 0), int(row[f"d{i}"] or 0))
    failing = [i for i, c in enumerate(checks, start=1) if tallies[c.id][0]]
    if failing:
        flags = [f"b{i}" for i in failing]
        for r in eng.query(f"SELECT id, {', '.join(flags)} FROM {facts} WHERE {' OR '.join(flags)}").to_pylist():
            for i in failing:
                if r[f"b{i}"]:
                    violations[checks[i - 1].id].append((resource_type, r["id"]))


def _paths(paths: list[str]) -> str:
    return ", ".join(f"'{p}'" for p in paths)


def _run_query_checks(
    eng: Engine,
    checks: list[Check],
    tallies: dict[str, tuple[int, int]],
    violations: dict[str, list[tuple[str, str]]],
    staging: Path,
) -> None:
    type_ = checks[0].type
    if type_.match:
        checked = _matched_records(eng, checks, staging)
    else:
        formatted = [c.type.records.format(**c.params) for c in checks]
        if type_.validator:
            invalid = _invalid_values(eng, type_.validator, formatted, staging)
        branches = []
        for c, records in zip(checks, formatted, strict=True):
            if type_.validator:
                branches.append(
                    f"SELECT '{c.id}' AS check_id, r.resource_type, r.id, iv.value IS NOT NULL AS bad "
                    f"FROM ({records}) AS r LEFT JOIN {invalid} AS iv ON iv.value = r.value"
                )
            else:
                violated = c.type.violated.format(**c.params)
                branches.append(
                    f"SELECT '{c.id}' AS check_id, resource_type, id, coalesce({violated}, FALSE) AS bad "
                    f"FROM ({records}) AS r"
                )
        checked = " UNION ALL ".join(branches)
    # One pass over the records gives the counts and the violating resources together: the checks read all
    # the data, and a second pass for the violations would double the cost of every check that fails.
    for r in eng.query(
        "SELECT check_id, count(*) AS d, count_if(bad) AS n, "
        "array_agg({'t': resource_type, 'i': id}) FILTER (WHERE bad) AS v "
        f"FROM ({checked}) AS _cl_checked GROUP BY check_id"
    ).to_pylist():
        tallies[r["check_id"]] = (int(r["n"]), int(r["d"]))
        violations[r["check_id"]].extend((v["t"], v["i"]) for v in r["v"] or ())


def _matched_records(eng: Engine, checks: list[Check], staging: Path) -> str:
    """The records of a ``match`` type joined to its instances (a table in staging): one scan for all of them."""
    import pyarrow as pa

    type_ = checks[0].type
    params = sorted(checks[0].params)
    table = pa.Table.from_pylist([{"_cl_check": c.id, **{f"_cl_p_{k}": c.params[k] for k in params}} for c in checks])
    name = _register_table(eng, f"_cl_instances_{type_.id}", table, staging / "instances" / f"{type_.id}.parquet")
    violated = type_.violated.format(**{k: f"p._cl_p_{k}" for k in params})
    on = " AND ".join(f"r.{k} = p._cl_p_{k}" for k in type_.match)
    return (
        f"SELECT p._cl_check AS check_id, r.resource_type, r.id, coalesce({violated}, FALSE) AS bad "
        f"FROM ({type_.records}) AS r JOIN {name} AS p ON {on}"
    )


def _validators() -> dict[str, Callable[[str], bool]]:
    from carelake.quality._codes import loinc_is_valid, snomed_is_valid

    parser = None

    def ucum(unit: str) -> bool:
        nonlocal parser
        if parser is None:
            from ucumvert import get_ucum_parser

            parser = get_ucum_parser()
        try:
            parser.parse(unit)
        except Exception:  # ucumvert raises lark's errors for any unit it cannot parse
            return False
        return True

    return {"loinc": loinc_is_valid, "snomed": snomed_is_valid, "ucum": ucum}


def _invalid_values(eng: Engine, validator: str, records: list[str], staging: Path) -> str:
    """Judge each distinct value once in Python with the validator's library; register the invalid ones."""
    import pyarrow as pa

    union = " UNION ALL ".join(f"SELECT value FROM ({r}) AS r" for r in records)
    values = eng.query(f"SELECT DISTINCT value FROM ({union}) AS v WHERE value IS NOT NULL").column(0).to_pylist()
    check = _validators()[validator]
    bad = sorted(v for v in values if not check(v))
    table = pa.table({"value": pa.array(bad, pa.string())})
    path = staging / "validators" / f"invalid-{validator}.parquet"
    return _register_table(eng, f"_cl_invalid_{validator}", table, path)


def _register_table(eng: Engine, name: str, table: pa.Table, path: Path) -> str:
    """A small table made in Python, written to the run's staging area and registered: both engines read it.

    ``path``'s name must not start with ``_``: Spark skips such files."""
    import pyarrow.parquet as pq

    path.parent.mkdir(exist_ok=True)
    pq.write_table(table, path)
    eng.register_parquet(name, [path])
    return name


def _results(
    run_id: str,
    checked_at: datetime,
    engine: str,
    checks: list[Check],
    tallies: dict[str, tuple[int, int]],
    violations: dict[str, list[tuple[str, str]]],
) -> pa.Table:
    import pyarrow as pa

    rows = []
    for c in checks:
        numerator, denominator = tallies.get(c.id, (0, 0))
        pct = round(100.0 * numerator / denominator, 4) if denominator else 0.0
        status = "not_applicable" if not denominator else ("fail" if pct > c.threshold else "pass")
        examples = sorted({f"{t}/{i}" for t, i in violations.get(c.id, [])})[:EXAMPLES]
        rows.append(
            {
                "run_id": run_id,
                "checked_at": checked_at,
                "engine": engine,
                "check_id": c.id,
                "check_type": c.type.id,
                "category": c.type.category,
                "subcategory": c.type.subcategory,
                "severity": c.severity,
                "resource_type": c.resource_type or None,
                "field": c.field,
                "numerator": numerator,
                "denominator": denominator,
                "pct_violated": pct,
                "threshold_pct": c.threshold,
                "status": status,
                "examples": examples,
            }
        )
    return pa.Table.from_pylist(rows, schema=results_schema())


def _write(tx: Any, results: pa.Table, violations: dict[str, list[tuple[str, str]]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tx.stage_dir("quality")
    tx.ensure_table(RESULTS_TABLE, layer="audit", schema=results_schema())
    pq.write_table(results, folder / "results.parquet")
    tx.append(RESULTS_TABLE, layer="audit", files=[folder / "results.parquet"], rows=results.num_rows)
    rows = [
        {"run_id": tx.run_id, "check_id": check_id, "resource_type": t, "id": i}
        for check_id, found in sorted(violations.items())
        for t, i in sorted(set(found))[:VIOLATIONS_PER_CHECK]
    ]
    table = pa.Table.from_pylist(rows, schema=violations_schema())
    pq.write_table(table, folder / "violations.parquet")
    tx.ensure_table(VIOLATIONS_TABLE, layer="audit", schema=violations_schema())
    tx.replace(VIOLATIONS_TABLE, layer="audit", files=[folder / "violations.parquet"], rows=table.num_rows)


def _summary(run_id: str, engine: str, results: pa.Table, seconds: float) -> QualityRun:
    rows = results.to_pylist()
    by_category: dict[str, dict[str, int]] = {}
    for r in rows:
        entry = by_category.setdefault(r["category"], {"pass": 0, "fail": 0, "not_applicable": 0})
        entry[r["status"]] += 1
    failed = [r for r in rows if r["status"] == "fail"]
    return QualityRun(
        run_id=run_id,
        engine=engine,
        checks=len(rows),
        passed=sum(1 for r in rows if r["status"] == "pass"),
        failed=len(failed),
        not_applicable=sum(1 for r in rows if r["status"] == "not_applicable"),
        failed_by_severity={s: sum(1 for r in failed if r["severity"] == s) for s in SEVERITIES},
        by_category=by_category,
        fatal_failures=sorted(r["check_id"] for r in failed if r["severity"] == "fatal"),
        seconds=round(seconds, 2),
        results=results,
    )
