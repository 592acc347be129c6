"""FHIR R4 ingestion: NDJSON, JSON resources, Bundles and Bulk Data manifests into bronze tables."""

from carelake.sources.fhir._ingest import IngestSummary, ingest_fhir
from carelake.sources.fhir._tables import (
    BRONZE_SCHEMAS,
    IDENTIFIERS_TABLE,
    REFERENCES_TABLE,
    RESOURCES_TABLE,
    SUPERSEDED_TABLE,
)

__all__ = [
    "BRONZE_SCHEMAS",
    "IDENTIFIERS_TABLE",
    "REFERENCES_TABLE",
    "RESOURCES_TABLE",
    "SUPERSEDED_TABLE",
    "IngestSummary",
    "ingest_fhir",
]
