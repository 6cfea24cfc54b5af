"""How `search.pareto` shows a report on stdout: text, markdown, CSV and JSON (the computation is
`search.review.analysis.analyse`, the plots `search.review.plots`)."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from typing import Any

from search.core.cost import hours_text
from search.review.report import ParetoReport, TrialPoint, parse_number



def fmt_value(value: str) -> str:
    """A parameter value for people: floats to 4 significant digits, the rest as is."""
    number = parse_number(value)
    if number is None or number.is_integer() or any(c.isalpha() for c in str(value)):
        return str(value)
    return f"{number:.4g}"


def _fmt_changed(t: TrialPoint) -> str:
    return " ".join(f"{k}={fmt_value(v)}" for k, v in sorted(t.changed.items())) or "(defaults)"


def _growth(report: ParetoReport) -> list[tuple[str, float]]:
    """(trial label, hypervolume) at each trial that changed the hypervolume."""
    steps, last = [], 0.0
    for t in report.trials:
        if t.hypervolume_after != last:
            steps.append((t.label, t.hypervolume_after))
            last = t.hypervolume_after
    return steps


def _front_rows(report: ParetoReport) -> list[list[str]]:
    return [
        [str(t.rank), t.label, f"{t.val_bpb:.4f}", f"{t.bytes_total:,}", f"{t.headroom:,}",
         "" if t.hours is None else hours_text(t.hours), hours_text(t.cumulative_hours), _fmt_changed(t)]
        for t in report.front
    ]


def _header(report: ParetoReport) -> list[str]:
    u = report.cost_unit
    return ["rank", "trial", "val_bpb", "bytes", "headroom", u, f"{u} so far", "changed from defaults"]


def _cost_to_reach(report: ParetoReport, fraction: float) -> float | None:
    """Device hours spent when the hypervolume first reached `fraction` of its final value."""
    goal = fraction * report.hypervolume
    return next((t.cumulative_hours for t in report.trials if report.hypervolume > 0 and t.hypervolume_after >= goal),
                None)


def _summary_lines(report: ParetoReport) -> list[str]:
    c = report.counts
    ref_bpb, ref_bytes = report.reference
    why: dict[str, int] = {}
    for t in report.trials:
        if t.status in ("pruned", "failed"):
            why[t.reason or "no reason"] = why.get(t.reason or "no reason", 0) + 1
    detail = ", ".join(f"{k} {v}" for k, v in sorted(why.items()))
    growth = " -> ".join(f"{label}: {hv:.6g}" for label, hv in _growth(report)) or "(never above 0)"
    return [
        f"trials {c['trials']}: complete {c['complete']} (front {c['front']}, dominated {c['dominated']}, "
        f"infeasible {c['infeasible']}), " + (f"on lower rungs {c['lower_rung']}, " if c["lower_rung"] else "")
        + f"pruned {c['pruned']}, failed {c['failed']}, running {c['running']}"
        + (f" (pruned/failed by reason: {detail})" if detail else ""),
        f"hypervolume {report.hypervolume:.4f} bpb*MB against reference (val_bpb "
        + ("none: no feasible trial" if math.isnan(ref_bpb) else f"{ref_bpb:.4f}") + f", bytes {ref_bytes:,.0f})",
        f"hypervolume growth: {growth}",
        f"cost: {hours_text(report.hours)} {report.cost_unit} over {sum(t.hours is not None for t in report.trials)} "
        f"training(s){_rung_hours(report)}; 90 % of the final hypervolume after "
        + (f"{hours_text(h)} {report.cost_unit}" if (h := _cost_to_reach(report, 0.9)) is not None else "n/a"),
    ] + _agreement_lines(report) + [line if len(report.importance) == 1 else f"{name}: {line}"
         for name, imp in report.importance.items() for line in imp.lines()] + [f"note: {n}" for n in report.notes]


def _rung_hours(report: ParetoReport) -> str:
    """A fidelity ladder's hours per rung, e.g. ' (per rung: 0: 1.20, 1: 2.40)'; '' without one."""
    rungs: dict[int, float] = {}
    for t in report.trials:
        if t.fidelity is not None and t.hours is not None:
            rungs[t.fidelity] = rungs.get(t.fidelity, 0.0) + t.hours
    return " (per rung: " + ", ".join(f"{k}: {hours_text(h)}" for k, h in sorted(rungs.items())) + ")" if rungs else ""


def _agreement_lines(report: ParetoReport) -> list[str]:
    """How far a fidelity ladder's cheap rungs rank val_bpb as the higher ones do."""
    lines = []
    for name, agreements in report.agreement.items():
        where = f" ({name})" if len(report.experiments) > 1 else ""
        lines += [f"rank agreement{where}: {a.line()}" for a in agreements]
    return lines


def render_text(report: ParetoReport) -> str:
    header = _header(report)
    rows = [header] + _front_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = [
        f"Pareto front of {', '.join(report.experiments)} (minimise val_bpb and bytes_total; budget {report.budget_bytes:,} bytes)"
    ]
    for r in rows:
        cells = [r[i].rjust(widths[i]) if i != 1 else r[i].ljust(widths[i]) for i in range(len(widths))]
        lines.append("  ".join(cells) + "  " + r[-1])
    return "\n".join(lines + [""] + _summary_lines(report)) + "\n"


def render_markdown(report: ParetoReport) -> str:
    lines = [
        f"**Pareto front** of {', '.join(f'`{e}`' for e in report.experiments)} "
        f"(minimise val_bpb and bytes_total; budget {report.budget_bytes:,} bytes)",
        "",
        "| " + " | ".join(_header(report)) + " |",
        "|" + "|".join(["---:", ":---", "---:", "---:", "---:", "---:", "---:", ":---"]) + "|",
    ]
    for r in _front_rows(report):
        r[-1] = " ".join(f"`{p}`" for p in r[-1].split(" ")) if r[-1] != "(defaults)" else r[-1]
        lines.append("| " + " | ".join(r) + " |")
    lines.append("")
    lines += [f"- {line}" for line in _summary_lines(report)]
    return "\n".join(lines) + "\n"


CSV_FIELDS = [
    "experiment", "trial", "status", "rank", "state", "reason", "val_bpb", "val_loss",
    "bytes_total", "headroom", "hypervolume_after", "hours", "cumulative_hours", "changed",
]


def render_csv(report: ParetoReport) -> str:
    """One row per trial: the front first in rank order, then the rest in trial order."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    rest = [t for t in report.trials if t.status != "front"]
    for t in report.front + rest:
        writer.writerow([
            t.experiment, t.number, t.status, t.rank or "", t.state, t.reason,
            "" if t.val_bpb is None else repr(t.val_bpb), "" if t.val_loss is None else repr(t.val_loss),
            "" if t.bytes_total is None else t.bytes_total, "" if t.headroom is None else t.headroom,
            repr(t.hypervolume_after), "" if t.hours is None else repr(t.hours), repr(t.cumulative_hours),
            ";".join(f"{k}={v}" for k, v in sorted(t.changed.items())),
        ])
    return buf.getvalue()


def report_dict(report: ParetoReport) -> dict[str, Any]:
    def trial(t: TrialPoint) -> dict[str, Any]:
        return asdict(t)

    return {
        "experiments": report.experiments,
        "budget_bytes": report.budget_bytes,
        "reference": {"val_bpb": None if math.isnan(report.reference[0]) else report.reference[0],
                      "bytes_total": report.reference[1]},
        "hypervolume": report.hypervolume,
        "hypervolume_units": "val_bpb x MB (1 MB = 1e6 bytes)",
        "counts": report.counts,
        "front": [trial(t) for t in report.front],
        "cost_unit": report.cost_unit,
        "hours": report.hours,
        "history": [{"trial": t.label, "hypervolume": t.hypervolume_after, "cumulative_hours": t.cumulative_hours}
                    for t in report.trials],
        "trials": [trial(t) for t in report.trials],
        "notes": report.notes,
        "rank_agreement": {name: [{"low": a.low, "high": a.high, "configurations": a.n, "spearman": a.rho}
                                  for a in agreements] for name, agreements in report.agreement.items()},
        "importance": {name: {"evaluator": imp.evaluator, "trials": imp.trials, "reason": imp.reason or None,
                              "by_objective": {k: dict(v) for k, v in imp.by_objective.items()}}
                       for name, imp in report.importance.items()},
    }


def render_json(report: ParetoReport) -> str:
    return json.dumps(report_dict(report), indent=2, default=str, allow_nan=False) + "\n"


RENDERERS = {"text": render_text, "csv": render_csv, "json": render_json, "markdown": render_markdown}
