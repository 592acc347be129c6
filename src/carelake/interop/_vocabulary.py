"""The OMOP vocabulary an export maps codes with: a user's Athena download, or the lake's own CONCEPT tables.

``register_vocabulary`` defines, on an engine, the lookups the export's SQL joins: (vocabulary_id, concept_code)
to the source concept and, through 'Maps to', its standard concept; each concept's domain.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from carelake.errors import InputError
from carelake.interop._ids import integer_sql
from carelake.progress import Progress

if TYPE_CHECKING:
    from carelake.engine import Engine
    from carelake.lake import Lake

# The vocabulary files the export reads, and the columns it needs from each.
VOCAB_COLUMNS = {
    "concept": ("concept_id", "concept_code", "vocabulary_id", "standard_concept", "domain_id", "invalid_reason"),
    "concept_relationship": ("concept_id_1", "concept_id_2", "relationship_id", "invalid_reason"),
    "vocabulary": ("vocabulary_id", "vocabulary_version"),
}


def register_vocabulary(eng: Engine, lake: Lake, vocab: Path | None, staging: Path, progress: Progress) -> str | None:
    """Define ``cl_omop_lookup`` (vocabulary_id, concept_code -> source and standard concept), ``cl_omop_domains``
    and ``cl_omop_vocabularies``; return where the concepts came from (None: nowhere, every lookup gives 0)."""
    names = {
        "concept": "cl_omop_vocab_concept",
        "concept_relationship": "cl_omop_vocab_relationship",
        "vocabulary": "cl_omop_vocab_vocabulary",
    }
    bronze = lake.catalog.tables
    if vocab is not None:
        progress.start("OMOP: reading the vocabulary", None)
        found = _read_vocabulary(vocab, staging / "vocabulary")
        if "concept" not in found:
            raise InputError(
                f"{vocab} holds no CONCEPT table", hint="pass the folder of an Athena download (CONCEPT.csv, ...)"
            )
        for name, files in found.items():
            eng.register_parquet(names[name], files)
        where: str | None = str(vocab)
    elif "omop_concept" in bronze:
        found = {n: [] for n in VOCAB_COLUMNS if f"omop_{n}" in bronze}
        for name in found:
            columns = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in VOCAB_COLUMNS[name])
            eng.create_view(names[name], f"SELECT {columns} FROM omop_{name}")
        where = "lake"
    else:
        found, where = {}, None
    for name, view in names.items():
        if name not in found:
            columns = ", ".join(f"CAST(NULL AS VARCHAR) AS {c}" for c in VOCAB_COLUMNS[name])
            eng.create_view(view, f"SELECT {columns} WHERE FALSE")
    concept = f"""
        SELECT {integer_sql("concept_id")} AS concept_id, vocabulary_id, concept_code, standard_concept, domain_id,
               coalesce(invalid_reason, '') AS invalid_reason
        FROM cl_omop_vocab_concept"""
    lookup = f"""
        SELECT c.vocabulary_id, c.concept_code, c.concept_id AS source_concept_id,
               CASE WHEN c.standard_concept = 'S' THEN c.concept_id ELSE coalesce(m.target_id, 0) END AS concept_id
        FROM (SELECT *, row_number() OVER (PARTITION BY vocabulary_id, concept_code
                  ORDER BY invalid_reason, CASE WHEN standard_concept = 'S' THEN 0 ELSE 1 END, concept_id) AS k
              FROM ({concept}) x WHERE concept_id IS NOT NULL) c
        LEFT JOIN (SELECT {integer_sql("concept_id_1")} AS source_id, min({integer_sql("concept_id_2")}) AS target_id
                   FROM cl_omop_vocab_relationship
                   WHERE relationship_id = 'Maps to' AND coalesce(invalid_reason, '') = ''
                   GROUP BY {integer_sql("concept_id_1")}) m ON m.source_id = c.concept_id
        WHERE c.k = 1"""
    eng.register_parquet("cl_omop_lookup", eng.write_parquet(lookup, staging / "lookup"))
    domains = f"SELECT concept_id, min(domain_id) AS domain_id FROM ({concept}) c GROUP BY concept_id"
    eng.register_parquet("cl_omop_domains", eng.write_parquet(domains, staging / "domains"))
    return where


def _read_vocabulary(folder: Path, staging: Path) -> dict[str, list[Path]]:
    """The folder's CONCEPT, CONCEPT_RELATIONSHIP and VOCABULARY tables as text Parquet, streamed by the same
    reader as OMOP ingestion (CSV or Athena's TSV, gzipped or not, or Parquet; any case)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from carelake.sources.omop._read import BadRow, discover, header, read_rows

    def refuse(row: BadRow) -> None:
        raise InputError(f"{source.name}:{row.line}: {row.message}", hint="repair the vocabulary file")

    found: dict[str, list[Path]] = {}
    try:
        sources, _ = discover(folder, set(VOCAB_COLUMNS))
    except InputError:
        return found  # no vocabulary table at all: the caller names what is missing
    for source in sources:
        if source.kind == "duckdb":
            continue
        wanted = VOCAB_COLUMNS[source.table]
        columns = header(source)
        missing = [c for c in wanted if c not in columns and c not in ("invalid_reason", "vocabulary_version")]
        if missing:
            raise InputError(
                f"{source.name}:1: the header lacks the column(s) {', '.join(missing)}",
                hint="vocabulary files need the OMOP CDM column names (an Athena download has them)",
            )
        target = staging / f"{source.table}-{len(found.get(source.table, []))}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        schema = pa.schema([(c, pa.string()) for c in wanted])
        with pq.ParquetWriter(target, schema, compression="zstd") as writer:
            for batch in read_rows(source, columns, refuse, lambda n: None):
                arrays = [batch.column(c) if c in columns else pa.nulls(batch.num_rows, pa.string()) for c in wanted]
                writer.write_batch(pa.record_batch(arrays, schema=schema))
        found.setdefault(source.table, []).append(target)
    return found


def vocabulary_version(eng: Engine) -> str:
    version = eng.query(
        "SELECT min(vocabulary_version) AS v FROM cl_omop_vocab_vocabulary WHERE vocabulary_id = 'None'"
    ).column("v")[0]
    return version.as_py() or ""
