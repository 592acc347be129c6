"""The cohorts section: each cohort's attrition as a table and a funnel, and its outcome rate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from carelake.privacy._cells import show_count
from carelake.reports._html import Report

if TYPE_CHECKING:
    from carelake.cohorts import CohortResult
    from carelake.models import ModelResult


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


def model_overview(report: Report, model: ModelResult) -> None:
    """Held-out metrics of a risk model beside its clinical-score baseline, and what drives it."""
    import plotly.graph_objects as go

    m = model.metrics
    report.heading(f"Risk model: {model.task}")
    report.text(
        f"{model.kind} trained on {model.train_rows:,} index events and tested on {model.test_rows:,} others from "
        f"{model.test_patients:,} patients never seen in training. Synthetic data: these figures test the "
        "pipeline, they are not clinical evidence."
    )
    report.metrics(
        {
            "AUROC": f"{m['auroc']:.3f} ({m['auroc_ci'][0]:.3f}-{m['auroc_ci'][1]:.3f})",
            "AUPRC": f"{m['auprc']:.3f}",
            "Brier": f"{m['brier']:.3f}",
            "calibration slope": f"{m['calibration_slope']:.2f}",
            f"{model.baseline['name']} AUROC": f"{model.baseline.get('auroc', float('nan')):.3f}",
        }
    )
    top = model.top_features[:12]
    fig = go.Figure(go.Bar(x=[v for _, v in top][::-1], y=[n for n, _ in top][::-1], orientation="h"))
    fig.update_layout(title="What the model relies on (share of gain)", height=420)
    report.figure(fig)
