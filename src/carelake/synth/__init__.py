"""Synthetic FHIR R4 populations with known ground truth, for the demo, tests and benchmarks.

``generate_fhir`` writes a Bulk Data export (one NDJSON file per resource type and a ``manifest.json``) plus
``ground_truth/*.parquet``: the true readmission and diabetes risks and outcomes, duplicate patient records
and every injected data-quality fault. See ``docs/synthetic-data.md`` for the models and their sources.

    >>> from carelake.synth import generate_fhir
    >>> generate_fhir("synthetic-export", patients=200, seed=7, faults=0.02, duplicates=0.03)  # doctest: +SKIP
"""

from carelake.synth._generate import SynthSummary, generate_fhir

__all__ = ["SynthSummary", "generate_fhir"]
