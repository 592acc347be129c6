"""FHIR knowledge: SQL-on-FHIR v2 views compiled from FHIRPath to SQL, run on DuckDB or Spark.

    >>> import carelake.fhir as fhir
    >>> view = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "id"}]}]}
    >>> fhir.run_view(view, resources=[{"resourceType": "Patient", "id": "p1"}]).to_pylist()
    [{'id': 'p1'}]

See docs/views.md for what a view may contain and the conformance figures per engine.
"""

from carelake.fhir._compile import compile_view
from carelake.fhir._errors import ViewDefinitionError
from carelake.fhir._materialize import load_views, materialize_views, standard_views
from carelake.fhir._views import run_view

__all__ = ["ViewDefinitionError", "compile_view", "load_views", "materialize_views", "run_view", "standard_views"]
