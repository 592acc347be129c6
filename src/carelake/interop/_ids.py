"""Integer person ids for the exports: OMOP and MEDS both key subjects by a 64-bit integer, the lake by text.

A patient that came from an OMOP CDM keeps its ``person_id`` (in its resource id, ``omop-person-6``); every other
patient is
numbered after the largest of those, in patient-id order. The numbering is a pure function of the lake's patients,
so DuckDB and Spark, and the OMOP and MEDS exports of the same lake, agree on it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:
    from carelake.engine import Engine

VIEWS = Path(__file__).with_name("views")
PERSON_IDS = "cl_person_ids"


def integer_sql(text: str) -> str:
    """A text column holding an integer (an OMOP id or concept id) as BIGINT; NULL when it holds anything else."""
    return f"(CASE WHEN regexp_matches({text}, '^[0-9]{{1,18}}\\z') THEN CAST({text} AS BIGINT) END)"


def load_view(name: str) -> dict[str, object]:
    """One of the export ViewDefinitions shipped in ``interop/views``."""
    return orjson.loads((VIEWS / f"{name}.json").read_bytes())


def register_person_ids(eng: Engine) -> None:
    """Define ``cl_person_ids(patient_id, person_id)`` on an engine connected to a lake."""
    from carelake.fhir import compile_view
    from carelake.sources.omop._fhir import omop_id_sql

    eng.create_view(
        "cl_patient_identifiers",
        f"SELECT patient_id, {omop_id_sql('patient_id', 'person')} AS omop_person_id "
        f"FROM ({compile_view(load_view('person_ids'))}) p",
    )
    eng.create_view(
        PERSON_IDS,
        f"""
        WITH known AS (
            SELECT patient_id,
                   {integer_sql("omop_person_id")} AS omop_id
            FROM cl_patient_identifiers),
        top AS (SELECT coalesce(max(omop_id), 0) AS top_id FROM known)
        SELECT k.patient_id,
               CAST(coalesce(k.omop_id, t.top_id + dense_rank() OVER (
                   PARTITION BY k.omop_id IS NULL ORDER BY k.patient_id)) AS BIGINT) AS person_id
        FROM known k CROSS JOIN top t
        """,
    )
