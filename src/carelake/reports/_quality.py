"""The data-quality section: a DataQualityDashboard-style summary by Kahn category, the failed checks with
example record locators (type/id only, never values), and the trend across quality runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from carelake.reports._html import Report

if TYPE_CHECKING:
    from carelake.lake import Lake
    from carelake.quality import QualityRun

CATEGORIES = ("Conformance", "Completeness", "Plausibility")


def quality_overview(lake: Lake, report: Report, run: QualityRun) -> None:
    """Add a quality run to a report: summary, failures, per check type, trend."""
    import plotly.graph_objects as go

    from carelake.quality import RESULTS_TABLE, check_types

    report.heading("Data quality")
    share = f"{100 * run.passed / run.resolved:.1f}%" if run.resolved else "n/a"
    report.metrics(
        {
            "checks": run.checks,
            "resolved": run.resolved,
            "passed": run.passed,
            "failed": run.failed,
            "not applicable": run.not_applicable,
            "passed (of resolved)": share,
            "fatal failures": len(run.fatal_failures),
        }
    )
    report.text(
        "Checks follow the Kahn framework as OHDSI's DataQualityDashboard does. A check is resolved when "
        "the lake holds records it applies to, and fails when more than its threshold of them violate it. "
        "Examples name records by type/id only."
    )
    rows = []
    for category in CATEGORIES:
        counts = run.by_category.get(category, {"pass": 0, "fail": 0, "not_applicable": 0})
        resolved = counts["pass"] + counts["fail"]
        pct = f"{100 * counts['pass'] / resolved:.1f}%" if resolved else "n/a"
        rows.append([category, counts["pass"], counts["fail"], resolved, pct, counts["not_applicable"]])
    report.table(["category", "pass", "fail", "resolved", "% pass", "not applicable"], rows)

    results = run.results.to_pylist()
    failed = sorted(
        (r for r in results if r["status"] == "fail"),
        key=lambda r: (("fatal", "error", "warning").index(r["severity"]), -r["pct_violated"], r["check_id"]),
    )
    if failed:
        report.heading("Failed checks")
        report.table(
            ["severity", "check", "field", "violated", "of", "%", "threshold %", "examples"],
            [
                [
                    r["severity"],
                    r["check_id"],
                    r["field"],
                    r["numerator"],
                    r["denominator"],
                    r["pct_violated"],
                    r["threshold_pct"],
                    ", ".join(r["examples"]),
                ]
                for r in failed
            ],
        )
    by_type: dict[str, list[dict]] = {}
    for r in results:
        by_type.setdefault(r["check_type"], []).append(r)
    report.heading("Checks by type")
    types = check_types()
    report.table(
        ["check type", "category", "instances", "resolved", "failed", "records violating", "what it checks"],
        [
            [
                name,
                f"{types[name].category} / {types[name].subcategory}",
                len(rs),
                sum(1 for r in rs if r["status"] != "not_applicable"),
                sum(1 for r in rs if r["status"] == "fail"),
                sum(r["numerator"] for r in rs),
                types[name].description,
            ]
            for name, rs in by_type.items()
        ],
    )
    fig = go.Figure(
        go.Bar(
            x=list(by_type),
            y=[sum(1 for r in rs if r["status"] == "fail") for rs in by_type.values()],
            marker_color="#c0392b",
        )
    )
    fig.update_layout(title="Failed checks by check type", xaxis_title="check type", yaxis_title="failed checks")
    report.figure(fig)

    history = lake.sql(f"""
        SELECT run_id, min(checked_at) AS checked,
               count_if(status = 'pass') AS passed, count_if(status = 'fail') AS failed
        FROM {RESULTS_TABLE} GROUP BY run_id ORDER BY checked""").to_pylist()
    if len(history) > 1:
        fig = go.Figure()
        fig.add_trace(
            go.Scatter(
                name="passed", mode="lines+markers", x=[h["checked"] for h in history], y=[h["passed"] for h in history]
            )
        )
        fig.add_trace(
            go.Scatter(
                name="failed", mode="lines+markers", x=[h["checked"] for h in history], y=[h["failed"] for h in history]
            )
        )
        fig.update_layout(title="Quality runs over time", xaxis_title="run", yaxis_title="checks")
        report.figure(fig)
    else:
        report.text("This is the lake's first quality run; later runs add a trend chart here.")
