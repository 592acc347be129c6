"""Views: flat, analysis-ready tables from FHIR, defined as SQL-on-FHIR v2 ViewDefinitions.

    >>> import carelake.views as views
    >>> patients = {"resource": "Patient", "select": [{"column": [{"name": "id", "path": "getResourceKey()"}]}]}
    >>> views.run(patients, resources=[{"resourceType": "Patient", "id": "p1"}]).to_pylist()
    [{'id': 'p1'}]
    >>> sorted(v["name"] for v in views.standard())[:3]
    ['allergies', 'conditions', 'documents']

``run(view, lake=… | source=… | resources=…, engine=…)`` returns an Arrow table, ``sql(view)`` the query
a view compiles to, ``materialize(views, lake=…)`` writes silver tables, ``standard()`` is the view library
shipped with carelake and ``load(paths)`` reads ViewDefinition files. The compiler lives in
:mod:`carelake.fhir`; see docs/views.md.
"""

from __future__ import annotations

from carelake.fhir import ViewDefinitionError
from carelake.fhir import compile_view as sql
from carelake.fhir import load_views as load
from carelake.fhir import materialize_views as materialize
from carelake.fhir import run_view as run
from carelake.fhir import standard_views as standard

__all__ = ["ViewDefinitionError", "load", "materialize", "run", "sql", "standard"]
