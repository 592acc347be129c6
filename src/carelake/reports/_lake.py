"""The lake overview: what is in the lake, where it came from, and what was refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

from carelake.privacy._cells import SMALL_CELL, SMALL_CELL_HAVING, suppressed
from carelake.reports._html import Report

if TYPE_CHECKING:
    from carelake.lake import Lake


def lake_overview(lake: Lake, report: Report) -> None:
    """Add the lake's contents to a report: resource counts, quarantine, population, timeline."""
    import plotly.graph_objects as go  # graph_objects, not express: no pandas needed

    status = lake.status()
    tables = {t["name"]: t["rows"] for t in status["tables"]}
    report.heading("Lake")
    report.metrics(
        {
            "FHIR resource versions": tables.get("fhir_resources", 0),
            "references": tables.get("fhir_references", 0),
            "quarantined records": status["quarantine"]["total"],
            "committed runs": len([r for r in status["runs"] if r["job"] != "create-lake"]),
        }
    )
    if "fhir_resources" not in tables:
        report.text("No FHIR data yet: run `carelake ingest fhir PATH`.")
        return
    by_type = lake.sql("SELECT resource_type, count(*) AS n FROM resources GROUP BY 1 ORDER BY n DESC").to_pylist()
    fig = go.Figure(go.Bar(x=[r["resource_type"] for r in by_type], y=[r["n"] for r in by_type]))
    fig.update_layout(title="Current resources by type", xaxis_title="resource type", yaxis_title="resources")
    report.figure(fig)

    report.heading("Quarantine")
    rules = lake.sql("SELECT stage, rule, count(*) AS n FROM quarantine GROUP BY 1, 2 ORDER BY n DESC").to_pylist()
    if rules:
        report.table(["stage", "rule", "records"], [[r["stage"], r["rule"], r["n"]] for r in rules])
    else:
        report.text("Nothing was quarantined.")

    report.heading("Population")
    pyramid = lake.sql("""
        SELECT coalesce(json_extract_string(resource, '$.gender'), 'unknown') AS sex,
               CAST(floor(date_diff('year', CAST(clinical_time AS DATE), current_date) / 10) * 10 AS INTEGER)
                 AS age_band,
               count(*) AS n
        FROM Patient WHERE clinical_time IS NOT NULL GROUP BY 1, 2 ORDER BY 2""").to_pylist()
    shown = [r for r in pyramid if suppressed(r["n"]) is not None]
    if shown:
        fig = go.Figure()
        for sex in sorted({r["sex"] for r in shown}):
            rows = [r for r in shown if r["sex"] == sex]
            bands = [f"{r['age_band']}–{r['age_band'] + 9}" for r in rows]
            fig.add_trace(go.Bar(name=sex, x=bands, y=[r["n"] for r in rows]))
        fig.update_layout(
            barmode="group",
            xaxis_title="age band",
            yaxis_title="patients",
            title=f"Patients by age band and sex (cells < {SMALL_CELL} suppressed)",
        )
        report.figure(fig)
    else:
        report.text(f"Every age/sex cell is below {SMALL_CELL} patients, so none is shown.")

    timeline = lake.sql(f"""
        SELECT year(clinical_time) AS year, resource_type, count(*) AS n FROM resources
        WHERE clinical_time IS NOT NULL AND resource_type <> 'Patient'
        GROUP BY 1, 2 {SMALL_CELL_HAVING} ORDER BY 1""").to_pylist()
    if timeline:
        fig = go.Figure()
        for rtype in sorted({r["resource_type"] for r in timeline}):
            rows = [r for r in timeline if r["resource_type"] == rtype]
            fig.add_trace(go.Scatter(name=rtype, mode="lines", x=[r["year"] for r in rows], y=[r["n"] for r in rows]))
        fig.update_layout(
            title="Clinical events per year (by main clinical time)", xaxis_title="year", yaxis_title="events"
        )
        report.figure(fig)
