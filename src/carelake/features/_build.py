"""Features for every index event of a cohort, computed in the engine from events up to the index time only.

A feature definition (YAML, ``default.yaml`` ships) lists look-back windows, event counts, condition flags,
labs and vitals, and the Charlson comorbidity categories. It compiles to one SQL query: the cohort joined
to the patient-event view on patient, restricted to events at or before the index time (never after: that
would leak the future into the model), aggregated per index event. Demographics, length of stay and the
cohort's outcome label come along, so the table is what a model trains on.
"""

from __future__ import annotations

import itertools
import re
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from carelake.errors import ConfigError, InputError, LakeError
from carelake.fhir._events import EVENT_VIEWS, SYSTEMS, age_sql, register_events, sql_literal

if TYPE_CHECKING:
    from carelake.lake import Lake

STAGE = "features-build"
INDEX_EVENTS_PER_PART = 25_000  # index events computed in one query (see _patient_ranges)
SORT_EVENTS_ABOVE_RANGES = 8  # beyond this many ranges, the events are sorted by patient once (_events_by_patient)
DEFAULT = Path(__file__).with_name("default.yaml")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
_ICD10 = SYSTEMS["icd10cm"]


@dataclass
class FeatureResult:
    """A built feature table: its name, size and the feature columns (label and keys excluded)."""

    cohort: str
    table: str
    run_id: str
    engine: str
    rows: int
    features: list[str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_spec(spec: str | Path | dict[str, Any] | None = None) -> dict[str, Any]:
    """A feature definition (default: carelake's), checked for the keys and names SQL will be built from."""
    import yaml

    if isinstance(spec, dict):
        data = spec
    else:
        path = Path(spec) if spec is not None else DEFAULT
        if not path.is_file():
            raise InputError(f"no feature definition at {path}", hint="pass a YAML file like features/default.yaml")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise InputError(f"{path}{f':{mark.line + 1}' if mark else ''}: not valid YAML", hint="fix it") from None
    known = {"windows", "counts", "flags", "measurement_window", "measurements", "trends", "charlson"}
    if not isinstance(data, dict) or set(data) - known:
        extra = sorted(set(data) - known) if isinstance(data, dict) else "not a mapping"
        raise ConfigError(f"feature definition: unexpected {extra}", hint=f"allowed keys: {', '.join(sorted(known))}")
    names = (
        [c["name"] for c in data.get("counts", [])] + list(data.get("flags", {})) + list(data.get("measurements", {}))
    )
    for name in names:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"feature definition: {name!r} is not a valid feature name", hint="lower_case_words")
    for window in data.get("windows", []):
        if window is not None and (not isinstance(window, int) or window < 0):
            raise ConfigError(f"feature definition: window {window!r} is not a number of days", hint="e.g. 365")
    for name, days in data.get("trends", {}).items():
        if name not in data.get("measurements", {}):
            raise ConfigError(f"feature definition: trend {name!r} is not a measurement", hint="list it there first")
        if not isinstance(days, int) or days <= 0:
            raise ConfigError(f"feature definition: trend window {days!r} is not a number of days", hint="e.g. 1826")
    for count in data.get("counts", []):
        if count.get("distinct", "code") != "code":
            raise ConfigError(f"feature definition: count {count['name']!r}: distinct must be 'code'", hint="or omit")
    return data


def feature_sql(cohort_table: str, spec: dict[str, Any]) -> str:
    """The query that computes the features of the index events ``cl_feature_index`` of ``cohort_table``.

    It reads their patients' events from ``cl_feature_events`` (``cl_events``, or the part of it that holds those
    patients). DuckDB dialect."""
    # Counts are of events: a count without a code system reads each event's primary row only (an encounter has
    # a class row and a type row in cl_events), so plain sums suffice. ``distinct: code`` counts different codes
    # (how many different medications), deduplicated by a plain aggregation per (index event, code) over the
    # matching rows, which DuckDB spills to disk, unlike count(DISTINCT ...).
    sums: list[str] = []
    distinct_marks: list[str] = []
    distinct_sums: list[str] = []
    distinct_rows: list[str] = []
    for k, count in enumerate(spec.get("counts", [])):
        match = _match(count)
        for window in spec.get("windows", [None]):
            suffix = f"{window}d" if window is not None else "all"
            if count.get("distinct") == "code":
                within = f" AND d.days_before <= {int(window)}" if window is not None else ""
                distinct_sums.append(
                    f"CAST(sum(CASE WHEN d.m{k} = 1{within} THEN 1 ELSE 0 END) AS BIGINT) AS {count['name']}_{suffix}"
                )
            else:
                within = f" AND ev.days_before <= {int(window)}" if window is not None else ""
                primary = "" if count.get("system") else " AND ev.is_primary"
                # BIGINT on every engine (DuckDB's sum is a HUGEINT, which its Parquet writer stores as DOUBLE)
                hits = f"sum(CASE WHEN {match}{primary}{within} THEN 1 ELSE 0 END)"
                sums.append(f"CAST({hits} AS BIGINT) AS {count['name']}_{suffix}")
        if count.get("distinct") == "code":
            distinct_marks.append(f"max(CASE WHEN {match} THEN 1 ELSE 0 END) AS m{k}")
            distinct_rows.append(match)
    select: list[str] = []
    for name, flag in spec.get("flags", {}).items():
        select.append(f"{_flag(flag)} AS {name}")
    window = int(spec.get("measurement_window", 365))
    for name, codes in spec.get("measurements", {}).items():
        hit = (
            f"ev.domain = 'observation' AND ev.code IN ({', '.join(sql_literal(c) for c in codes)}) "
            f"AND ev.value IS NOT NULL AND ev.days_before <= {window}"
        )
        select += [
            f"arg_max(CASE WHEN {hit} THEN ev.value END, CASE WHEN {hit} THEN ev.start_time END) AS {name}_last",
            f"min(CASE WHEN {hit} THEN ev.value END) AS {name}_min",
            f"max(CASE WHEN {hit} THEN ev.value END) AS {name}_max",
            f"avg(CASE WHEN {hit} THEN ev.value END) AS {name}_mean",
        ]
    for name, days in spec.get("trends", {}).items():
        codes = spec["measurements"][name]
        hit = (
            f"ev.domain = 'observation' AND ev.code IN ({', '.join(sql_literal(c) for c in codes)}) "
            f"AND ev.value IS NOT NULL AND ev.days_before <= {int(days)}"
        )
        # Change per year: the least-squares slope of the value against time; null unless values were taken on
        # at least two different days.
        pair = f"CASE WHEN {hit} THEN ev.value END, CASE WHEN {hit} THEN -ev.days_before END"
        select.append(f"CASE WHEN regr_sxx({pair}) > 0 THEN regr_slope({pair}) * 365.25 END AS {name}_trend")
    charlson = spec.get("charlson", [])
    for category in charlson:
        select.append(f"max(CASE WHEN {_icd10(category['prefixes'])} THEN 1 ELSE 0 END) AS _ch_{category['category']}")
    joined = """
            SELECT i2.index_event_id, e.event_id, e.domain, e.system, e.code, e.value, e.start_time, e.is_primary,
                   date_diff('day', CAST(e.start_time AS DATE), CAST(i2.index_time AS DATE)) AS days_before
            FROM cl_feature_index i2 JOIN cl_feature_events e ON e.patient_id = i2.patient_id
            WHERE e.start_time <= i2.index_time AND e.event_id <> i2.index_event_id"""
    select = [f"coalesce({c.rsplit(' AS ', 1)[0]}, 0) AS {c.rsplit(' AS ', 1)[1]}" for c in sums] + select
    aggregated = f"""
        SELECT i.index_event_id, {", ".join(select) if select else "0 AS _none"}
        FROM cl_feature_index i LEFT JOIN ({joined}) ev ON ev.index_event_id = i.index_event_id
        GROUP BY i.index_event_id"""
    if distinct_sums:
        names = [c.rsplit(" AS ", 1)[1] for c in distinct_sums]
        aggregated = f"""
        SELECT g.*, {", ".join(f"coalesce(c.{name}, 0) AS {name}" for name in names)}
        FROM ({aggregated}) g LEFT JOIN (
            SELECT d.index_event_id, {", ".join(distinct_sums)}
            FROM (SELECT ev.index_event_id, ev.code, min(ev.days_before) AS days_before, {", ".join(distinct_marks)}
                  FROM ({joined}) ev WHERE {" OR ".join(distinct_rows)} GROUP BY ev.index_event_id, ev.code) d
            GROUP BY d.index_event_id) c ON c.index_event_id = g.index_event_id"""
    age = age_sql("cl_fhir_time(p.birth_date)", "i.index_time")
    columns = [c for c in _columns(spec) if not c.startswith("_ch_")]
    return f"""
        SELECT i.index_event_id, i.patient_id, i.index_time, i.outcome,
               CAST({age} AS BIGINT) AS age, p.gender AS sex, coalesce(p.race, 'unknown') AS race,
               coalesce(p.ethnicity, 'unknown') AS ethnicity, enc.length_of_stay_days AS length_of_stay_days,
               coalesce(enc.discharge_disposition_code, 'none') AS discharge_disposition,
               CASE WHEN enc.id IS NULL THEN NULL WHEN enc.admit_source_code = 'emd' OR enc.priority_code = 'EM'
                    THEN 1 ELSE 0 END AS emergency_admission,
               {"".join(f"a.{c}, " for c in columns)}{_charlson_sql(charlson)} AS charlson_index
        FROM cl_feature_index i
        JOIN ({aggregated}) a ON a.index_event_id = i.index_event_id
        LEFT JOIN patients p ON p.id = i.patient_id
        LEFT JOIN encounters enc ON enc.id = i.index_event_id
        ORDER BY i.patient_id, i.index_time, i.index_event_id"""


def build_features(
    cohort: str,
    *,
    lake: Lake,
    spec: str | Path | dict[str, Any] | None = None,
    engine: str = "duckdb",
    full: bool = False,
) -> FeatureResult:
    """Write gold table ``features_<cohort>``: one row per index event of ``cohort_<cohort>``, replaced.

    The build is incremental: an index event's features come from its own patient's events, so the rows of
    patients with no new or changed resource since the last build (same definition) are kept, with their
    label taken afresh from the cohort, and only the other index events are computed (``full=True``
    computes all).

    Examples:
        >>> build_features("readmission-30d", lake=lake).features[:3]  # doctest: +SKIP
        ['conditions_30d', 'conditions_180d', 'conditions_365d']
    """
    from carelake.fhir._by_run import fingerprint

    started = time.perf_counter()
    definition = load_spec(spec)
    cohort_table = "cohort_" + cohort.replace("-", "_")
    tables = lake.catalog.tables
    if cohort_table not in tables:
        raise LakeError(f"no cohort {cohort!r} in the lake", hint=f"build it first: carelake cohort build {cohort}")
    missing = [v for v in ("patients", *EVENT_VIEWS) if v not in tables]
    if missing:
        raise LakeError(
            f"the lake lacks the standard views {', '.join(missing)}", hint="carelake view materialize --standard"
        )
    table = "features_" + cohort.replace("-", "_")
    sql = feature_sql(cohort_table, definition)
    definition_print = fingerprint(sql)
    # Rows can be kept only from a build whose views held every run it saw, and the views must hold them now.
    current = _views_are_current(lake)
    previous = None if full or not current else _previous_build(lake, table, definition_print)
    parameters = {"cohort": cohort, "spec": definition, "engine": engine, "full": full}
    with lake.transaction(STAGE, parameters=parameters) as tx:
        with closing(lake.connect(engine)) as eng:
            register_events(eng)
            columns = eng.query(f"SELECT * FROM {cohort_table} LIMIT 0").schema.names
            outcome = "outcome" if "outcome" in columns else "CAST(NULL AS BOOLEAN) AS outcome"
            eng.create_view(
                "cl_feature_cohort", f"SELECT patient_id, index_event_id, index_time, {outcome} FROM {cohort_table}"
            )
            runs = sorted(r["run_id"] for r in eng.query("SELECT DISTINCT run_id FROM fhir_resources").to_pylist())
            if previous is None:
                eng.create_view("cl_feature_todo", "SELECT * FROM cl_feature_cohort")
            else:
                sql = _incremental(eng, sql, previous, [r for r in runs if r not in previous["resource_runs"]])
            ranges = _patient_ranges(eng)
            sorted_events = len(ranges) > SORT_EVENTS_ABOVE_RANGES
            if len(ranges) > 1:  # every range reads these: computed once here, not once per range
                kept = ["cl_feature_kept_all"] if previous is not None else []
                for name in [*kept, "cl_feature_todo"]:  # the rows to keep first: the ones to compute read them
                    eng.register_parquet(name, eng.write_parquet(f"SELECT * FROM {name}", tx.staging / name))
                if sorted_events:
                    _events_by_patient(eng, tx.staging)
            computed = eng.query("SELECT count(*) AS n FROM cl_feature_todo").column("n")[0].as_py()
            files = []
            for part, where in enumerate(ranges):
                eng.create_view("cl_feature_index", f"SELECT * FROM cl_feature_todo WHERE {where}")
                # From the view itself, DuckDB reads only the range's patients, by the join's key bounds.
                events = f"cl_feature_events_sorted WHERE {where}" if sorted_events else "cl_events"
                eng.create_view("cl_feature_events", f"SELECT * FROM {events}")
                if previous is not None:
                    eng.create_view("cl_feature_kept", f"SELECT * FROM cl_feature_kept_all WHERE {where}")
                files += eng.write_parquet(sql, tx.staging / "features" / f"part-{part:05d}")
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        tx.replace(table, layer="gold", files=files, rows=rows)
        names = pq.read_schema(files[0]).names if files else []
        features = [n for n in names if n not in ("index_event_id", "patient_id", "index_time", "outcome")]
        result = FeatureResult(
            cohort=cohort,
            table=table,
            run_id=tx.run_id,
            engine=engine,
            rows=rows,
            features=features,
            seconds=round(time.perf_counter() - started, 3),
        )
        tx.summary = result.to_dict() | {"fingerprint": definition_print, "index_events_computed": computed}
        if current:
            tx.summary["resource_runs"] = runs
    return result


def _views_are_current(lake: Lake) -> bool:
    """True when the standard views features read were materialised after the lake's last ingestion."""
    from carelake.fhir import standard_views
    from carelake.fhir._materialize import fresh_views

    needed = {"patients", "encounters", *EVENT_VIEWS}
    return needed <= fresh_views(lake, [v for v in standard_views() if v["name"] in needed])


def _previous_build(lake: Lake, table: str, definition_print: str) -> dict[str, Any] | None:
    """The last build of ``table``, when it used the same definition and the table is still what it wrote."""
    from carelake.fhir._by_run import written_by

    entry = lake.catalog.tables.get(table)
    if entry is None or not entry.files:
        return None
    for manifest in lake.manifests(STAGE):
        summary = manifest.get("summary", {})
        if summary.get("table") != table:
            continue
        same = summary.get("fingerprint") == definition_print and "resource_runs" in summary
        ours = all(written_by(f) == manifest["run_id"] for f in entry.files)
        return summary | {"files": [lake.root / f for f in entry.files]} if same and ours else None
    return None


def _incremental(eng: Any, sql: str, previous: dict[str, Any], new_runs: list[str]) -> str:
    """Set ``cl_feature_todo`` to the index events to compute; return the query that adds the kept rows.

    A patient changed when a resource that is, or was, theirs arrived in a run the last build did not see:
    a new resource, or a new version (of a resource that may have moved to another patient).
    """
    eng.register_parquet("cl_feature_previous", previous["files"])
    if new_runs:
        listed = ", ".join(sql_literal(r) for r in new_runs)
        changed = f"""
            SELECT DISTINCT h.patient_id FROM fhir_resources h
            JOIN (SELECT DISTINCT resource_type, id FROM fhir_resources WHERE run_id IN ({listed})) n
              ON n.resource_type = h.resource_type AND n.id = h.id
            WHERE h.patient_id IS NOT NULL"""
    else:
        changed = "SELECT patient_id FROM cl_feature_cohort WHERE FALSE"
    eng.create_view("cl_feature_changed", changed)
    names = eng.query("SELECT * FROM cl_feature_previous LIMIT 0").schema.names
    picked = ", ".join("c.outcome" if n == "outcome" else f"p.{n}" for n in names)
    eng.create_view(
        "cl_feature_kept_all",
        f"""SELECT {picked} FROM cl_feature_previous p
            JOIN cl_feature_cohort c
              ON c.index_event_id = p.index_event_id AND c.patient_id = p.patient_id AND c.index_time = p.index_time
            WHERE p.patient_id NOT IN (SELECT patient_id FROM cl_feature_changed)""",
    )
    eng.create_view(
        "cl_feature_todo",
        """SELECT c.* FROM cl_feature_cohort c
           WHERE c.index_event_id NOT IN (SELECT index_event_id FROM cl_feature_kept_all)""",
    )
    return f"""
        SELECT * FROM (SELECT * FROM ({sql}) AS computed UNION ALL SELECT * FROM cl_feature_kept) AS features
        ORDER BY patient_id, index_time, index_event_id"""


def _events_by_patient(eng: Any, staging: Path) -> None:
    """``cl_feature_events_sorted``: the events of the patients to compute, sorted by patient, so that a range
    reads its own row groups only.

    A range otherwise reads ``cl_events`` again, every view's patient column at least: cheap for a few ranges, but
    the total grows with the square of the population (diabetes onset at 100,000 patients, 16 ranges: 89 s, and
    58 s sorted). Sorting the views' union directly ran out of DuckDB's 1 GB there; written first, then sorted, it
    stays within it."""
    unsorted = eng.write_parquet(
        "SELECT * FROM cl_events WHERE patient_id IN (SELECT patient_id FROM cl_feature_todo)", staging / "events-all"
    )
    eng.register_parquet("cl_feature_events_unsorted", unsorted)
    eng.register_parquet(
        "cl_feature_events_sorted",
        eng.write_parquet("SELECT * FROM cl_feature_events_unsorted ORDER BY patient_id", staging / "events-sorted"),
    )


def _patient_ranges(eng: Any) -> list[str]:
    """Conditions on ``patient_id`` that split the cohort into consecutive ranges of about ``INDEX_EVENTS_PER_PART``
    index events.

    Each index event's features come from its own patient's events, so the ranges are built one at a time and
    their files, in range order, are the table sorted as one query would sort it. One query over every index
    event joins each to all its patient's history and holds every group's aggregates at once: at 100,000
    patients that ran out of DuckDB's 1 GB; a range at a time stays within it at any population size."""
    counts = eng.query(
        "SELECT patient_id, count(*) AS n FROM cl_feature_cohort WHERE patient_id IS NOT NULL "
        "GROUP BY patient_id ORDER BY patient_id"
    ).to_pylist()
    bounds, size = [], 0
    for row in counts:
        if size >= INDEX_EVENTS_PER_PART:
            bounds.append(row["patient_id"])
            size = 0
        size += row["n"]
    if not bounds:
        return ["TRUE"]
    literals = [sql_literal(b) for b in bounds]
    ranges = [f"patient_id < {literals[0]}"]
    ranges += [f"patient_id >= {lo} AND patient_id < {hi}" for lo, hi in itertools.pairwise(literals)]
    return [*ranges, f"(patient_id >= {literals[-1]} OR patient_id IS NULL)"]


def _columns(spec: dict[str, Any]) -> list[str]:
    names = []
    for count in spec.get("counts", []):
        for window in spec.get("windows", [None]):
            names.append(f"{count['name']}_{window}d" if window is not None else f"{count['name']}_all")
    names += list(spec.get("flags", {}))
    for name in spec.get("measurements", {}):
        names += [f"{name}_last", f"{name}_min", f"{name}_max", f"{name}_mean"]
    names += [f"{name}_trend" for name in spec.get("trends", {})]
    names += [f"_ch_{c['category']}" for c in spec.get("charlson", [])]
    return names


def _charlson_sql(categories: list[dict[str, Any]]) -> str:
    """Sum of category weights; within a family (diabetes, liver, cancer) only the heaviest present counts."""
    if not categories:
        return "0"
    families: dict[str, list[str]] = {}
    terms = []
    for c in categories:
        term = f"{int(c['weight'])} * a._ch_{c['category']}"
        if c.get("family"):
            families.setdefault(c["family"], []).append(term)
        else:
            terms.append(term)
    terms += [f"greatest({', '.join(members)})" if len(members) > 1 else members[0] for members in families.values()]
    return "(" + " + ".join(terms) + ")"


def _match(count: dict[str, Any]) -> str:
    parts = [f"ev.domain = {sql_literal(count['domain'])}"]
    if count.get("system"):
        parts.append(f"ev.system = {sql_literal(SYSTEMS.get(count['system'], count['system']))}")
    if count.get("codes"):
        parts.append(f"ev.code IN ({', '.join(sql_literal(c) for c in count['codes'])})")
    return "(" + " AND ".join(parts) + ")"


def _flag(flag: list[str] | dict[str, Any]) -> str:
    """A flag's aggregate: ICD-10-CM prefixes (a list) recorded ever, or a mapping of ``conditions`` prefixes,
    ``family`` codes (a relative's condition) and ``screening`` questions (LOINC) whose latest answer before the
    index is one of the positive answers.

    The latest answer, not any: a need met since (housing found) is no longer a need.
    """
    if isinstance(flag, list):
        flag = {"conditions": flag}
    parts = [f"max(CASE WHEN {_icd10(flag['conditions'])} THEN 1 ELSE 0 END)"] if flag.get("conditions") else []
    if flag.get("family"):  # a relative's condition, by code (SNOMED CT)
        codes = ", ".join(sql_literal(c) for c in flag["family"])
        parts.append(f"max(CASE WHEN ev.domain = 'family_history' AND ev.code IN ({codes}) THEN 1 ELSE 0 END)")
    for question, answers in flag.get("screening", {}).items():
        asked = f"ev.domain = 'screening' AND ev.system = {sql_literal(question)}"
        positive = f"CASE WHEN ev.code IN ({', '.join(sql_literal(a) for a in answers)}) THEN 1 ELSE 0 END"
        parts.append(f"coalesce(arg_max(CASE WHEN {asked} THEN {positive} END, CASE WHEN {asked} THEN ev.start_time "
                     "END), 0)")  # fmt: skip
    if not parts:
        return "0"
    return parts[0] if len(parts) == 1 else f"greatest({', '.join(parts)})"


def _icd10(prefixes: list[str]) -> str:
    likes = " OR ".join(f"ev.code LIKE {sql_literal(str(p) + '%')}" for p in prefixes)
    return f"(ev.domain = 'condition' AND ev.system = '{_ICD10}' AND ({likes}))"
