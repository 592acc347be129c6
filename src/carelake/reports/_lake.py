"""The lake overview: what is in the lake, where it came from, and what was refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

from carelake.reports._html import Report

if TYPE_CHECKING:
    from carelake.lake import Lake

# Aggregates shown to people are suppressed below this count (small-cell rule).
SMALL_CELL = 11


def lake_overview(lake: Lake, report: Report) -> None:
    """Add the lake's contents to a report: resource counts, quarantine, population, timeline."""
    import plotly.express as px

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
    fig = px.bar(
        by_type,
        x="resource_type",
        y="n",
        title="Current resources by type",
        labels={"resource_type": "resource type", "n": "resources"},
    )
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
    shown = [r for r in pyramid if r["n"] >= SMALL_CELL]
    if shown:
        for r in shown:
            r["age band"] = f"{r['age_band']}–{r['age_band'] + 9}"
        report.figure(
            px.bar(
                shown,
                x="age band",
                y="n",
                color="sex",
                barmode="group",
                title=f"Patients by age band and sex (cells < {SMALL_CELL} suppressed)",
            )
        )
    else:
        report.text(f"Every age/sex cell is below {SMALL_CELL} patients, so none is shown.")

    timeline = lake.sql("""
        SELECT year(clinical_time) AS year, resource_type, count(*) AS n FROM resources
        WHERE clinical_time IS NOT NULL AND resource_type NOT IN ('Patient')
        GROUP BY 1, 2 HAVING count(*) >= 11 ORDER BY 1""").to_pylist()
    if timeline:
        report.figure(
            px.line(
                timeline,
                x="year",
                y="n",
                color="resource_type",
                title="Clinical events per year (by main clinical time)",
            )
        )
