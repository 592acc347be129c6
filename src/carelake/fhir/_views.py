"""Run SQL-on-FHIR v2 views: over a lake's current resources, or over resources given in memory."""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from carelake.errors import ConfigError, QueryError
from carelake.fhir._compile import compile_view
from carelake.fhir._errors import ViewDefinitionError
from carelake.fhir._expressions import RUNTIME_ERROR_MARKER

if TYPE_CHECKING:
    import pyarrow as pa

    from carelake.engine import Engine
    from carelake.lake import Lake
    from carelake.sources.fhir import IngestSummary

log = logging.getLogger("carelake.views")
_RUNTIME_ERROR = re.compile(re.escape(RUNTIME_ERROR_MARKER) + r"(.*?)(?:\s+SQLSTATE: \w+)?$")


def run_view(
    view: Mapping[str, Any],
    *,
    source: str | Path | Sequence[str | Path] | None = None,
    resources: Sequence[Mapping[str, Any]] | None = None,
    engine: str | Engine = "duckdb",
    lake: Lake | None = None,
) -> pa.Table:
    """Run a ViewDefinition and return its rows as an Arrow table.

    Give exactly one of ``lake`` (the view reads the lake's current ``resources``), ``source`` (FHIR
    files or folders, read by the same ingestion as ``ingest_fhir`` into a scratch lake that is deleted
    afterwards; quarantined records are logged) or ``resources`` (FHIR resources as dicts: handy for tests
    and notebooks). ``engine`` is ``"duckdb"`` (default), ``"spark"``, or an engine to reuse with a lake.

    Examples:
        >>> view = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
        >>> run_view(view, resources=[{"resourceType": "Patient", "id": "p1"}]).to_pylist()
        [{'id': 'p1'}]
    """
    sql = compile_view(view)
    if sum(given is not None for given in (source, resources, lake)) != 1:
        raise ConfigError(
            "run_view needs exactly one of lake=, source= or resources=", hint="pass lake=cl.open_lake(path)"
        )
    if source is not None:
        if not isinstance(engine, str):
            raise ConfigError("with source=, engine must be a name", hint='use engine="duckdb" or engine="spark"')
        with scratch_lake(source, engine=engine) as (scratch, summary):
            if summary.quarantined:
                log.warning("%d record(s) of the source were quarantined and are not in the view", summary.quarantined)
            return run_view(view, lake=scratch, engine=engine)
    if lake is not None:
        eng = lake.connect(engine)
        try:
            return _query(eng, sql)
        finally:
            if isinstance(engine, str):
                eng.close()
    if not isinstance(engine, str):
        raise ConfigError("with resources=, engine must be a name", hint='use engine="duckdb" or engine="spark"')
    assert resources is not None
    return _run_on_resources(sql, resources, engine)


@contextmanager
def scratch_lake(
    source: str | Path | Sequence[str | Path], *, engine: str = "duckdb"
) -> Iterator[tuple[Lake, IngestSummary]]:
    """FHIR files or folders ingested into a temporary lake, deleted on exit: views without a lake."""
    from carelake.lake import open_lake
    from carelake.sources.fhir import ingest_fhir

    paths = [source] if isinstance(source, str | Path) else list(source)
    with tempfile.TemporaryDirectory(prefix="carelake-view-") as folder:
        lake = open_lake(Path(folder) / "lake")
        summary = ingest_fhir(paths, lake=lake, engine=engine, keep_raw=False)
        yield lake, summary


def _run_on_resources(sql: str, resources: Sequence[Mapping[str, Any]], engine: str) -> pa.Table:
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    from carelake.engine import make_engine

    types, ids, texts = [], [], []
    for i, resource in enumerate(resources):
        if not isinstance(resource, Mapping) or not isinstance(resource.get("resourceType"), str):
            raise ConfigError(f"resources[{i}] is not a FHIR resource: it needs a resourceType")
        types.append(resource["resourceType"])
        ids.append(resource["id"] if isinstance(resource.get("id"), str) else None)
        texts.append(orjson.dumps(resource).decode())
    table = pa.table(
        {"resource_type": pa.array(types, pa.string()), "id": pa.array(ids, pa.string()), "resource": texts},
        schema=pa.schema([("resource_type", pa.string()), ("id", pa.string()), ("resource", pa.string())]),
    )
    with tempfile.TemporaryDirectory(prefix="carelake-view-") as folder:
        path = Path(folder) / "resources.parquet"
        pq.write_table(table, path)
        eng = make_engine(engine)
        try:
            eng.register_parquet("resources", [path])
            return _query(eng, sql)
        finally:
            eng.close()


def _nullable(type_: pa.DataType) -> pa.DataType:
    import pyarrow as pa

    if pa.types.is_list(type_):
        return pa.list_(_nullable(type_.value_type))
    return type_


def _query(eng: Engine, sql: str) -> pa.Table:
    """Run the compiled view; every column nullable, as on every engine, and run-time view errors named."""
    import pyarrow as pa

    try:
        table = eng.query(sql)
    except QueryError as exc:
        text = " ".join(str(exc).split())
        match = _RUNTIME_ERROR.search(text)
        if match:
            raise ViewDefinitionError(match.group(1)) from exc
        raise
    schema = pa.schema([pa.field(f.name, _nullable(f.type)) for f in table.schema])
    return table if schema == table.schema else table.cast(schema)
