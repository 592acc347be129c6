"""Where generated data goes: one NDJSON file per resource type, the $export manifest, and ground-truth Parquet.

Files are appended to chunk by chunk as patients finish, so memory stays flat however many patients a run
makes. Parquet row groups are cut at fixed row counts, which keeps the bytes identical for identical input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

RESOURCE_ORDER = (
    "Patient",
    "Organization",
    "Practitioner",
    "Location",
    "Encounter",
    "Condition",
    "Observation",
    "MedicationRequest",
    "Procedure",
    "Immunization",
    "AllergyIntolerance",
    "FamilyMemberHistory",
    "CarePlan",
    "ServiceRequest",
    "DocumentReference",
    "Consent",
)
MANIFEST = "manifest.json"
GROUND_TRUTH = "ground_truth"
MANIFEST_EXTENSION = "carelake-synth"

_TIMESTAMP = pa.timestamp("s", tz="UTC")
TRUTH_SCHEMAS: dict[str, pa.Schema] = {
    "patients": pa.schema(
        [
            ("patient_id", pa.string()),
            ("duplicate_patient_id", pa.string()),
            ("birth_date", pa.date32()),
            ("sex", pa.string()),
            ("race", pa.string()),
            ("ethnicity", pa.string()),
            ("entry_date", pa.date32()),
            ("deceased_date", pa.date32()),
            ("height_cm", pa.float64()),
            ("bmi_at_entry", pa.float64()),
            ("family_history_diabetes", pa.bool_()),
            ("smoking_at_end", pa.string()),
            ("activity_min_week", pa.float64()),
            ("deprivation", pa.float64()),
            ("housing_instability_ever", pa.bool_()),
            ("food_insecurity_ever", pa.bool_()),
            ("transport_barrier_ever", pa.bool_()),
            ("charlson_at_end", pa.int32()),
            ("conditions_at_end", pa.string()),
            ("diabetes_prevalent", pa.bool_()),
            ("diabetes_onset_date", pa.date32()),
            ("diabetes_5y_probability", pa.float64()),
            ("admissions", pa.int32()),
            ("ed_visits", pa.int32()),
            ("research_opt_out", pa.bool_()),
        ]
    ),
    "readmissions": pa.schema(
        [
            ("encounter_id", pa.string()),
            ("patient_id", pa.string()),
            ("subject_id", pa.string()),
            ("admit_time", _TIMESTAMP),
            ("discharge_time", _TIMESTAMP),
            ("reason", pa.string()),
            ("elective", pa.bool_()),
            ("age", pa.float64()),
            ("charlson", pa.int32()),
            ("prior_admissions_12m", pa.int32()),
            ("ed_visits_6m", pa.int32()),
            ("length_of_stay_days", pa.int32()),
            ("discharge_disposition", pa.string()),
            ("active_medications", pa.int32()),
            ("polypharmacy", pa.bool_()),
            ("housing_instability", pa.bool_()),
            ("food_insecurity", pa.bool_()),
            ("transport_barrier", pa.bool_()),
            ("linear_predictor", pa.float64()),
            ("probability", pa.float64()),
            ("eligible", pa.bool_()),
            ("exclusion", pa.string()),
            ("outcome", pa.int8()),
            ("readmission_encounter_id", pa.string()),
            ("readmission_time", _TIMESTAMP),
            ("days_to_readmission", pa.int32()),
        ]
    ),
    "diabetes": pa.schema(
        [
            ("patient_id", pa.string()),
            ("encounter_id", pa.string()),
            ("index_date", pa.date32()),
            ("age", pa.float64()),
            ("bmi", pa.float64()),
            ("family_history", pa.bool_()),
            ("hypertension", pa.bool_()),
            ("fasting_glucose_latent", pa.float64()),
            ("glucose_trend_per_year", pa.float64()),
            ("activity_min_week", pa.float64()),
            ("ethnicity_group", pa.string()),
            ("hazard_index_year", pa.float64()),
            ("probability_5y", pa.float64()),
            ("horizon_end", pa.date32()),
            ("outcome_5y", pa.int8()),
            ("followup_complete", pa.bool_()),
            ("onset_date", pa.date32()),
        ]
    ),
    "duplicates": pa.schema(
        [
            ("patient_id", pa.string()),
            ("duplicate_patient_id", pa.string()),
            ("changes", pa.string()),
        ]
    ),
    "faults": pa.schema(
        [
            ("resource_type", pa.string()),
            ("resource_id", pa.string()),
            ("patient_id", pa.string()),
            ("kind", pa.string()),
            ("field", pa.string()),
            ("original", pa.string()),
            ("written", pa.string()),
            ("detail", pa.string()),
        ]
    ),
}
_ROW_GROUP = 4096


class NdjsonWriter:
    """Appends serialised resources to ``<Type>.ndjson``, opening a file only when its type first appears."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._handles: dict[str, BinaryIO] = {}
        self.counts: dict[str, int] = {}
        self.bytes = 0

    def write(self, resource_type: str, data: bytes, count: int) -> None:
        handle = self._handles.get(resource_type)
        if handle is None:
            handle = (self.folder / f"{resource_type}.ndjson").open("wb")
            self._handles[resource_type] = handle
            self.counts[resource_type] = 0
        handle.write(data)
        self.counts[resource_type] += count
        self.bytes += len(data)

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def types(self) -> list[str]:
        """Types written, in the export's conventional order."""
        known = [t for t in RESOURCE_ORDER if t in self.counts]
        return known + sorted(t for t in self.counts if t not in RESOURCE_ORDER)


def serialise(resources: list[dict[str, Any]]) -> bytes:
    """NDJSON lines, each ending in a newline."""
    dumps = orjson.dumps
    return b"\n".join(dumps(resource) for resource in resources) + b"\n"


def write_manifest(folder: Path, writer: NdjsonWriter, *, transaction_time: str, extension: dict[str, Any]) -> Path:
    """The Bulk Data ``$export`` completion manifest, with file names relative to the manifest."""
    manifest = {
        "transactionTime": transaction_time,
        "request": "https://synthetic.carelake.example/fhir/$export",
        "requiresAccessToken": False,
        "output": [{"type": t, "url": f"{t}.ndjson", "count": writer.counts[t]} for t in writer.types()],
        "error": [],
        "extension": {MANIFEST_EXTENSION: extension},
    }
    path = folder / MANIFEST
    path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def truth_columns(table: str, rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Rows of one ground-truth table as columns (cheaper to pass between processes and to convert)."""
    return {name: [row.get(name) for row in rows] for name in TRUTH_SCHEMAS[table].names}


class TruthWriter:
    """Streams ground-truth columns into one Parquet file per table, a row group at a time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._buffers: dict[str, dict[str, list[Any]]] = {
            table: {name: [] for name in schema.names} for table, schema in TRUTH_SCHEMAS.items()
        }
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = dict.fromkeys(TRUTH_SCHEMAS, 0)

    def add(self, table: str, columns: dict[str, list[Any]]) -> None:
        buffer = self._buffers[table]
        for name, values in columns.items():
            buffer[name].extend(values)
        count = len(next(iter(buffer.values())))
        self.rows[table] += len(next(iter(columns.values()))) if columns else 0
        while count >= _ROW_GROUP:
            self._flush(table, {name: values[:_ROW_GROUP] for name, values in buffer.items()})
            for values in buffer.values():
                del values[:_ROW_GROUP]
            count -= _ROW_GROUP

    def _flush(self, table: str, columns: dict[str, list[Any]]) -> None:
        schema = TRUTH_SCHEMAS[table]
        writer = self._writers.get(table)
        if writer is None:
            writer = pq.ParquetWriter(self.folder / f"{table}.parquet", schema)
            self._writers[table] = writer
        writer.write_table(pa.Table.from_pydict(columns, schema=schema))

    def close(self) -> list[Path]:
        paths = []
        for table, buffer in self._buffers.items():
            if buffer[TRUTH_SCHEMAS[table].names[0]] or table not in self._writers:
                self._flush(table, buffer)
            self._writers.pop(table).close()
            paths.append(self.folder / f"{table}.parquet")
        return paths

    def abort(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
