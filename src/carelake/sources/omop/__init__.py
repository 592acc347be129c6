"""OMOP CDM 5.3 and 5.4 sources: tables into bronze, clinical rows into FHIR (docs/interop.md)."""

from carelake.sources.omop._cdm import VERSIONS, CdmTable, cdm_tables
from carelake.sources.omop._ingest import OmopIngestSummary, ingest_omop

__all__ = ["VERSIONS", "CdmTable", "OmopIngestSummary", "cdm_tables", "ingest_omop"]
