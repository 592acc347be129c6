"""The views section: the analysis-ready silver tables and a first look at what they hold."""

from __future__ import annotations

from typing import TYPE_CHECKING

from carelake.privacy._cells import SMALL_CELL, SMALL_CELL_HAVING
from carelake.reports._html import Report

if TYPE_CHECKING:
    from carelake.lake import Lake


def views_overview(lake: Lake, report: Report, counts: dict[str, int]) -> None:
    """Rows per materialised view, encounters by class, and inpatient length of stay (small cells hidden)."""
    import plotly.graph_objects as go

    report.heading("Analysis-ready views")
    report.text(
        "The standard SQL-on-FHIR views, materialised as silver tables in one commit. Query them with "
        "`carelake sql`, e.g. `select class_code, avg(length_of_stay_days) from encounters group by 1`."
    )
    report.table(["silver table", "rows"], [[name, rows] for name, rows in sorted(counts.items())])
    if "encounters" not in counts:
        return
    by_class = lake.sql(f"""
        SELECT class_code, count(*) AS n, round(avg(duration_hours), 1) AS hours,
               round(avg(length_of_stay_days), 1) AS los
        FROM encounters GROUP BY 1 {SMALL_CELL_HAVING} ORDER BY n DESC""").to_pylist()
    report.table(
        ["encounter class", "encounters", "mean hours", "mean length of stay (days)"],
        [[r["class_code"], r["n"], r["hours"], r["los"]] for r in by_class],
    )
    stays = lake.sql(f"""
        SELECT length_of_stay_days AS days, count(*) AS n FROM encounters
        WHERE class_code = 'IMP' AND length_of_stay_days IS NOT NULL
        GROUP BY 1 {SMALL_CELL_HAVING} ORDER BY 1""").to_pylist()
    if stays:
        fig = go.Figure(go.Bar(x=[r["days"] for r in stays], y=[r["n"] for r in stays]))
        fig.update_layout(
            title=f"Inpatient length of stay (cells < {SMALL_CELL} suppressed)",
            xaxis_title="midnights in hospital",
            yaxis_title="admissions",
        )
        report.figure(fig)
