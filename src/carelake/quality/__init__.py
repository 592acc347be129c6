"""Data quality: a FHIR-native check suite in the Kahn framework, at OHDSI DataQualityDashboard depth.

    >>> import carelake as cl
    >>> from carelake.quality import run_quality
    >>> run = run_quality(cl.open_lake("my-lake"))          # doctest: +SKIP
    >>> run.failed, run.fatal_failures                      # doctest: +SKIP

Check types live in ``check_types.toml`` (one SQL template each) and their instances in the FHIR model and
the tables beside it; see docs/quality.md.
"""

from carelake.quality._catalog import Check, CheckType, build_checks, check_types
from carelake.quality._run import RESULTS_TABLE, VIOLATIONS_TABLE, QualityRun, run_quality

__all__ = [
    "RESULTS_TABLE",
    "VIOLATIONS_TABLE",
    "Check",
    "CheckType",
    "QualityRun",
    "build_checks",
    "check_types",
    "run_quality",
]
