"""A risk model in pictures: its sections in any report, and a model card following TRIPOD+AI's headings.

The card (Collins et al., BMJ 2024) says what the model is for, what data and cohort it was built from, its
predictors, performance (discrimination, calibration, clinical utility), fairness across groups, and its
limits. It is written beside the model in ``gold/models/`` every time a model is trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from carelake.privacy._cells import show_count
from carelake.reports._html import Report

if TYPE_CHECKING:
    from carelake.models import ModelResult, ScoreResult

SYNTHETIC_CAVEAT = (
    "Figures computed on synthetic data test the pipeline; they are not clinical evidence and must not be quoted "
    "as the performance of a clinical model."
)


def model_overview(report: Report, model: ModelResult) -> None:
    """Held-out performance, calibration, net benefit, alert thresholds, fairness and what drives the model."""
    m = model.metrics
    report.heading(f"Risk model: {model.task}")
    report.text(
        f"{model.kind} trained on {model.train_rows:,} index events and tested on {model.test_rows:,} others from "
        f"{model.test_patients:,} patients never seen in training ({model.split} split). {SYNTHETIC_CAVEAT}"
    )
    report.metrics(
        {
            "AUROC": f"{m['auroc']:.3f} ({m['auroc_ci'][0]:.3f}-{m['auroc_ci'][1]:.3f})",
            "AUPRC": f"{m['auprc']:.3f} ({m['auprc_ci'][0]:.3f}-{m['auprc_ci'][1]:.3f})",
            "Brier": f"{m['brier']:.3f}",
            "calibration slope": f"{m['calibration_slope']:.2f} ({m['calibration_slope_ci'][0]:.2f}-"
            f"{m['calibration_slope_ci'][1]:.2f})",
            "calibration intercept": f"{m['calibration_intercept']:.2f}",
            "Eavg / E90": f"{m['eavg']:.3f} / {m['e90']:.3f}",
            f"{model.baseline['name']} AUROC": f"{model.baseline.get('auroc', float('nan')):.3f}",
        }
    )
    evaluation = model.evaluation
    oracle = evaluation.get("oracle")
    if oracle:
        report.text(
            f"Against the generator's true probabilities on the same {oracle['rows']:,} test rows: oracle AUROC "
            f"{oracle['oracle_auroc']:.3f}, model {oracle['model_auroc']:.3f} (gap {oracle['gap']:.3f})."
        )
    report.figure(calibration_figure(evaluation["calibration"]))
    report.figure(decision_figure(evaluation["decision_curve"]))
    report.text(
        "Alert thresholds: flagging the riskiest share of patients. Alerts per 100 is the workload a care team "
        "takes on; PPV is how many of those alerts are followed by the outcome."
    )
    report.table(
        ["riskiest", "risk threshold", "sensitivity", "specificity", "PPV", "NPV", "alerts per 100"],
        [[f"{r['alert_share']:.0%}", f"{r['threshold']:.3f}", _pct(r["sensitivity"]), _pct(r["specificity"]),
          _pct(r["ppv"]), _pct(r["npv"]), r["alerts_per_100"]] for r in evaluation["thresholds"]],
    )  # fmt: skip
    fairness_sections(report, evaluation)
    top = model.top_features[:15]
    if top:
        import plotly.graph_objects as go

        fig = go.Figure(go.Bar(x=[v for _, v in top][::-1], y=[n for n, _ in top][::-1], orientation="h"))
        fig.update_layout(title="What the model relies on (mean |SHAP| on the log-odds scale)", height=460)
        report.figure(fig)


def fairness_sections(report: Report, evaluation: dict[str, Any]) -> None:
    """Subgroup metrics and gaps; groups too small to judge are named, their counts suppressed below 11."""

    threshold = evaluation["operating_threshold"]
    report.text(
        f"Subgroups at the operating point (alerts for the riskiest 20 %, risk ≥ {threshold:.3f}). TPR is the "
        "share of patients with the outcome who are flagged; the equal opportunity difference is the largest TPR "
        "gap between groups. Observed/expected above 1 means the model under-predicts for that group."
    )
    rows = []
    for r in evaluation["subgroups"]:
        if "withheld" in r:
            rows.append([r["attribute"], r["group"], show_count(r["n"]), show_count(r["events"]), "withheld: "
                         + r["withheld"], "", "", "", ""])  # fmt: skip
            continue
        rows.append(
            [r["attribute"], r["group"], show_count(r["n"]), show_count(r["events"]),
             f"{r['auroc']:.3f} ({r['auroc_ci'][0]:.3f}-{r['auroc_ci'][1]:.3f})",
             f"{r['tpr']:.2f} ({r['tpr_ci'][0]:.2f}-{r['tpr_ci'][1]:.2f})", f"{r['fpr']:.2f}",
             f"{r['observed_expected']:.2f}", f"{r.get('tpr_difference', 0):+.2f}"]
        )  # fmt: skip
    report.table(["attribute", "group", "index events", "outcomes", "AUROC (95% CI)", "TPR (95% CI)", "FPR",
                  "observed/expected", "TPR vs largest group"], rows)  # fmt: skip
    if evaluation["fairness"]:
        report.table(
            ["attribute", "groups judged", "equal opportunity difference", "FPR gap", "AUROC gap", "O/E range"],
            [[f["attribute"], f["groups_judged"], f"{f['equal_opportunity_difference']:.3f}", f"{f['fpr_gap']:.3f}",
              f"{f['auroc_gap']:.3f}", f"{f['observed_expected_range'][0]:.2f}-{f['observed_expected_range'][1]:.2f}"]
             for f in evaluation["fairness"]],
        )  # fmt: skip
    if any("withheld" not in r for r in evaluation["subgroups"]):
        report.figure(subgroup_figure(evaluation["subgroups"]))


def subgroup_figure(subgroups: list[dict[str, Any]]) -> Any:
    """AUROC with its bootstrap CI for every subgroup large enough to judge."""
    import plotly.graph_objects as go

    judged = [r for r in subgroups if "withheld" not in r]
    fig = go.Figure()
    for attribute in dict.fromkeys(r["attribute"] for r in judged):
        group = [r for r in judged if r["attribute"] == attribute]
        fig.add_trace(
            go.Scatter(
                x=[r["auroc"] for r in group], y=[f"{attribute}: {r['group']}" for r in group], mode="markers",
                name=attribute,
                error_x={"type": "data", "symmetric": False,
                         "array": [r["auroc_ci"][1] - r["auroc"] for r in group],
                         "arrayminus": [r["auroc"] - r["auroc_ci"][0] for r in group]},
            )
        )  # fmt: skip
    fig.update_layout(title="AUROC by subgroup (95% bootstrap CI)", height=140 + 28 * len(judged),
                      xaxis_title="AUROC")  # fmt: skip
    return fig


def calibration_figure(calibration: dict[str, Any]) -> Any:
    """Deciles of predicted risk against the observed rate, the smoothed curve, and the ideal diagonal."""
    import plotly.graph_objects as go

    bins, smooth = calibration["bins"], calibration["smooth"]
    top = max([b["predicted"] for b in bins] + [b["observed"] for b in bins] + [0.05]) * 1.1
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="ideal", line={"dash": "dot"}))
    fig.add_trace(go.Scatter(x=[s["predicted"] for s in smooth], y=[s["observed"] for s in smooth], mode="lines",
                             name="smoothed"))  # fmt: skip
    fig.add_trace(go.Scatter(x=[b["predicted"] for b in bins], y=[b["observed"] for b in bins], mode="markers",
                             name="deciles", text=[f"{b['n']:,} index events" for b in bins]))  # fmt: skip
    fig.update_layout(
        title=f"Calibration (Eavg {calibration['eavg']:.3f}, E90 {calibration['e90']:.3f})",
        xaxis_title="predicted risk", yaxis_title="observed rate", height=420,
    )  # fmt: skip
    return fig


def decision_figure(curve: list[dict[str, float]]) -> Any:
    """Net benefit of the model against treating everyone and no one."""
    import plotly.graph_objects as go

    x = [c["threshold"] for c in curve]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=[c["model"] for c in curve], mode="lines", name="model"))
    fig.add_trace(go.Scatter(x=x, y=[c["treat_all"] for c in curve], mode="lines", name="everyone",
                             line={"dash": "dash"}))  # fmt: skip
    fig.add_trace(go.Scatter(x=x, y=[0.0] * len(x), mode="lines", name="no one", line={"dash": "dot"}))
    floor = min(0.0, min(c["model"] for c in curve)) - 0.01
    fig.update_layout(title="Decision curve: net benefit by threshold probability", xaxis_title="threshold",
                      yaxis_title="net benefit", yaxis_range=[floor, max(c["model"] for c in curve) * 1.2 + 0.01],
                      height=400)  # fmt: skip
    return fig


def write_model_card(path: Path, model: ModelResult) -> Path:
    """The TRIPOD+AI model card of a trained model, as HTML with its plots (plotly.js beside it)."""
    from carelake.cohorts import load_definition
    from carelake.errors import CarelakeError

    try:
        definition = load_definition(model.task)
        cohort_text = " ".join(definition.description.split()) if definition.description else definition.name
    except CarelakeError:
        cohort_text = f"the cohort {model.task} built in this lake"
    m = model.metrics
    card = Report(f"Model card: {model.task}", subtitle=f"{model.kind}, run {model.run_id}")
    card.heading("Intended use")
    card.text(
        f"Estimate each patient's risk for {model.task} at the index time, to help a care team decide whom to "
        "contact first. It supports, and does not replace, clinical judgement. It is not a diagnostic device."
    )
    card.heading("Data")
    card.text(
        f"Source: a carelake lake; training data SHA-256 {model.data_hash[:16]}…, config SHA-256 "
        f"{model.config_hash[:16]}…. Outcome rate {model.outcome_rate:.1%}. {SYNTHETIC_CAVEAT}"
    )
    card.heading("Cohort and outcome")
    card.text(cohort_text)
    card.heading("Predictors")
    card.text(
        f"{len(model.features)} features computed in SQL from events up "
        "to the index time only (docs/cohorts.md): demographics, counts in 30/180/365-day and all-history "
        "windows, condition and social-needs flags, labs and vitals, Charlson index, length of stay."
    )
    card.heading("Model development")
    card.text(
        f"{model.kind}; {model.split} split with every patient's index events on one side; {model.train_rows:,} "
        f"training and {model.test_rows:,} test index events; early stopping on validation patients; fixed seeds."
    )
    card.heading("Performance")
    card.text(
        f"AUROC {m['auroc']:.3f} (95% CI {m['auroc_ci'][0]:.3f}-{m['auroc_ci'][1]:.3f}) against "
        f"{model.baseline['name']} {model.baseline.get('auroc', float('nan')):.3f}."
    )
    model_overview(card, model)
    card.heading("Limitations")
    card.text(
        "Validated internally only, on held-out patients of the same lake; external and prospective validation "
        "are needed before any use in care. Deaths inside the time at risk count as no outcome (no competing-"
        "risk adjustment). Subgroups with fewer than 50 index events or 10 outcomes are not judged. Race and "
        "ethnicity are inputs because the data's risk depends on them; review that choice for your setting."
    )
    return card.save(path)


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{value:.0%}"


def worklist_overview(report: Report, result: ScoreResult, *, rows: int = 15) -> None:
    """The top of a care-coordination worklist: who to call first and why."""
    report.heading(f"Worklist: {result.task}")
    report.text(
        f"{result.patients:,} patients are at risk now (their time at risk is still running); {result.high_risk:,} "
        f"index events are in the high band. Reasons are the features raising each patient's risk most "
        f"(SHAP contributions; demographics are never given as a reason). Model {result.model}; full list in "
        f"the lake table {result.worklist_table}."
    )
    report.table(
        ["rank", "patient", "risk", "band", "why", "social needs", "open referrals"],
        [[r["rank"], r["patient_id"][:12] + "…", f"{r['risk']:.1%}", r["risk_band"], r["reasons"],
          r["social_needs"] or "none recorded", r["open_referrals"] or "none"] for r in result.top[:rows]],
    )  # fmt: skip
