"""The patient matching section: the trained model's match weights, how pairs scored, and what was linked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from carelake.privacy._cells import show_count
from carelake.reports._html import Report

if TYPE_CHECKING:
    from carelake.lake import Lake
    from carelake.match import MatchSummary

_AGREE, _DISAGREE, _PRIOR = "#2f7d4f", "#b42318", "#5b6578"
WEIGHT_AXIS_FLOOR = 40  # the chart's axis stops at -40; the table has the exact weights


def match_overview(lake: Lake, report: Report, summary: MatchSummary) -> None:
    """Add a matching run: key figures, the match-weight chart, the m/u table, scores and cluster sizes."""
    import math

    import plotly.graph_objects as go  # graph_objects, not express: no pandas needed

    report.heading("Patient matching")
    report.text(
        "Patient records that describe the same person, found by probabilistic record linkage (Splink, "
        f"Fellegi-Sunter model trained by expectation maximisation, no labels) on {summary.engine}. Pairs with a "
        f"match probability of at least {summary.threshold:g} are linked; each group of linked records shares a "
        "person key (silver tables patient_match_pairs and patient_links)."
    )
    report.metrics(
        {
            "Patient records": summary.records,
            "candidate pairs scored": summary.candidate_pairs,
            "matched pairs": summary.matched_pairs,
            "persons with more than one record": summary.persons_with_multiple_records,
            "distinct persons": summary.clusters,
            "seconds": summary.seconds,
        }
    )
    if not summary.comparisons:
        report.text("Fewer than two Patient records: nothing to compare.")
        return

    # Splink's match weights chart: one bar per comparison level, log2(m/u); the prior comes first.
    labels, weights, colours, hover = [], [], [], []
    prior = summary.probability_two_random_records_match
    if 0 < prior < 1:
        labels.append("prior: two random records match")
        weights.append(math.log2(prior / (1 - prior)))
        colours.append(_PRIOR)
        hover.append(f"probability {prior:.3g}")
    for comparison in summary.comparisons:
        for level in comparison["levels"]:
            if level["null"] or level["match_weight"] is None:
                continue
            labels.append(f"{comparison['name']}: {level['label']}")
            weights.append(level["match_weight"])
            colours.append(_AGREE if level["match_weight"] >= 0 else _DISAGREE)
            hover.append(f"m = {level['m_probability']:.3g}, u = {level['u_probability']:.3g}")
    fig = go.Figure(
        go.Bar(
            x=weights,
            y=labels,
            orientation="h",
            marker_color=colours,
            hovertext=hover,
            hovertemplate="%{y}<br>match weight %{x:.2f}<br>%{hovertext}<extra></extra>",
        )
    )
    low = max(min(weights), -WEIGHT_AXIS_FLOOR)  # a level never seen among matches has a huge negative weight
    fig.update_layout(
        title="Match weights of each comparison level (log2 m/u; the prior is the starting point)",
        xaxis={"title": "match weight", "range": [low - 1, max(max(weights), 0) + 1]},
        yaxis={"autorange": "reversed"},
        height=max(400, 22 * len(labels)),
        margin={"l": 320},
    )
    report.figure(fig)
    report.table(
        ["comparison", "level", "m", "u", "match weight", "estimated"],
        [
            [
                c["name"],
                lv["label"],
                _fmt(lv["m_probability"]),
                _fmt(lv["u_probability"]),
                "0 (no evidence)" if lv["null"] else _fmt(lv["match_weight"], ".2f"),
                "" if lv["null"] else ("yes" if lv["trained"] else "no: not seen in training, a default is used"),
            ]
            for c in summary.comparisons
            for lv in c["levels"]
        ],
    )
    untrained = [t["blocking_rule"] for t in summary.training if not t["trained"]]
    if untrained:
        report.text(
            "EM found no pairs to train on when blocking on "
            + "; ".join(untrained)
            + ": the comparisons it would have trained keep their other estimates or Splink's defaults."
        )

    bins = summary.histogram
    fig = go.Figure(
        go.Bar(
            x=[(b["from"] + b["to"]) / 2 for b in bins],
            y=[b["pairs"] for b in bins],
            width=[b["to"] - b["from"] for b in bins],
            marker_color=[_AGREE if b["from"] >= summary.threshold else _PRIOR for b in bins],
        )
    )
    fig.add_vline(x=summary.threshold, line_dash="dash", annotation_text=f"threshold {summary.threshold:g}")
    counts = [b["pairs"] for b in bins if b["pairs"]]
    log_scale = bool(counts) and max(counts) > 100 * min(counts)  # matches are few, non-matches many
    fig.update_layout(
        title="Match probability of every candidate pair",
        xaxis_title="match probability",
        yaxis_title="pairs (log scale)" if log_scale else "pairs",
        yaxis_type="log" if log_scale else "linear",
        bargap=0.05,
    )
    report.figure(fig)

    sizes = lake.sql(
        "SELECT records, count(*) AS persons FROM (SELECT person_key, count(*) AS records FROM patient_links "
        "GROUP BY person_key) AS c GROUP BY records ORDER BY records"
    ).to_pylist()
    report.table(
        ["records per person", "persons"],
        [[r["records"], show_count(r["persons"])] for r in sizes],
    )


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "" if value is None else format(value, spec)
