"""Ingest an OMOP CDM into the lake: each table losslessly into bronze, and its clinical rows as FHIR.

Rows are read as text at the edge (``_read``); typing them against the CDM DDL, finding duplicates and key
conflicts, and choosing what to store is SQL the engine runs. In the same commit the clinical rows are turned
into FHIR resources (``_fhir``) and stored through the FHIR path, so everything downstream of FHIR (views,
quality, cohorts, models, de-identification, the web app, the exports) works on OMOP data unchanged.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from carelake.errors import InputError, LakeError, StrictModeError
from carelake.lake import QUARANTINE_TABLE, Lake, Transaction, open_lake
from carelake.progress import NoProgress, Progress
from carelake.sources.fhir._files import file_sha256
from carelake.sources.omop._cdm import VERSIONS, CdmTable, cdm_tables, parse_version, version_from_columns
from carelake.sources.omop._read import FILE_INDEX, LINE, BadRow, TableSource, discover, header, read_rows

if TYPE_CHECKING:
    from carelake.engine import Engine

STAGE = "ingest-omop"
PREFIX = "omop_"
# Lineage columns every bronze OMOP table carries after the CDM's own columns.
LINEAGE = pa.schema(
    [
        pa.field("cl_content_hash", pa.string()),
        pa.field("cl_source_file", pa.string()),
        pa.field("cl_source_sha256", pa.string()),
        pa.field("cl_line", pa.int64()),
        pa.field("cl_run_id", pa.string()),
    ]
)
ARROW_TYPES = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
    "varchar": pa.string(),
}
RULE_TEXT = {
    "omop-required": "is required by the CDM but empty",
    "omop-type": "does not hold a valid {type}",
    "omop-duplicate-key": "repeats the primary key of another row with different content",
    "omop-field-count": "",
}


@dataclass
class OmopIngestSummary:
    """What one OMOP ingest did. Per table and in total: read = stored + duplicates + quarantined."""

    run_id: str
    engine: str
    cdm_version: str
    version_from: str
    files: int
    skipped_files: list[dict[str, str]]
    read: int
    stored: int
    duplicates: int
    quarantined: int
    quarantined_by_rule: dict[str, int]
    by_table: dict[str, dict[str, int]]
    extra_columns: dict[str, list[str]]
    fhir: dict[str, Any]
    seconds: float
    rows_per_s: float
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reconciles(self) -> bool:
        return self.read == self.stored + self.duplicates + self.quarantined and all(
            t["read"] == t["stored"] + t["duplicates"] + t["quarantined"] for t in self.by_table.values()
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ingest_omop(
    path: str | os.PathLike[str],
    *,
    lake: Lake | str | os.PathLike[str] | None = None,
    cdm_version: str | None = None,
    engine: str = "duckdb",
    strict: bool = False,
    keep_raw: bool = True,
    to_fhir: bool = True,
    progress: Progress | None = None,
    spark_master: str | None = None,
    memory_limit: str | None = None,
) -> OmopIngestSummary:
    """Ingest an OMOP CDM 5.3 or 5.4 (a folder of CSV, gzipped CSV or Parquet files, or a DuckDB file).

    Each table lands in bronze as ``omop_<table>`` with the CDM's types; rows that break the DDL (a required
    field empty, a value of the wrong type, a second row for a primary key) are quarantined with file, line
    and column. The version comes from ``cdm_source.cdm_version`` unless given. Re-running adds nothing.

    Examples:
        >>> import carelake as cl
        >>> s = cl.ingest_omop("../shared/testdata/omop-eunomia-gibleed/cdm_v5.3", lake="lake")  # doctest: +SKIP
        >>> s.by_table["person"]["stored"], s.reconciles  # doctest: +SKIP
        (2694, True)
    """
    started = time.perf_counter()
    progress = progress or NoProgress()
    root = Path(path)
    if cdm_version is not None and cdm_version not in VERSIONS:
        raise InputError(f"unsupported CDM version {cdm_version!r}", hint=f"use one of {', '.join(VERSIONS)}")
    known = set(cdm_tables("5.3")) | set(cdm_tables("5.4"))
    sources, skipped = discover(root, known)
    headers = {s.name: header(s) for s in sources}
    version, version_from = _version(cdm_version, sources, headers)
    tables = cdm_tables(version)
    for source in list(sources):
        if source.table not in tables:
            sources.remove(source)
            skipped.append((source.name, f"{source.table!r} is not a table of CDM {version}"))
    the_lake = lake if isinstance(lake, Lake) else open_lake(lake)
    _check_lake_version(the_lake, version)
    parameters = {"path": str(root), "cdm_version": version, "engine": engine, "strict": strict}
    with the_lake.transaction(STAGE, parameters=parameters) as tx:
        staged, bad_rows, extras = _stage_text(tx, sources, headers, tables, keep_raw=keep_raw, progress=progress)
        progress.start(f"checking CDM {version} rows on {engine}", None)
        try:
            with closing(the_lake.connect(engine, spark_master=spark_master, memory_limit=memory_limit)) as eng:
                counts, problems, new_files = _decide(eng, tx, staged, bad_rows, extras, tables)
                fhir = _to_fhir(eng, tx, new_files, version) if to_fhir else {}
        finally:
            progress.stop()
        seconds = round(time.perf_counter() - started, 3)
        totals = {k: sum(t[k] for t in counts.values()) for k in ("read", "stored", "duplicates", "quarantined")}
        by_rule: dict[str, int] = {}
        for table_counts in counts.values():
            for rule, n in table_counts.pop("by_rule").items():
                by_rule[rule] = by_rule.get(rule, 0) + n
        result = OmopIngestSummary(
            run_id=tx.run_id,
            engine=engine,
            cdm_version=version,
            version_from=version_from,
            files=len(sources),
            skipped_files=[{"path": p, "reason": r} for p, r in skipped],
            **totals,
            quarantined_by_rule=dict(sorted(by_rule.items())),
            by_table=counts,
            extra_columns={t: cols for t, cols in extras.items() if cols},
            fhir=fhir,
            seconds=seconds,
            rows_per_s=round(totals["read"] / seconds, 1) if seconds else 0.0,
            problems=problems,
        )
        if strict and result.quarantined:
            first = problems[0]
            error = StrictModeError(
                f"{result.quarantined} row(s) were quarantined (first: {first['source_file']}:{first['line']} "
                f"{first['rule']}), so nothing was committed (--strict)",
                hint="fix the rows listed, or run without --strict to commit the good ones",
            )
            error.summary = result.to_dict()
            raise error
        tx.summary = result.to_dict()
    return result


def _version(given: str | None, sources: list[TableSource], headers: dict[str, list[str]]) -> tuple[str, str]:
    """The CDM version: as given, else as ``cdm_source`` states it, else as the visit tables' columns imply."""
    if given is not None:
        return given, "--cdm-version"
    for source in sources:
        if source.table == "cdm_source" and "cdm_version" in headers[source.name]:
            columns = headers[source.name]
            for batch in read_rows(source, columns, lambda bad: None, lambda n: None):
                for value in batch.column("cdm_version").to_pylist():
                    if (version := parse_version(value)) is not None:
                        return version, "cdm_source.cdm_version"
    by_table = {s.table: headers[s.name] for s in sources}
    if (version := version_from_columns(by_table)) is not None:
        return version, "visit table columns"
    raise InputError(
        "cannot tell the CDM version: cdm_source has no cdm_version and the visit tables do not settle it",
        hint="pass --cdm-version 5.3 or --cdm-version 5.4",
    )


def _check_lake_version(lake: Lake, version: str) -> None:
    for run in lake.catalog.runs:
        if run["job"] == STAGE and run.get("manifest"):
            manifest = json.loads((lake.root / run["manifest"]).read_text(encoding="utf-8"))
            earlier = manifest["parameters"]["cdm_version"]
            if earlier != version:
                raise LakeError(
                    f"this lake holds OMOP CDM {earlier} tables; CDM {version} cannot be added to them",
                    hint="ingest into a new lake (--lake PATH), or convert the CDM first",
                )
            return


def _stage_text(
    tx: Transaction,
    sources: list[TableSource],
    headers: dict[str, list[str]],
    tables: dict[str, CdmTable],
    *,
    keep_raw: bool,
    progress: Progress,
) -> tuple[dict[str, list[Path]], list[dict[str, Any]], dict[str, list[str]]]:
    """Every table's rows as text Parquet in staging, in one column layout per table: the CDM's columns in order,
    then columns the CDM does not define (kept, not dropped)."""
    files_folder = tx.stage_dir("omop-files")
    file_rows = []
    extras: dict[str, list[str]] = {}
    for source in sources:
        table = tables[source.table]
        header_cols = headers[source.name]
        missing = [f.name for f in table.fields if f.required and f.name not in header_cols]
        if missing:
            raise InputError(
                f"{source.name}:1: the header lacks the required CDM {table.name} column(s) {', '.join(missing)}",
                hint="add the column(s), or check --cdm-version",
            )
        if len(set(header_cols)) != len(header_cols):
            raise InputError(f"{source.name}:1: the header names a column twice", hint="fix the header line")
        extra = extras.setdefault(source.table, [])
        extra.extend(c for c in header_cols if c not in table.columns and c not in extra)
    staged: dict[str, list[Path]] = {}
    bad_rows: list[dict[str, Any]] = []
    progress.start(f"reading {len(sources)} OMOP table file(s)", None)
    try:
        for index, source in enumerate(sources):
            sha = file_sha256(source.path) if source.kind != "duckdb" else None
            if keep_raw and sha is not None:
                tx.add_raw(source.path, sha)
            file_rows.append({"file_index": index, "source_file": source.name, "source_sha256": sha})
            layout = [*tables[source.table].columns, *extras[source.table]]
            schema = pa.schema([(FILE_INDEX, pa.int64()), (LINE, pa.int64()), *[(c, pa.string()) for c in layout]])
            target = tx.staging / "omop-text" / source.table / f"{index:05d}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)

            def bad(row: BadRow, index: int = index, table_name: str = source.table) -> None:
                bad_rows.append({"file_index": index, "table": table_name, **asdict(row)})

            with pq.ParquetWriter(target, schema, compression="lz4") as writer:
                for batch in read_rows(source, headers[source.name], bad, progress.advance):
                    count = batch.num_rows
                    arrays = [pa.array([index] * count, type=pa.int64()), batch.column(LINE)]
                    for column in layout:
                        position = batch.schema.get_field_index(column)
                        arrays.append(batch.column(position) if position >= 0 else pa.nulls(count, pa.string()))
                    writer.write_batch(pa.record_batch(arrays, schema=schema))
            staged.setdefault(source.table, []).append(target)
    finally:
        progress.stop()
    pq.write_table(pa.Table.from_pylist(file_rows, schema=_FILES_SCHEMA), files_folder / "files.parquet")
    return staged, bad_rows, extras


_FILES_SCHEMA = pa.schema([("file_index", pa.int64()), ("source_file", pa.string()), ("source_sha256", pa.string())])


def bronze_schema(table: CdmTable, extra: list[str]) -> pa.Schema:
    """A bronze OMOP table: the CDM's typed columns, the extra text columns, then lineage."""
    return pa.schema(
        [
            *[pa.field(f.name, ARROW_TYPES[f.type]) for f in table.fields],
            *[pa.field(c, pa.string()) for c in extra],
            *LINEAGE,
        ]
    )


def _decide(
    eng: Engine,
    tx: Transaction,
    staged: dict[str, list[Path]],
    bad_rows: list[dict[str, Any]],
    extras: dict[str, list[str]],
    tables: dict[str, CdmTable],
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], dict[str, list[Path]]]:
    """Type, check and classify each table's staged rows; stage bronze rows and quarantine rows."""
    eng.register_parquet("omop_files", [tx.staging / "omop-files" / "files.parquet"])
    committed = tx.lake.catalog.tables
    counts: dict[str, dict[str, Any]] = {}
    quarantine: list[dict[str, Any]] = []
    new_files: dict[str, list[Path]] = {}
    run = f"'{tx.run_id}'"
    for name, files in staged.items():
        table = tables[name]
        bronze = PREFIX + name
        schema = bronze_schema(table, extras[name])
        if bronze in committed:
            existing = pq.read_schema(tx.lake.root / committed[bronze].files[0])
            if [f.name for f in existing] != schema.names:
                raise InputError(
                    f"{name}: the columns differ from the {bronze} table already in the lake",
                    hint="ingest tables with the same columns as before, or into a new lake",
                )
        else:
            empty = tx.staging / f"empty-{bronze}.parquet"
            pq.write_table(schema.empty_table(), empty)
            eng.register_parquet(bronze, [empty])
        tx.ensure_table(bronze, layer="bronze", schema=schema)
        eng.register_parquet(f"staged_{name}", files)
        eng.register_parquet(
            f"checked_{name}", eng.write_parquet(_checked_sql(table, extras[name]), tx.staging / "omop-checked" / name)
        )
        key = table.key
        conflict = (
            f"""
            CASE WHEN row_number() OVER (PARTITION BY {_q(key)} ORDER BY {FILE_INDEX}, {LINE}) > 1
                   OR EXISTS (SELECT 1 FROM {bronze} b WHERE b.{_q(key)} = f.{_q(key)}) THEN TRUE ELSE FALSE END"""
            if key
            else "FALSE"
        )
        classified = f"""
            WITH firsts AS (
                SELECT * FROM (
                    SELECT *, row_number() OVER (PARTITION BY cl_content_hash ORDER BY {FILE_INDEX}, {LINE}) AS cl_dup
                    FROM checked_{name} WHERE cl_rule IS NULL) r
                WHERE cl_dup = 1),
            fresh AS (
                SELECT * FROM firsts f WHERE NOT EXISTS (
                    SELECT 1 FROM {bronze} b WHERE b.cl_content_hash = f.cl_content_hash))
            SELECT f.*, {conflict} AS cl_conflict FROM fresh f"""
        eng.register_parquet(f"classified_{name}", eng.write_parquet(classified, tx.staging / "omop-classified" / name))
        columns = ", ".join(f"c.{_q(c)}" for c in [*table.columns, *extras[name]])
        out = eng.write_parquet(
            f"""
            SELECT {columns}, c.cl_content_hash, f.source_file AS cl_source_file, f.source_sha256 AS cl_source_sha256,
                   c.{LINE} AS cl_line, {run} AS cl_run_id
            FROM classified_{name} c JOIN omop_files f ON f.file_index = c.{FILE_INDEX}
            WHERE NOT c.cl_conflict ORDER BY c.{FILE_INDEX}, c.{LINE}""",
            tx.staging / "omop-bronze" / name,
        )
        stored = sum(pq.read_metadata(f).num_rows for f in out)
        tx.append(bronze, layer="bronze", files=out, rows=stored)
        new_files[name] = out
        refused = eng.query(f"""
            SELECT {FILE_INDEX} AS file_index, {LINE} AS line, cl_rule AS rule FROM checked_{name}
            WHERE cl_rule IS NOT NULL
            UNION ALL
            SELECT {FILE_INDEX}, {LINE}, 'omop-duplicate-key:{key}' FROM classified_{name} WHERE cl_conflict
            ORDER BY 1, 2""").to_pylist()
        read = eng.query(f"SELECT count(*) AS n FROM staged_{name}").column("n")[0].as_py()
        table_bad = [r for r in bad_rows if r["table"] == name]
        counts[name] = {
            "read": read + len(table_bad),
            "stored": stored,
            "duplicates": read - stored - len(refused),
            "quarantined": len(refused) + len(table_bad),
            "by_rule": {},
        }
        for row in refused:
            rule, _, column = row["rule"].partition(":")
            quarantine.append({**row, "table": name, "rule": rule, "column": column})
        quarantine.extend({**r, "column": ""} for r in table_bad)
        for row in quarantine:
            if row["table"] == name:
                counts[name]["by_rule"][row["rule"]] = counts[name]["by_rule"].get(row["rule"], 0) + 1
    problems = _stage_quarantine(eng, tx, quarantine, tables)
    return counts, problems, new_files


def _checked_sql(table: CdmTable, extra: list[str]) -> str:
    """Typed columns, the content hash of the row as written, and the first rule the row breaks (if any)."""
    typed, rules = [], []
    for f in table.fields:
        name = _q(f.name)
        cast = name if f.type == "varchar" else f"TRY_CAST({name} AS {f.sql_type})"
        typed.append(f"{cast} AS {name}")
        if f.required:
            rules.append(f"WHEN {name} IS NULL THEN 'omop-required:{f.name}'")
        if f.type != "varchar":
            rules.append(f"WHEN {name} IS NOT NULL AND {cast} IS NULL THEN 'omop-type:{f.name}'")
    every = [*table.columns, *extra]
    content = ", ".join(f"coalesce({_q(c)}, chr(0))" for c in every)
    rule = f"CASE {' '.join(rules)} END" if rules else "CAST(NULL AS VARCHAR)"
    return f"""
        SELECT {FILE_INDEX}, {LINE}, {", ".join(typed)}{"".join(f", {_q(c)}" for c in extra)},
               md5(concat_ws(chr(31), {content})) AS cl_content_hash, {rule} AS cl_rule
        FROM staged_{table.name}"""


def _q(name: str) -> str:
    """A quoted column name: CDM columns include SQL keywords (``offset``)."""
    return '"' + name.replace('"', '""') + '"'


def _stage_quarantine(
    eng: Engine, tx: Transaction, rows: list[dict[str, Any]], tables: dict[str, CdmTable]
) -> list[dict[str, Any]]:
    """Quarantine rows (new ones only: a re-run does not repeat them) with the record as written; returns the
    first problems for the summary."""
    files = {r["file_index"]: r for r in eng.query("SELECT * FROM omop_files").to_pylist()}
    records: dict[tuple[int, int], str] = {}
    wanted = [r for r in rows if "record" not in r]
    for name in sorted({r["table"] for r in wanted}):
        keys = pa.table(
            {
                "file_index": pa.array([r["file_index"] for r in wanted if r["table"] == name], pa.int64()),
                "line": pa.array([r["line"] for r in wanted if r["table"] == name], pa.int64()),
            }
        )
        pq.write_table(keys, tx.staging / f"refused-{name}.parquet")
        eng.register_parquet(f"refused_{name}", [tx.staging / f"refused-{name}.parquet"])
        text = eng.query(f"""
            SELECT s.* FROM staged_{name} s
            JOIN refused_{name} r ON r.file_index = s.{FILE_INDEX} AND r.line = s.{LINE}""").to_pylist()
        for record in text:
            values = {k: v for k, v in record.items() if k not in (FILE_INDEX, LINE)}
            records[(record[FILE_INDEX], record[LINE])] = json.dumps(values, separators=(",", ":"))
    out = []
    for row in sorted(rows, key=lambda r: (r["file_index"], r["line"])):
        column = row["column"]
        template = RULE_TEXT[row["rule"]]
        if row["rule"] == "omop-field-count":
            message = f"{row['table']}: {row['message']}"
        else:
            field_type = next((f.type for f in tables[row["table"]].fields if f.name == column), "value")
            message = f"{row['table']}.{column} " + template.format(type=field_type)
        out.append(
            {
                "run_id": tx.run_id,
                "stage": STAGE,
                "source_file": files[row["file_index"]]["source_file"],
                "source_sha256": files[row["file_index"]]["source_sha256"],
                "line": row["line"],
                "entry_index": None,
                "byte_offset": None,
                "rule": row["rule"],
                "message": message,
                "record": row.get("record") or records.get((row["file_index"], row["line"])),
            }
        )
    from carelake.lake._quarantine import QUARANTINE_SCHEMA

    staged = tx.staging / "omop-quarantine.parquet"
    pq.write_table(pa.Table.from_pylist(out, schema=QUARANTINE_SCHEMA), staged)
    eng.register_parquet("omop_new_quarantine", [staged])
    files_out = eng.write_parquet(
        f"""
        SELECT q.* FROM omop_new_quarantine q WHERE NOT EXISTS (
            SELECT 1 FROM {QUARANTINE_TABLE} e
            WHERE e.source_file IS NOT DISTINCT FROM q.source_file
              AND e.source_sha256 IS NOT DISTINCT FROM q.source_sha256
              AND e.line IS NOT DISTINCT FROM q.line AND e.rule = q.rule AND e.message = q.message)
        ORDER BY q.source_file, q.line""",
        tx.staging / "out-quarantine",
    )
    tx.append(
        QUARANTINE_TABLE, layer="quarantine", files=files_out, rows=sum(pq.read_metadata(f).num_rows for f in files_out)
    )
    return [{k: r[k] for k in ("source_file", "line", "rule", "message")} for r in out[:20]]


def _to_fhir(eng: Engine, tx: Transaction, new_files: dict[str, list[Path]], version: str) -> dict[str, Any]:
    """The new clinical rows as FHIR resources, stored through the FHIR path in this same commit."""
    from carelake.sources.fhir._ingest import stage_records
    from carelake.sources.fhir._staging import StagingWriter
    from carelake.sources.omop._fhir import write_resources

    writer = StagingWriter(tx.staging / "fhir")
    for name, files in new_files.items():
        eng.register_parquet(f"new_omop_{name}", files)
    write_resources(eng, writer, set(new_files), version)
    writer.close()
    summary = stage_records(eng, tx, writer)
    return {k: summary[k] for k in ("read", "stored", "duplicates", "new_versions", "quarantined", "by_type")}
