"""The report as pictures: `pareto.png` (the front against the budget, and hypervolume against device
hours) and a self-contained interactive `pareto.html` (plotly)."""

from __future__ import annotations

from html import escape as html_escape
from pathlib import Path

from search.core.cost import hours_text
from search.review.render import fmt_value
from search.review.report import ParetoReport, TrialPoint


def _hv_against_cost(report: ParetoReport) -> tuple[list[float], list[float]]:
    """(cumulative hours, hypervolume) after each trial, from (0, 0)."""
    return ([0.0] + [t.cumulative_hours for t in report.trials], [0.0] + [t.hypervolume_after for t in report.trials])


def write_png(report: ParetoReport, path: Path) -> Path:
    """Every measured trial, infeasible ones crossed, the front as a step line; below, the hypervolume
    against the cumulative device hours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, cost_ax) = plt.subplots(2, 1, figsize=(10, 9.5), dpi=120, gridspec_kw={"height_ratios": [2.2, 1]})
    scale, unit = (1e6, "MB") if report.budget_bytes >= 1_000_000 else (1e3, "kB")
    groups = {
        "dominated": dict(marker="o", color="0.55", s=28, label="dominated (feasible)"),
        "infeasible": dict(marker="x", color="tab:red", s=40, label="infeasible (measured over a limit)"),
    }
    for status, style in groups.items():
        pts = [t for t in report.trials if t.status == status]
        if pts:
            ax.scatter([t.bytes_total / scale for t in pts], [t.val_bpb for t in pts], zorder=2, **style)
    pruned = [t for t in report.trials if t.status == "pruned" and t.bytes_total is None and t.predicted_bytes]
    if pruned:  # no val_bpb: a tick on the bottom edge at the predicted size
        ax.scatter([t.predicted_bytes / scale for t in pruned], [0.015] * len(pruned), marker="|", s=120,
                   color="tab:orange", transform=ax.get_xaxis_transform(), zorder=2,
                   label="pruned before launch (at predicted bytes)")
        # the blended transform keeps them out of autoscaling: widen the x range by hand
        y_anchor = min((t.val_bpb for t in report.trials if t.status in ("front", *groups)), default=None)
        if y_anchor is not None:
            ax.update_datalim([(t.predicted_bytes / scale, y_anchor) for t in pruned])
    front = sorted(report.front, key=lambda t: t.bytes_total)
    if front:
        xs = [t.bytes_total / scale for t in front]
        ys = [t.val_bpb for t in front]
        ax.step(xs + [report.budget_bytes / scale], ys + [ys[-1]], where="post", color="tab:blue", lw=1.8, zorder=3)
        ax.scatter(xs, ys, color="tab:blue", s=55, zorder=4, edgecolors="black", linewidths=0.6, label="Pareto front")
        all_x = [t.bytes_total / scale for t in report.trials if t.bytes_total is not None] + [report.budget_bytes / scale]
        all_y = [t.val_bpb for t in report.trials if t.val_bpb is not None and t.bytes_total is not None]
        span_x, span_y = (max(all_x) - min(all_x)) or 1.0, (max(all_y) - min(all_y)) or 1.0
        placed: list[tuple[float, float, int]] = []
        for t, x, y in zip(front, xs, ys):
            # stack labels of points that nearly coincide instead of printing them on top of each other
            near = [dy for px, py, dy in placed if abs(px - x) / span_x < 0.2 and abs(py - y) / span_y < 0.04]
            dy = 6 if not near else min(near) - 13
            placed.append((x, y, dy))
            ax.annotate(f"{t.label} {t.val_bpb:.4f}", (x, y), textcoords="offset points", xytext=(6, dy),
                        fontsize=9, color="tab:blue", zorder=5,
                        bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.75))
    ax.axvline(report.budget_bytes / scale, color="tab:red", ls="--", lw=1.2, label=f"budget {report.budget_bytes:,} B")
    c = report.counts
    ax.set_title(
        f"{', '.join(report.experiments)}: {c['front']} on front, {c['dominated']} dominated, "
        f"{c['infeasible']} infeasible, {c['pruned']} pruned, {c['failed']} failed\n"
        f"hypervolume {report.hypervolume:.4f} bpb*MB vs ref (bpb {report.reference[0]:.4f}, {report.reference[1]:,.0f} B)",
        fontsize=10,
    )
    ax.set_xlabel(f"artifact bytes_total ({unit}, 1 {unit} = {scale:,.0f} bytes)")
    ax.set_ylabel("val_bpb (lower is better)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, borderaxespad=0.0)
    xs, ys = _hv_against_cost(report)
    cost_ax.step(xs, ys, where="post", color="tab:blue", lw=1.6)
    cost_ax.set_xlabel(f"cumulative cost ({report.cost_unit}: {'GPU' if report.cost_unit == 'GPU-h' else 'CPU'}-hours "
                       "of every training so far)")
    cost_ax.set_ylabel("hypervolume (bpb*MB)")
    cost_ax.set_title(f"hypervolume against cost: {hours_text(report.hours)} {report.cost_unit} in all", fontsize=10)
    cost_ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_html(report: ParetoReport, path: Path) -> Path:
    """Interactive plot with every parameter of each point on hover (plotly.js inlined)."""
    import plotly.graph_objects as go

    def hover(t: TrialPoint) -> str:
        head = f"<b>{t.label}</b> ({t.status}{f', rank {t.rank}' if t.rank else ''})<br>"
        head += f"val_bpb {t.val_bpb:.5f}<br>bytes {t.bytes_total:,} (headroom {t.headroom:,})<br>"
        params = "<br>".join(
            f"{k} = {fmt_value(v)}{' *' if k in t.changed else ''}" for k, v in sorted(t.params.items()) if str(v).strip() != ""
        )
        return head + (params or "(no parameters)")

    fig = go.Figure()
    styles = {
        "dominated": dict(symbol="circle", color="gray", size=8),
        "infeasible": dict(symbol="x", color="crimson", size=9),
        "front": dict(symbol="circle", color="royalblue", size=11, line=dict(color="black", width=1)),
    }
    names = {"dominated": "dominated (feasible)", "infeasible": "infeasible (over a limit)", "front": "Pareto front"}
    for status, marker in styles.items():
        pts = [t for t in report.trials if t.status == status]
        if status == "front":
            pts.sort(key=lambda t: t.bytes_total)
        if not pts:
            continue
        fig.add_trace(go.Scatter(
            x=[t.bytes_total for t in pts], y=[t.val_bpb for t in pts], name=names[status],
            mode="lines+markers+text" if status == "front" else "markers",
            line=dict(shape="hv", color="royalblue") if status == "front" else None,
            text=[t.label for t in pts] if status == "front" else None, textposition="top right",
            marker=marker, hovertext=[hover(t) for t in pts], hoverinfo="text",
        ))
    fig.add_vline(x=report.budget_bytes, line_dash="dash", line_color="crimson",
                  annotation_text=f"budget {report.budget_bytes:,} B", annotation_position="top left")
    fig.update_layout(
        title=f"Pareto front of {', '.join(report.experiments)} (hypervolume {report.hypervolume:.4f} bpb*MB)",
        xaxis_title="artifact bytes_total", yaxis_title="val_bpb (lower is better)", template="plotly_white",
        hoverlabel=dict(align="left"),
    )
    xs, ys = _hv_against_cost(report)
    cost = go.Figure(go.Scatter(x=xs, y=ys, mode="lines+markers", line=dict(shape="hv", color="royalblue"),
                                hovertext=["start"] + [f"after {t.label}" for t in report.trials], name="hypervolume"))
    cost.update_layout(title=f"Hypervolume against cost ({hours_text(report.hours)} {report.cost_unit} in all)",
                       xaxis_title=f"cumulative cost ({report.cost_unit})", yaxis_title="hypervolume (bpb*MB)",
                       template="plotly_white", height=380)
    body = fig.to_html(include_plotlyjs=True, full_html=False) + cost.to_html(include_plotlyjs=False, full_html=False)
    for name, imp in report.importance.items():
        if imp.by_objective:
            bars = go.Figure([go.Bar(name=objective, y=[p for p, _ in ranked], x=[v for _, v in ranked],
                                     orientation="h") for objective, ranked in imp.by_objective.items()])
            bars.update_layout(title=f"Parameter importance, {name} ({imp.evaluator}; {imp.trials} complete trials)",
                               xaxis_title="importance (sums to 1 per objective)", barmode="group",
                               template="plotly_white", height=120 + 40 * len(next(iter(imp.by_objective.values()))))
            body += bars.to_html(include_plotlyjs=False, full_html=False)
        else:
            body += f"<p>Parameter importance, {html_escape(name)}: {html_escape(imp.reason)}</p>"
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Pareto front</title></head>"
                    f"<body>{body}</body></html>\n", encoding="utf-8")
    return path
