"""The bronze FHIR tables and views: their schemas live here and nowhere else."""

from __future__ import annotations

import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

RESOURCES_TABLE = "fhir_resources"
SUPERSEDED_TABLE = "fhir_superseded"
REFERENCES_TABLE = "fhir_references"
IDENTIFIERS_TABLE = "fhir_identifiers"

_LOCATOR = [
    pa.field("source_file", pa.string()),
    pa.field("source_sha256", pa.string()),
    pa.field("line", pa.int64()),
    pa.field("entry_index", pa.int64()),
    pa.field("byte_offset", pa.int64()),
]

# What reading writes to staging: each record's JSON text and where it was found.
STAGED_LINES = pa.schema(
    [
        pa.field("seq", pa.int64()),
        pa.field("file_index", pa.int64()),
        pa.field("line", pa.int64()),
        pa.field("entry_index", pa.int64()),
        pa.field("byte_offset", pa.int64()),
        pa.field("text", pa.string()),
        pa.field("assigned_id", pa.string()),
    ]
)
STAGED_FILES = pa.schema(
    [pa.field("file_index", pa.int64()), pa.field("source_file", pa.string()), pa.field("source_sha256", pa.string())]
)
STAGED_QUARANTINE = pa.schema(
    [
        pa.field("seq", pa.int64()),
        pa.field("file_index", pa.int64()),
        pa.field("line", pa.int64()),
        pa.field("entry_index", pa.int64()),
        pa.field("byte_offset", pa.int64()),
        pa.field("rule", pa.string()),
        pa.field("message", pa.string()),
        pa.field("record", pa.string()),
    ]
)

_KEY = [pa.field("resource_type", pa.string()), pa.field("id", pa.string()), pa.field("version", pa.int64())]

BRONZE_SCHEMAS: dict[str, pa.Schema] = {
    RESOURCES_TABLE: pa.schema(
        [
            *_KEY,
            pa.field("meta_version_id", pa.string()),
            pa.field("patient_id", pa.string()),
            pa.field("clinical_time_raw", pa.string()),
            pa.field("clinical_time", TS),
            pa.field("last_updated", TS),
            pa.field("content_hash", pa.string()),
            pa.field("resource", pa.string()),
            *_LOCATOR,
            pa.field("run_id", pa.string()),
            pa.field("ingested_at", TS),
        ]
    ),
    SUPERSEDED_TABLE: pa.schema([*_KEY, pa.field("run_id", pa.string())]),
    REFERENCES_TABLE: pa.schema(
        [
            *_KEY,
            *[pa.field(n, pa.string()) for n in ("reference", "kind", "target_type", "target_id")],
            *[pa.field(n, pa.string()) for n in ("identifier_system", "identifier_value")],
            pa.field("run_id", pa.string()),
        ]
    ),
    IDENTIFIERS_TABLE: pa.schema(
        [*_KEY, pa.field("system", pa.string()), pa.field("value", pa.string()), pa.field("run_id", pa.string())]
    ),
}

# Every version ever ingested is kept; ``resources`` shows the latest of each (type, id).
RESOURCES_VIEW_SQL = (
    f"SELECT r.* FROM {RESOURCES_TABLE} r WHERE NOT EXISTS (SELECT 1 FROM {SUPERSEDED_TABLE} s "
    "WHERE s.resource_type = r.resource_type AND s.id = r.id AND s.version = r.version)"
)

# References with their target: literal ones as written, conditional ones through identifiers. Whether a target
# exists is decided for each distinct target once, not by joining every reference to every resource: exports
# reference a few million distinct targets against tens of millions of references and resources, and the smaller
# joins stay within DuckDB's memory limit where the direct one ran out (100,000 patients, 1 GB).
REFERENCE_TARGETS_VIEW_SQL = f"""
WITH refs AS (
    SELECT r.resource_type, r.id, r.version, r.reference, r.kind, r.target_type,
           CASE WHEN r.kind = 'conditional' THEN m.id ELSE r.target_id END AS target_id
    FROM {REFERENCES_TABLE} r
    LEFT JOIN (SELECT resource_type, system, value, min(id) AS id FROM {IDENTIFIERS_TABLE} GROUP BY 1, 2, 3) m
      ON r.kind = 'conditional' AND m.resource_type = r.target_type
     AND m.value = r.identifier_value AND (r.identifier_system IS NULL OR m.system = r.identifier_system)
    WHERE r.kind IN ('literal', 'absolute', 'conditional')),
targets AS (SELECT DISTINCT target_type, target_id FROM refs WHERE target_id IS NOT NULL),
found AS (
    SELECT DISTINCT t.target_type, t.target_id
    FROM targets t JOIN {RESOURCES_TABLE} x ON x.resource_type = t.target_type AND x.id = t.target_id)
SELECT refs.resource_type, refs.id, refs.version, refs.reference, refs.kind, refs.target_type, refs.target_id,
       f.target_id IS NOT NULL AS resolved
FROM refs LEFT JOIN found f ON f.target_type = refs.target_type AND f.target_id = refs.target_id
"""


def type_view_sql(resource_type: str) -> str:
    """The per-type view: current resources of one type."""
    return f"SELECT * FROM resources WHERE resource_type = '{resource_type}'"
