"""The SQL that checks and keys staged FHIR records, written once for every engine.

Input: ``staged_lines`` (one row per record: its JSON text and locator). Output of
``keyed_sql``: one row per record with the rule it breaks (NULL when it is a valid
resource) and, for valid ones, the extracted keys. carelake SQL is DuckDB SQL plus the
``cl_json_*`` functions of ``carelake.engine``.
"""

from __future__ import annotations

from carelake.sources.fhir._r4 import CLINICAL_TIME_PATHS, ID_PATTERN, PATIENT_ELEMENTS, r4_resource_types

# \z, not $: Java's $ (Spark) also matches before a final newline, RE2's $ (DuckDB) only at the end.
_ID = ID_PATTERN.pattern  # a FHIR id: 1 to 64 letters, digits, "-" and "."
ID_REGEX = rf"^{_ID}\z"
TYPE_ID_TAIL = rf"([A-Z][A-Za-z]+)/({_ID})(/_history/{_ID})?\z"
PLAIN_REFERENCE = rf"^[A-Z][A-Za-z]+/{_ID}\z"  # a literal reference with no version: Type/id
REFERENCE_REGEX = r'"reference"\s*:\s*"((?:[^"\\]|\\.)*)"'

_KIND_PATHS = ["$.resourceType", "$.id", "$.meta"]
_TIME_PATHS = sorted({p for paths in CLINICAL_TIME_PATHS.values() for p in paths})
_STRING_PATHS = [
    "$.resourceType",
    "$.id",
    "$.meta.versionId",
    "$.meta.lastUpdated",
    *[f"$.{e}.reference" for e in PATIENT_ELEMENTS],
    *[f"$.{p}" for p in _TIME_PATHS],
]


def _v(path: str) -> str:
    """The extracted string at a path (DuckDB lists are 1-based)."""
    return f"vals[{_STRING_PATHS.index(path) + 1}]"


def _fhir_time(expr: str) -> str:
    """A FHIR date/dateTime/instant as UTC, at the start of a partial date's precision."""
    return f"cl_fhir_time({expr})"


def _patient_id(reference: str) -> str:
    """The patient id in a reference to a Patient (literal, absolute or versioned), else NULL.

    A plain ``Patient/id`` is cut instead of extracted: on DuckDB 2.0 the capture group took 0.5 s on 2,000
    patients' references, the match alone 0.06 s."""
    pattern = rf"^(https?://\S+/)?Patient/({_ID})(/_history/{_ID})?\z"
    plain = rf"^Patient/{_ID}\z"
    return (
        f"CASE WHEN regexp_matches({reference}, '{plain}') THEN substr({reference}, 9) "
        f"ELSE nullif(regexp_extract({reference}, '{pattern}', 2), '') END"
    )


def _sql_list(values: list[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def keyed_sql() -> str:
    """Check every staged record against ingestion's rules and extract keys from the valid ones."""
    types = _sql_list(sorted(r4_resource_types()))
    time_cases = " ".join(
        f"WHEN '{rtype}' THEN coalesce({', '.join(_v('$.' + p) for p in paths)})"
        if len(paths) > 1
        else f"WHEN '{rtype}' THEN {_v('$.' + paths[0])}"
        for rtype, paths in CLINICAL_TIME_PATHS.items()
    )
    patient_refs = ", ".join(_patient_id(_v(f"$.{e}.reference")) for e in PATIENT_ELEMENTS)
    return f"""
    WITH trimmed AS (
        -- Not rtrim(text, chr(13) || chr(10)): on DuckDB 2.0 that took 1.0 s of this query's 3.9 s on 2,000
        -- patients, and this 0.1 s, with the same result.
        SELECT seq, assigned_id, regexp_replace(text, '[\\r\\n]+\\z', '') AS txt FROM staged_lines),
    parsed AS (
        SELECT seq, assigned_id, txt, ok, CASE WHEN ok THEN txt END AS doc
        FROM (SELECT seq, assigned_id, txt, cl_json_valid(txt) AS ok FROM trimmed) AS v),
    extracted AS (
        -- doc is NULL where the text is not JSON, which the JSON functions cannot read. Reading doc rather than
        -- "CASE WHEN ok THEN ... END" lets Spark parse a record once for all the paths: it computes a
        -- repeated expression once, but not inside a CASE branch (44 parses a record: 350 s at 10,000 patients).
        SELECT seq, assigned_id, txt, ok,
               cl_json_kinds(doc, [{_sql_list(_KIND_PATHS)}]) AS kinds,
               cl_json_strings(doc, [{_sql_list(_STRING_PATHS)}]) AS vals
        FROM parsed),
    checked AS (
        SELECT seq, assigned_id, vals, txt, CASE
            WHEN regexp_matches(txt, '^\\s*\\z') THEN 'blank-line'
            WHEN NOT ok THEN 'invalid-json'
            WHEN NOT regexp_matches(txt, '^\\s*[{{]') THEN 'not-an-object'
            WHEN kinds[1] IS NULL THEN 'missing-resourceType'
            WHEN kinds[1] <> 'string' THEN 'invalid-resourceType'
            WHEN vals[1] NOT IN ({types}) THEN 'unknown-resourceType'
            WHEN kinds[3] IS NOT NULL AND kinds[3] NOT IN ('object', 'null') THEN 'invalid-meta'
            WHEN kinds[2] IS NULL AND assigned_id IS NULL THEN 'missing-id'
            WHEN kinds[2] IS NOT NULL AND (kinds[2] <> 'string' OR NOT regexp_matches(vals[2], '{ID_REGEX}'))
                THEN 'invalid-id'
        END AS rule
        FROM extracted),
    keys AS (
        SELECT seq, rule, txt,
               CASE WHEN rule IS NULL THEN vals[1] END AS resource_type,
               CASE WHEN rule IS NULL THEN coalesce(vals[2], assigned_id) END AS id,
               CASE WHEN rule IS NULL THEN vals[3] END AS meta_version_id,
               CASE WHEN rule IS NULL THEN vals[4] END AS last_updated_raw,
               CASE WHEN rule IS NULL THEN
                   CASE WHEN vals[1] = 'Patient' THEN coalesce(vals[2], assigned_id) ELSE coalesce({patient_refs}) END
               END AS patient_id,
               CASE WHEN rule IS NULL THEN CASE vals[1] {time_cases} END END AS clinical_time_raw
        FROM checked)
    SELECT seq, rule, resource_type, id, meta_version_id, patient_id, clinical_time_raw,
           {_fhir_time("clinical_time_raw")} AS clinical_time,
           {_fhir_time("last_updated_raw")} AS last_updated,
           CASE WHEN rule IS NULL THEN md5(txt) END AS content_hash,
           CASE WHEN rule IS NULL THEN txt END AS resource,
           CASE WHEN rule IS NULL THEN regexp_extract_all(txt, '{REFERENCE_REGEX}', 1) END AS refs,
           CASE WHEN rule IS NULL THEN cl_json_identifiers(txt) END AS idents
    FROM keys
    """


def references_sql(fresh: str) -> str:
    """Every reference in the records of ``fresh`` (resource_type, id, version, refs), classified."""
    return f"""
    WITH refs AS (
        -- A plain Type/id is split where it stands; the rest are classified once each, as exports repeat them.
        -- (Classifying every distinct one and joining back took 0.74 s on 2,000 patients; this takes 0.43 s.)
        SELECT f.resource_type, f.id, f.version, u.reference,
               regexp_matches(u.reference, '{PLAIN_REFERENCE}') AS plain
        FROM {fresh} f, unnest(f.refs) AS u(reference)),
    distinct_refs AS (SELECT DISTINCT reference FROM refs WHERE NOT plain),
    kinds AS (
        SELECT reference, CASE
            WHEN starts_with(reference, '#') THEN 'contained'
            WHEN starts_with(reference, 'urn:uuid:') OR starts_with(reference, 'urn:oid:') THEN 'urn'
            WHEN contains(reference, '?') THEN 'conditional'
            WHEN regexp_matches(reference, '^{TYPE_ID_TAIL}') THEN 'literal'
            WHEN regexp_matches(reference, '^https?://\\S+/{TYPE_ID_TAIL}') THEN 'absolute'
            ELSE 'other' END AS kind,
            nullif(regexp_extract(reference, '[?&]identifier=([^&]*)', 1), '') AS ident
        FROM distinct_refs),
    classified AS (
        SELECT reference, kind,
           CASE WHEN kind = 'conditional' THEN nullif(split_part(reference, '?', 1), '')
                WHEN kind IN ('literal', 'absolute') THEN regexp_extract(reference, '{TYPE_ID_TAIL}', 1)
           END AS target_type,
           CASE WHEN kind IN ('literal', 'absolute') THEN regexp_extract(reference, '{TYPE_ID_TAIL}', 2)
           END AS target_id,
           CASE WHEN kind = 'conditional' AND contains(ident, '|') THEN nullif(split_part(ident, '|', 1), '')
           END AS identifier_system,
           CASE WHEN kind = 'conditional' AND contains(ident, '|') THEN split_part(ident, '|', 2)
                WHEN kind = 'conditional' THEN ident END AS identifier_value
        FROM kinds)
    SELECT r.resource_type, r.id, r.version, r.reference,
           CASE WHEN r.plain THEN 'literal' ELSE c.kind END AS kind,
           CASE WHEN r.plain THEN split_part(r.reference, '/', 1) ELSE c.target_type END AS target_type,
           CASE WHEN r.plain THEN split_part(r.reference, '/', 2) ELSE c.target_id END AS target_id,
           c.identifier_system, c.identifier_value
    FROM refs r LEFT JOIN classified c ON c.reference = r.reference AND NOT r.plain
    """


def identifiers_sql(fresh: str) -> str:
    """The top-level identifiers (resource_type, id, version, idents) of the records of ``fresh``."""
    return f"""
    SELECT f.resource_type, f.id, f.version, u.ident.system AS system, u.ident.value AS value
    FROM {fresh} f, unnest(f.idents) AS u(ident)
    WHERE u.ident.value IS NOT NULL
    """
