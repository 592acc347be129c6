"""The cohorts section: each cohort's attrition as a table and a funnel, and its outcome rate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from carelake.privacy._cells import show_count
from carelake.reports._html import Report

if TYPE_CHECKING:
    from carelake.cohorts import CohortResult


def cohort_overview(report: Report, results: list[CohortResult]) -> None:
    """Attrition (index events and patients after each criterion) and outcome rates; small counts hidden."""
    import plotly.graph_objects as go

    report.heading("Cohorts")
    report.text(
        "Each cohort is a YAML definition compiled to SQL (docs/cohorts.md). The attrition table shows what each "
        "criterion removed; the last step keeps index events whose whole time at risk lies inside the data."
    )
    for result in results:
        rate = f"{result.outcome_rate:.1%}" if result.outcome_rate is not None else "n/a"
        report.metrics({f"{result.name}: index events": result.index_events, "patients": result.patients,
                        "outcome rate": rate})  # fmt: skip
        report.table(
            ["step", "criterion", "index events", "patients"],
            [[r["step"], r["criterion"], show_count(r["index_events"]), show_count(r["patients"])]
             for r in result.attrition],
        )  # fmt: skip
        fig = go.Figure(
            go.Funnel(
                y=[r["criterion"] for r in result.attrition],
                x=[r["index_events"] for r in result.attrition],
                textinfo="value+percent initial",
            )
        )
        fig.update_layout(title=f"Attrition of {result.name}", height=120 + 45 * len(result.attrition))
        report.figure(fig)
