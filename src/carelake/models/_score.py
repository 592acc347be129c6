"""Score the patients at risk now and hand the care team a worklist: riskiest first, with reasons.

The rows scored are a cohort's open index events (time at risk still running, so no label yet; see
:func:`carelake.cohorts.build_cohort`), with their features built the same way as for training. Two gold
tables are replaced on each run:

- ``risk_<task>``: every scored index event with its risk, risk band and top reasons;
- ``worklist_<task>``: one row per patient (their latest open index event), ranked, with reasons in plain
  language, recorded social needs and their social-care referrals still open.

Risk bands come from the model's own test set: ``high`` is the riskiest 10 % there, ``elevated`` the next 10 %.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from carelake.errors import LakeError
from carelake.features._describe import describe
from carelake.models._artefact import load_model
from carelake.models._explain import contributions, reasons
from carelake.models._train import DEMOGRAPHIC, FeatureEncoding

if TYPE_CHECKING:
    from carelake.lake import Lake

STAGE = "model-score"
REFERRALS_VIEW = Path(__file__).with_name("views") / "social_referrals.json"
SOCIAL_NEEDS = ("housing_instability", "food_insecurity", "transport_barrier")
_OPEN_REFERRAL = ("active", "on-hold", "draft")


@dataclass
class ScoreResult:
    """What scoring wrote: how many index events and patients, how many high risk, and the top of the list."""

    task: str
    model: str
    run_id: str
    scored: int
    patients: int
    high_risk: int
    risk_table: str
    worklist_table: str
    top: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_model(
    task: str | None = None,
    *,
    lake: Lake,
    model: str | Path | None = None,
    include_labelled: bool = False,
    engine: str = "duckdb",
    top: int = 10,
) -> ScoreResult:
    """Score ``features_<task>``'s open index events with a trained model; write ``risk_`` and ``worklist_``.

    ``model`` is a model folder (default: the latest trained for ``task``). ``include_labelled`` also scores
    index events whose outcome is known (for audits); the worklist always holds patients at risk now.

    Examples:
        >>> result = score_model("readmission-30d", lake=lake)        # doctest: +SKIP
        >>> result.top[0]["reasons"]                                  # doctest: +SKIP
        '3 inpatient admissions in the last 365 days; comorbidity (Charlson) index 5'
    """
    from carelake.features import load_spec
    from carelake.fhir import run_view

    started = time.perf_counter()
    trained = load_model(lake, task=task, model=model)
    task = trained.task
    name = task.replace("-", "_")
    if f"features_{name}" not in lake.catalog.tables:
        raise LakeError(f"no features for {task!r} in the lake", hint=f"carelake features build {task}")
    where = "" if include_labelled else " WHERE outcome IS NULL"
    table = lake.sql(f"SELECT * FROM features_{name}{where} ORDER BY index_event_id")
    if table.num_rows == 0:
        raise LakeError(
            f"no index events of {task} are at risk now (every one has its outcome)",
            hint="rebuild the cohort with a later --as-of, or score known outcomes with --include-labelled",
        )
    matrix = FeatureEncoding(**trained.card["encoding"])
    x = matrix.transform(table)
    p = trained.model.predict_proba(x)[:, 1]
    spec = load_spec()
    clinical = [i for i, c in enumerate(matrix.columns) if c.split("=")[0] not in DEMOGRAPHIC]  # not "their race"
    contribs = contributions(trained.model, trained.kind, x)
    why = reasons(contribs[:, clinical], x[:, clinical], [matrix.columns[i] for i in clinical], spec=spec)
    cuts = {row["alert_share"]: row["threshold"] for row in trained.card["result"]["evaluation"]["thresholds"]}
    band = np.where(p >= cuts.get(0.1, 1.0), "high", np.where(p >= cuts.get(0.2, 1.0), "elevated", "usual"))
    needs = _social_needs(table, spec)
    referrals = _open_referrals(run_view(json.loads(REFERRALS_VIEW.read_text()), lake=lake, engine=engine))
    with lake.transaction(STAGE, parameters={"task": task, "model": trained.folder.name}) as tx:
        risk = pa.table(
            {
                "index_event_id": table.column("index_event_id"),
                "patient_id": table.column("patient_id"),
                "index_time": table.column("index_time"),
                "risk": pa.array(p, pa.float64()),
                "risk_band": pa.array(band.tolist(), pa.string()),
                "reasons": pa.array(why, pa.list_(pa.string())),
                "model": pa.array([trained.folder.name] * len(p), pa.string()),
                "run_id": pa.array([tx.run_id] * len(p), pa.string()),
            }
        )
        worklist = _worklist(risk, needs, referrals, open_only=~np.asarray(table.column("outcome").is_valid()))
        for table_name, data in ((f"risk_{name}", risk), (f"worklist_{name}", worklist)):
            file = tx.stage_dir(table_name) / "part-0.parquet"
            pq.write_table(data, file)
            tx.replace(table_name, layer="gold", files=[file], rows=data.num_rows)
        result = ScoreResult(
            task=task,
            model=trained.folder.name,
            run_id=tx.run_id,
            scored=risk.num_rows,
            patients=worklist.num_rows,
            high_risk=int(np.sum(band == "high")),
            risk_table=f"risk_{name}",
            worklist_table=f"worklist_{name}",
            top=[_plain(r) for r in worklist.slice(0, top).to_pylist()],
        )
        result.seconds = round(time.perf_counter() - started, 3)
        tx.summary = result.to_dict() | {"top": len(result.top)}
    return result


def _social_needs(table: pa.Table, spec: dict[str, Any]) -> list[list[str]]:
    """The social needs recorded for each row (the feature flags for housing, food and transport)."""
    present = [n for n in SOCIAL_NEEDS if n in table.schema.names]
    columns = {n: table.column(n).to_pylist() for n in present}
    return [[describe(n, 1, spec) for n in present if columns[n][i]] for i in range(table.num_rows)]


def _open_referrals(view: pa.Table) -> dict[str, list[str]]:
    """Per patient, the social-care referrals not yet completed, oldest first, each named once."""
    out: dict[str, list[str]] = {}
    rows = sorted(view.to_pylist(), key=lambda r: (r["patient_id"] or "", r["authored"] or "", r["id"]))
    for row in rows:
        request = row["request"] or row["code"] or "referral"
        if row["patient_id"] and row["status"] in _OPEN_REFERRAL and request not in out.get(row["patient_id"], []):
            out.setdefault(row["patient_id"], []).append(request)
    return out


def _worklist(
    risk: pa.Table, needs: list[list[str]], referrals: dict[str, list[str]], *, open_only: np.ndarray
) -> pa.Table:
    """One row per patient at risk now: their latest open index event, riskiest patients first."""
    rows = risk.to_pylist()
    latest: dict[str, int] = {}
    for i, row in enumerate(rows):
        if not open_only[i]:
            continue
        current = latest.get(row["patient_id"])
        if current is None or (row["index_time"], row["index_event_id"]) > (
            rows[current]["index_time"], rows[current]["index_event_id"]):  # fmt: skip
            latest[row["patient_id"]] = i
    chosen = sorted(latest.values(), key=lambda i: (-rows[i]["risk"], rows[i]["patient_id"]))
    return pa.table(
        {
            "rank": pa.array(range(1, len(chosen) + 1), pa.int32()),
            "patient_id": pa.array([rows[i]["patient_id"] for i in chosen], pa.string()),
            "index_event_id": pa.array([rows[i]["index_event_id"] for i in chosen], pa.string()),
            "index_time": pa.array([rows[i]["index_time"] for i in chosen], risk.schema.field("index_time").type),
            "risk": pa.array([rows[i]["risk"] for i in chosen], pa.float64()),
            "risk_band": pa.array([rows[i]["risk_band"] for i in chosen], pa.string()),
            "reasons": pa.array(["; ".join(rows[i]["reasons"]) for i in chosen], pa.string()),
            "social_needs": pa.array(["; ".join(needs[i]) for i in chosen], pa.string()),
            "open_referrals": pa.array(
                ["; ".join(referrals.get(rows[i]["patient_id"], [])) for i in chosen], pa.string()
            ),
        }
    )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
