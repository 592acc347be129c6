"""Run SQL-on-FHIR v2 views: over a lake's current resources, or over resources given in memory."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
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

_RUNTIME_ERROR = re.compile(re.escape(RUNTIME_ERROR_MARKER) + r"(.*?)(?:\s+SQLSTATE: \w+)?$")


def run_view(
    view: Mapping[str, Any],
    *,
    resources: Sequence[Mapping[str, Any]] | None = None,
    engine: str | Engine = "duckdb",
    lake: Lake | None = None,
) -> pa.Table:
    """Run a ViewDefinition and return its rows as an Arrow table.

    Give either ``resources`` (FHIR resources as dicts: handy for tests and small jobs; they are written
    to a temporary Parquet file and read by the engine) or ``lake`` (the view reads the lake's current
    ``resources``). ``engine`` is ``"duckdb"`` (default), ``"spark"``, or an engine to reuse with a lake.

    Examples:
        >>> view = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
        >>> run_view(view, resources=[{"resourceType": "Patient", "id": "p1"}]).to_pylist()
        [{'id': 'p1'}]
    """
    sql = compile_view(view)
    if (resources is None) == (lake is None):
        raise ConfigError("run_view needs exactly one of resources= or lake=", hint="pass lake=cl.open_lake(path)")
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
