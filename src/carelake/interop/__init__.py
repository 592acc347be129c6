"""Interoperability: the lake as an OMOP CDM v5.4 database and as a MEDS dataset (docs/interop.md)."""

from __future__ import annotations
