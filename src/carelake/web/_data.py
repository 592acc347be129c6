"""What each page shows, read from the lakes: aggregates with small cells suppressed, or one patient's record.

Aggregates come from the analysis lake (the de-identified one when the server has it) and never show a count
under 11 (:mod:`carelake.privacy._cells`). Patient-level data comes from the identified lake only. Queries are
parameterised through :func:`carelake.fhir._events.sql_literal`; ids come from the URL, so they are checked
against a strict pattern first.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from carelake.fhir._events import sql_literal
from carelake.privacy._cells import SMALL_CELL, show_count
from carelake.sources.fhir._r4 import ID_PATTERN

if TYPE_CHECKING:
    from carelake.lake import Lake

TASKS = ("readmission-30d", "diabetes-onset")


def valid_id(value: str) -> bool:
    """A FHIR id (the only shape an id from a URL may take before it reaches SQL)."""
    return ID_PATTERN.fullmatch(value) is not None  # not re's $, which also passes "id\n"


def figure_json(fig: Any) -> str:
    """A Plotly figure as JSON for a ``<script type="application/json">`` block (no inline script runs)."""
    return fig.to_json()


def _tables(lake: Lake) -> set[str]:
    return set(lake.catalog.tables)


def overview(lake: Lake) -> dict[str, Any]:
    """Population counts, the age/sex pyramid, recent runs and the data-quality summary."""
    import plotly.graph_objects as go

    tables = _tables(lake)
    out: dict[str, Any] = {"figures": [], "counts": {}, "runs": [], "quality": []}
    if "patients" in tables:
        rows = lake.sql(f"""
            SELECT coalesce(gender, 'unknown') AS sex,
                   least(CAST(floor(date_diff('year', CAST(substr(birth_date, 1, 4) || '-01-01' AS DATE),
                                               current_date) / 10) AS INTEGER) * 10, 90) AS band,
                   count(*) AS n
            FROM patients WHERE birth_date IS NOT NULL GROUP BY 1, 2 HAVING count(*) >= {SMALL_CELL}
            ORDER BY 2""").to_pylist()
        total = lake.sql("SELECT count(*) AS n FROM patients").column("n")[0].as_py()
        out["counts"]["patients"] = show_count(total)
        fig = go.Figure()
        for sex, sign in (("female", -1), ("male", 1)):
            part = [r for r in rows if r["sex"] == sex]
            fig.add_trace(go.Bar(y=[f"{r['band']}+" if r["band"] == 90 else f"{r['band']}-{r['band'] + 9}"
                                    for r in part], x=[sign * r["n"] for r in part], name=sex,
                                 orientation="h"))  # fmt: skip
        fig.update_layout(title="Age and sex (cells under 11 hidden)", barmode="relative", height=380,
                          xaxis_title="patients (female left, male right)")  # fmt: skip
        out["figures"].append(figure_json(fig))
    for name in ("encounters", "conditions", "observations", "medication_requests"):
        if name in tables:
            n = lake.sql(f"SELECT count(*) AS n FROM {name}").column("n")[0].as_py()
            out["counts"][name.replace("_", " ")] = show_count(n)
    if "quality_results" in tables:
        out["quality"] = lake.sql("""
            SELECT status, count(*) AS checks FROM quality_results
            WHERE run_id = (SELECT max(run_id) FROM quality_results) GROUP BY 1 ORDER BY 1""").to_pylist()
    out["runs"] = [
        {"job": r["job"], "started": r["started"][:19].replace("T", " "), "run_id": r["run_id"]}
        for r in lake.status()["runs"][-8:][::-1]
    ]
    return out


def quality(lake: Lake) -> dict[str, Any]:
    """Data-quality results by category and status, and their trend over runs."""
    import plotly.graph_objects as go

    if "quality_results" not in _tables(lake):
        return {"figures": [], "rows": []}
    rows = lake.sql("""
        SELECT category, status, count(*) AS checks FROM quality_results
        WHERE run_id = (SELECT max(run_id) FROM quality_results) GROUP BY 1, 2 ORDER BY 1, 2""").to_pylist()
    trend = lake.sql("""
        SELECT run_id, min(checked_at) AS at, count(*) AS checks,
               CAST(sum(CASE WHEN status = 'fail' THEN 1 ELSE 0 END) AS BIGINT) AS failed
        FROM quality_results GROUP BY 1 ORDER BY 2""").to_pylist()
    fig = go.Figure()
    for status in sorted({r["status"] for r in rows}):
        part = [r for r in rows if r["status"] == status]
        fig.add_trace(go.Bar(x=[r["category"] for r in part], y=[r["checks"] for r in part], name=status))
    fig.update_layout(title="Checks by category and result (latest run)", barmode="stack", height=360)
    figures = [figure_json(fig)]
    trend_fig = go.Figure(go.Scatter(x=[str(t["at"]) for t in trend], y=[t["failed"] for t in trend],
                                     mode="lines+markers", name="failed checks"))  # fmt: skip
    trend_fig.update_layout(title="Failed checks per run", height=300)
    figures.append(figure_json(trend_fig))
    return {"figures": figures, "rows": rows}


def outcomes(lake: Lake) -> dict[str, Any]:
    """Readmission, in-hospital mortality and length of stay by month on control charts (3 sigma), and
    readmission by hospital; months and hospitals with fewer than 11 stays are hidden."""
    tables = _tables(lake)
    figures = []
    months: list[dict[str, Any]] = []
    if "cohort_readmission_30d" in tables:
        months = lake.sql(f"""
            SELECT strftime(index_time, '%Y-%m') AS month, count(*) AS n,
                   CAST(sum(CASE WHEN outcome THEN 1 ELSE 0 END) AS BIGINT) AS events
            FROM cohort_readmission_30d WHERE outcome IS NOT NULL GROUP BY 1
            HAVING count(*) >= {SMALL_CELL} ORDER BY 1""").to_pylist()
        if months:
            figures.append(figure_json(_p_chart(months, "30-day readmission rate by discharge month (p-chart)")))
    if "encounters" in tables:
        inpatient = "class_code IN ('IMP', 'ACUTE', 'NONAC') AND start IS NOT NULL"
        deaths = lake.sql(f"""
            SELECT substr(start, 1, 7) AS month, count(*) AS n,
                   CAST(sum(CASE WHEN discharge_disposition_code = 'exp' THEN 1 ELSE 0 END) AS BIGINT) AS events
            FROM encounters WHERE {inpatient} GROUP BY 1 HAVING count(*) >= {SMALL_CELL} ORDER BY 1""").to_pylist()
        if deaths:
            figures.append(figure_json(_p_chart(deaths, "In-hospital mortality by admission month (p-chart)")))
        stays = lake.sql(f"""
            SELECT substr(start, 1, 7) AS month, count(*) AS n, avg(length_of_stay_days) AS mean,
                   stddev_samp(length_of_stay_days) AS sd
            FROM encounters WHERE {inpatient} AND length_of_stay_days IS NOT NULL
            GROUP BY 1 HAVING count(*) >= {SMALL_CELL} ORDER BY 1""").to_pylist()
        if stays:
            figures.append(figure_json(_mean_chart(stays)))
        if "cohort_readmission_30d" in tables:
            sites = lake.sql(f"""
                SELECT coalesce(o.name, 'unknown') AS site, count(*) AS n,
                       avg(CASE WHEN c.outcome THEN 1.0 ELSE 0.0 END) AS rate
                FROM cohort_readmission_30d c JOIN encounters e ON e.id = c.index_event_id
                LEFT JOIN (SELECT id, json_extract_string(resource, '$.name') AS name FROM resources
                           WHERE resource_type = 'Organization') o ON o.id = e.service_provider_id
                WHERE c.outcome IS NOT NULL GROUP BY 1 HAVING count(*) >= {SMALL_CELL} ORDER BY 3 DESC""").to_pylist()
            if sites:
                import plotly.graph_objects as go

                fig = go.Figure(go.Bar(x=[r["site"] for r in sites], y=[r["rate"] for r in sites],
                                       text=[f"{r['n']:,} discharges" for r in sites]))  # fmt: skip
                fig.update_layout(title="30-day readmission rate by hospital", yaxis_tickformat=".0%", height=340)
                figures.append(figure_json(fig))
        if "cohort_readmission_30d" in tables and "patients" in tables:
            figures.append(figure_json(_by_group(lake)))
    return {"figures": figures, "months": len(months)}


def _by_group(lake: Any) -> Any:
    """Readmission rate by sex and by age band at discharge; groups under 11 discharges hidden."""
    import plotly.graph_objects as go

    from carelake.fhir._events import age_sql

    age = age_sql("cl_fhir_time(p.birth_date)", "c.index_time")
    rows = lake.sql(f"""
        SELECT 'sex' AS attribute, coalesce(p.gender, 'unknown') AS grp, count(*) AS n,
               avg(CASE WHEN c.outcome THEN 1.0 ELSE 0.0 END) AS rate
        FROM cohort_readmission_30d c JOIN patients p ON p.id = c.patient_id
        WHERE c.outcome IS NOT NULL GROUP BY 1, 2 HAVING count(*) >= {SMALL_CELL}
        UNION ALL
        SELECT 'age band', CASE WHEN {age} < 45 THEN '18-44' WHEN {age} < 65 THEN '45-64'
                               WHEN {age} < 80 THEN '65-79' ELSE '80+' END, count(*),
               avg(CASE WHEN c.outcome THEN 1.0 ELSE 0.0 END)
        FROM cohort_readmission_30d c JOIN patients p ON p.id = c.patient_id
        WHERE c.outcome IS NOT NULL GROUP BY 1, 2 HAVING count(*) >= {SMALL_CELL}
        ORDER BY 1, 2""").to_pylist()
    fig = go.Figure()
    for attribute in ("sex", "age band"):
        part = [r for r in rows if r["attribute"] == attribute]
        fig.add_trace(go.Bar(x=[f"{attribute}: {r['grp']}" for r in part], y=[r["rate"] for r in part],
                             name=attribute, text=[f"{r['n']:,} discharges" for r in part]))  # fmt: skip
    fig.update_layout(title="30-day readmission rate by group", yaxis_tickformat=".0%", height=340)
    return fig


def _p_chart(rows: list[dict[str, Any]], title: str) -> Any:
    """A proportion per period with its centre line and 3-sigma limits (limits vary with each period's size)."""
    import plotly.graph_objects as go

    p_bar = sum(r["events"] for r in rows) / sum(r["n"] for r in rows)
    x = [r["month"] for r in rows]
    sigma = [(p_bar * (1 - p_bar) / r["n"]) ** 0.5 for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=[r["events"] / r["n"] for r in rows], mode="lines+markers", name="rate"))
    fig.add_trace(go.Scatter(x=x, y=[p_bar] * len(x), mode="lines", name="centre line", line={"dash": "dash"}))
    fig.add_trace(go.Scatter(x=x, y=[min(1, p_bar + 3 * s) for s in sigma], mode="lines", name="upper limit",
                             line={"dash": "dot"}))  # fmt: skip
    fig.add_trace(go.Scatter(x=x, y=[max(0, p_bar - 3 * s) for s in sigma], mode="lines", name="lower limit",
                             line={"dash": "dot"}))  # fmt: skip
    fig.update_layout(title=title, height=360, yaxis_tickformat=".0%")
    return fig


def _mean_chart(rows: list[dict[str, Any]]) -> Any:
    """Mean length of stay per month with 3-sigma limits from the pooled standard deviation."""
    import plotly.graph_objects as go

    total = sum(r["n"] for r in rows)
    grand = sum(r["mean"] * r["n"] for r in rows) / total
    pooled = (sum((r["sd"] or 0) ** 2 * (r["n"] - 1) for r in rows) / max(total - len(rows), 1)) ** 0.5
    x = [r["month"] for r in rows]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=[r["mean"] for r in rows], mode="lines+markers", name="mean stay"))
    fig.add_trace(go.Scatter(x=x, y=[grand] * len(x), mode="lines", name="centre line", line={"dash": "dash"}))
    fig.add_trace(go.Scatter(x=x, y=[grand + 3 * pooled / r["n"] ** 0.5 for r in rows], mode="lines",
                             name="upper limit", line={"dash": "dot"}))  # fmt: skip
    fig.add_trace(go.Scatter(x=x, y=[max(0, grand - 3 * pooled / r["n"] ** 0.5) for r in rows], mode="lines",
                             name="lower limit", line={"dash": "dot"}))  # fmt: skip
    fig.update_layout(title="Mean length of stay (days) by admission month (x-bar chart)", height=340)
    return fig


def models(lake: Lake) -> list[dict[str, Any]]:
    """The latest trained model of each task: metrics, calibration, decision curve and fairness figures."""
    from carelake.errors import LakeError
    from carelake.models import load_model
    from carelake.reports._model_card import calibration_figure, decision_figure, subgroup_figure

    out = []
    for task in TASKS:
        try:
            trained = load_model(lake, task=task)
        except LakeError:
            continue
        result = trained.card["result"]
        evaluation = result["evaluation"]
        out.append(
            {
                "task": task,
                "kind": trained.kind,
                "folder": trained.folder.name,
                "metrics": result["metrics"],
                "baseline": result["baseline"],
                "fairness": evaluation["fairness"],
                "figures": [figure_json(calibration_figure(evaluation["calibration"])),
                            figure_json(decision_figure(evaluation["decision_curve"])),
                            figure_json(subgroup_figure(evaluation["subgroups"]))],
            }
        )  # fmt: skip
    return out


def worklist(lake: Lake, task: str = "readmission-30d", limit: int = 50) -> list[dict[str, Any]]:
    """The care-coordination worklist of the identified lake, riskiest first."""
    table = "worklist_" + task.replace("-", "_")
    if table not in _tables(lake):
        return []
    return lake.sql(f"SELECT * FROM {table} ORDER BY rank LIMIT {int(limit)}").to_pylist()


def patient_exists(lake: Lake, patient: str) -> bool:
    if not valid_id(patient) or "patients" not in _tables(lake):
        return False
    return lake.sql(f"SELECT count(*) AS n FROM patients WHERE id = {sql_literal(patient)}").column("n")[0].as_py() > 0


def timeline(lake: Lake, patient: str) -> dict[str, Any]:
    """One patient's record: demographics, encounters, conditions, medications, and labs and vitals charts."""
    import plotly.graph_objects as go

    pid = sql_literal(patient)
    tables = _tables(lake)

    def rows(sql: str, table: str) -> list[dict[str, Any]]:
        return lake.sql(sql).to_pylist() if table in tables else []

    person = rows(f"SELECT * FROM patients WHERE id = {pid}", "patients")
    encounters = rows(
        f"""SELECT start, "end", class_code, type_display, reason_display, length_of_stay_days
                          FROM encounters WHERE patient_id = {pid} ORDER BY start DESC LIMIT 100""",
        "encounters",
    )
    conditions = rows(
        f"""SELECT onset, display, clinical_status FROM conditions WHERE patient_id = {pid}
                          ORDER BY onset DESC LIMIT 100""",
        "conditions",
    )
    medications = rows(
        f"""SELECT authored_on, medication_display, status FROM medication_requests
                           WHERE patient_id = {pid} ORDER BY authored_on DESC LIMIT 100""",
        "medication_requests",
    )
    series = rows(
        f"""SELECT loinc_code, display, unit, effective, value FROM observations
                      WHERE patient_id = {pid} AND value IS NOT NULL AND loinc_code IN
                      ('8480-6', '8462-4', '39156-5', '4548-4', '1558-6', '29463-7', '8867-4')
                      ORDER BY effective""",
        "observations",
    )
    figures = []
    for codes, title in (
        (("8480-6", "8462-4", "8867-4"), "Blood pressure and heart rate"),
        (("39156-5", "29463-7"), "BMI and weight"),
        (("4548-4", "1558-6"), "HbA1c and glucose"),
    ):
        fig = go.Figure()
        for code in codes:
            points = [s for s in series if s["loinc_code"] == code]
            if points:
                fig.add_trace(
                    go.Scatter(
                        x=[p["effective"] for p in points],
                        y=[p["value"] for p in points],
                        mode="lines+markers",
                        name=f"{points[0]['display']} ({points[0]['unit']})",
                    )
                )
        if fig.data:
            fig.update_layout(title=title, height=300, legend={"orientation": "h"})
            figures.append(figure_json(fig))  # fmt: skip
    return {"patient": person[0] if person else None, "encounters": encounters, "conditions": conditions,
            "medications": medications, "figures": figures}  # fmt: skip


def risks(lake: Lake, patient: str) -> list[dict[str, Any]]:
    """A patient's latest scored risk per task, with its reasons (for the portal and the timeline)."""
    out = []
    for task in TASKS:
        table = "risk_" + task.replace("-", "_")
        if table in _tables(lake):
            found = lake.sql(f"""SELECT risk, risk_band, reasons, index_time FROM {table}
                                 WHERE patient_id = {sql_literal(patient)} ORDER BY index_time DESC LIMIT 1""")
            for row in found.to_pylist():
                out.append({"task": task} | row)
    return out


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
