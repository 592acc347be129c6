"""Interoperability: the lake as an OMOP CDM v5.4 database and as a MEDS dataset (docs/interop.md)."""

from carelake.interop._meds import MedsSummary, export_meds
from carelake.interop._omop import OmopExportSummary, export_omop

__all__ = ["MedsSummary", "OmopExportSummary", "export_meds", "export_omop"]
