"""The re-identification risk section: how many patients an attacker who knows their quasi-identifiers
could single out, as a class-size histogram and the headline k-anonymity and l-diversity figures."""

from __future__ import annotations

from typing import TYPE_CHECKING

from carelake.privacy._cells import SMALL_CELL
from carelake.reports._html import Report

if TYPE_CHECKING:
    from carelake.privacy._risk import KAnonymityPlan, RiskReport
    from carelake.privacy._run import DeidSummary
    from carelake.privacy._verify import VerifyResult

_BELOW, _ABOVE = "#b42318", "#2f7d4f"


def risk_section(report: Report, risk: RiskReport, *, plan: KAnonymityPlan | None = None) -> None:
    """Add a risk assessment to a report (and, if given, the plan that reaches k): figures, histogram, table."""
    import plotly.graph_objects as go  # graph_objects, not express: no pandas needed

    gen = risk.generalisation
    report.heading("Re-identification risk")
    report.text(
        f"Patients grouped into equivalence classes by {', '.join(risk.quasi_identifiers)} "
        f"(age in {gen.age_band_years}-year bands at {risk.as_of}, 90 and over as one band; geography: "
        f"{gen.geography}), computed on {risk.engine}. A class smaller than k = {risk.k} lets an attacker who "
        "knows those facts narrow a person down to fewer than k records"
        + (
            f"; a class with fewer than l = {risk.l} distinct {risk.sensitive} values reveals the "
            f"{risk.sensitive} of everyone in it."
            if risk.sensitive
            else "."
        )
    )
    report.metrics(
        {
            "patient records": risk.records,
            "equivalence classes": risk.classes,
            "smallest class": risk.min_class_size,
            f"records in classes below k={risk.k}": f"{100 * risk.share_below_k:.1f}%",
            "highest risk (1 / smallest class)": f"{risk.max_risk:.2f}",
            "average risk": f"{risk.average_risk:.3f}",
            **({"fewest distinct values in a class (l)": risk.min_l} if risk.sensitive else {}),
        }
    )
    bins = risk.histogram
    shown = [b for b in bins if b["records"] is not None]
    fig = go.Figure(
        go.Bar(
            x=[b["label"] for b in bins],
            y=[b["records"] or 0 for b in bins],
            text=["" if b["records"] is not None else f"< {SMALL_CELL}" for b in bins],
            textposition="outside",
            marker_color=[_BELOW if b["below_k"] else _ABOVE for b in bins],
            customdata=[b["classes"] if b["classes"] is not None else "suppressed" for b in bins],
            hovertemplate="class size %{x}<br>%{y} records in %{customdata} classes<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Records by the size of their equivalence class (red: below k = {risk.k}; "
        f"bins under {SMALL_CELL} records suppressed)",
        xaxis_title="equivalence class size",
        yaxis_title="patient records",
        bargap=0.1,
    )
    report.figure(fig)
    if len(shown) < len(bins):
        report.text(f"Bins holding fewer than {SMALL_CELL} records are shown as '< {SMALL_CELL}' (small-cell rule).")

    rows: list[list[object]] = [
        ["k target", risk.k],
        ["patient records", risk.records],
        ["equivalence classes", risk.classes],
        ["smallest class size", risk.min_class_size],
        ["records alone in their class", risk.unique_records],
        [f"classes smaller than k = {risk.k}", risk.classes_below_k],
        [f"records in classes smaller than k = {risk.k}", risk.records_below_k],
        [f"share of records in classes smaller than k = {risk.k}", f"{100 * risk.share_below_k:.1f}%"],
        ["highest re-identification risk (1 / smallest class)", f"{risk.max_risk:.3f}"],
        ["average re-identification risk (classes / records)", f"{risk.average_risk:.3f}"],
    ]
    if risk.sensitive:
        rows += [
            ["l target", risk.l],
            [f"fewest distinct {risk.sensitive} values in a class", risk.min_l],
            [f"classes with fewer than l = {risk.l} distinct values", risk.classes_below_l],
            [f"share of records in classes with fewer than l = {risk.l}", f"{100 * (risk.share_below_l or 0):.1f}%"],
        ]
    rows += [[f"distinct values of {q}", n] for q, n in risk.distinct.items()]
    report.table(["figure", "value"], rows)

    if plan is not None:
        chosen = plan.generalisation
        report.text(
            f"To reach k = {plan.k}: age in {chosen.age_band_years}-year bands, geography {chosen.geography}, "
            f"then suppress {plan.records_suppressed:,} of {plan.records:,} records "
            f"({100 * plan.records_suppressed / plan.records if plan.records else 0:.1f}%; budget "
            f"{100 * plan.max_suppression:g}%{'' if plan.within_budget else ', exceeded: no generalisation fits it'})"
            f". Smallest class left: {plan.achieved_k if plan.achieved_k is not None else 'none'}."
        )
        report.table(
            ["age band (years)", "geography", "classes", "records to suppress"],
            [[c["age_band_years"], c["geography"], c["classes"], c["records_suppressed"]] for c in plan.candidates],
        )


def deid_overview(report: Report, deid: DeidSummary, swept: VerifyResult, risk: RiskReport) -> None:
    """The de-identification stage: what it removed, who consent left out, the leak sweep and the risk."""
    import plotly.graph_objects as go

    policy = deid.policy
    report.heading("De-identification")
    report.text(
        f"Policy {policy['name']} with dates {policy['date_mode']}"
        + (" (Safe Harbor)." if policy["safe_harbor"] else " (not Safe Harbor: shifted dates keep day and month).")
        + f" Key fingerprint {deid.key_fingerprint}; the key itself stays outside every lake. "
        f"{deid.read:,} resources read = {deid.written:,} written + {deid.excluded:,} left out by consent or "
        f"opt-out + {deid.quarantined:,} quarantined."
    )
    report.metrics(
        {
            "resources written": deid.written,
            "patients left out (consent)": deid.patients_excluded.get("consent", 0),
            "patients left out (opt-out)": deid.patients_excluded.get("opt_out", 0),
            "quarantined": deid.quarantined,
            "leak sweep": "no identifier found" if swept.passed else f"{swept.hit_count:,} hits",
            "files swept": swept.files_scanned,
        }
    )
    actions: dict[str, dict[str, int]] = {}
    for name, n in deid.elements.items():
        category, action = name.rsplit(":", 1)
        actions.setdefault(action, {})[category] = n
    fig = go.Figure()
    categories = sorted({c for per in actions.values() for c in per})
    for action, per in sorted(actions.items()):
        fig.add_trace(go.Bar(name=action, y=categories, x=[per.get(c, 0) for c in categories], orientation="h"))
    fig.update_layout(title="Elements changed, by category and action", barmode="stack", xaxis_type="log", height=600)
    report.figure(fig)
    risk_section(report, risk)
