"""carelake: trustworthy, de-identified, analysis-ready health data on DuckDB or Spark.

    >>> import carelake as cl
    >>> lake = cl.open_lake("my-lake")                      # doctest: +SKIP
    >>> cl.ingest_fhir(["export/"], lake=lake).stored       # doctest: +SKIP

Public names are loaded lazily so that ``import carelake`` and ``carelake --help`` stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from carelake._version import __version__
from carelake.errors import (
    CarelakeError,
    ConfigError,
    EngineError,
    InputError,
    LakeBusyError,
    LakeError,
    MissingDependencyError,
    QueryError,
    StrictModeError,
)

if TYPE_CHECKING:
    from carelake.engine import DuckDBEngine, Engine, make_engine
    from carelake.fhir import ViewDefinitionError, compile_view, run_view
    from carelake.lake import Lake, open_lake
    from carelake.sources.fhir import IngestSummary, ingest_fhir
    from carelake.sources.omop import OmopIngestSummary, ingest_omop
    from carelake.synth import SynthSummary, generate_fhir

_LAZY = {
    "DuckDBEngine": "carelake.engine",
    "Engine": "carelake.engine",
    "make_engine": "carelake.engine",
    "Lake": "carelake.lake",
    "open_lake": "carelake.lake",
    "IngestSummary": "carelake.sources.fhir",
    "ingest_fhir": "carelake.sources.fhir",
    "OmopIngestSummary": "carelake.sources.omop",
    "ingest_omop": "carelake.sources.omop",
    "SynthSummary": "carelake.synth",
    "ViewDefinitionError": "carelake.fhir",
    "compile_view": "carelake.fhir",
    "run_view": "carelake.fhir",
    "generate_fhir": "carelake.synth",
}

__all__ = [
    "CarelakeError",
    "ConfigError",
    "DuckDBEngine",
    "Engine",
    "EngineError",
    "IngestSummary",
    "InputError",
    "Lake",
    "LakeBusyError",
    "LakeError",
    "MissingDependencyError",
    "OmopIngestSummary",
    "QueryError",
    "StrictModeError",
    "SynthSummary",
    "ViewDefinitionError",
    "__version__",
    "compile_view",
    "generate_fhir",
    "ingest_fhir",
    "ingest_omop",
    "make_engine",
    "open_lake",
    "run_view",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'carelake' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
