"""Cohorts: who is in a study, from when, and what happened to them, defined in YAML and compiled to SQL.

    >>> import carelake.cohorts as cohorts
    >>> cohorts.shipped_tasks()
    ['diabetes-onset', 'readmission-30d']
    >>> result = cohorts.build_cohort("readmission-30d", lake=lake)   # doctest: +SKIP

See docs/cohorts.md for the schema and the two shipped task definitions.
"""

from carelake.cohorts._build import CohortResult, CompiledCohort, build_cohort, compile_cohort
from carelake.cohorts._definition import CohortDefinition, load_definition, shipped_tasks

__all__ = [
    "CohortDefinition",
    "CohortResult",
    "CompiledCohort",
    "build_cohort",
    "compile_cohort",
    "load_definition",
    "shipped_tasks",
]
