"""python -m search.pareto: the feasible Pareto front of one or more experiments.

Reads `experiment.json` and `trials.csv` (schema in docs/design.md), keeps the
trials that completed within the byte budget, and reports the front that
minimises (`val_bpb`, `bytes_total`), the hypervolume and how it grew, plus
`pareto.png` and a self-contained interactive `pareto.html`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from search import front as frontlib
from search.results import PARAM_PREFIX, broken_limits, read_experiment, read_trials_csv, row_params, time_limits
from search.space import DEFAULT_BUDGET_BYTES

FORMATS = ("text", "csv", "json", "markdown")
REQUIRED_IF_EMPTY = ("number", "state", "val_bpb", "bytes_total")  # a header-only trials.csv is fine


class ParetoError(Exception):
    """Bad input; the message is one line naming the problem and the fix."""


@dataclass
class Experiment:
    """One experiment folder as read from disk."""

    name: str
    path: Path
    meta: dict[str, Any]
    rows: list[dict[str, str]]

    @property
    def defaults(self) -> dict[str, Any]:
        return dict(self.meta.get("defaults") or {})


@dataclass
class TrialPoint:
    """One trial of a (possibly merged) experiment, classified against the budget."""

    experiment: str
    number: int
    label: str
    state: str
    reason: str
    val_bpb: float | None
    val_loss: float | None
    bytes_total: int | None
    params: dict[str, str]
    changed: dict[str, str]
    predicted_bytes: int | None = None
    over_limits: list[str] = field(default_factory=list)  # time limits it broke (train_seconds, eval_seconds)
    status: str = ""  # front | dominated | infeasible | pruned | failed | running
    rank: int | None = None
    headroom: int | None = None
    hypervolume_after: float = 0.0


@dataclass
class ParetoReport:
    """Everything the table, the machine-readable formats and the plots show."""

    experiments: list[str]
    budget_bytes: int
    reference: tuple[float, float]  # (val_bpb, bytes_total)
    trials: list[TrialPoint]
    front: list[TrialPoint]
    counts: dict[str, int]
    hypervolume: float
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- reading


def _number(text: str | None) -> float | None:
    if text is None or str(text).strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def load_experiment(path: str | Path) -> Experiment:
    """Read one `results/<name>/` folder; raises ParetoError with the fix."""
    folder = Path(path)
    if not folder.is_dir():
        raise ParetoError(f"{folder} is not a folder; pass an experiment folder such as results/<name>")
    csv_path = folder / "trials.csv"
    if not csv_path.is_file():
        raise ParetoError(f"{folder} has no trials.csv; run `python -m search.run` for it first or pass another folder")
    meta: dict[str, Any] = {}
    if (folder / "experiment.json").is_file():
        try:
            meta = asdict(read_experiment(folder))
        except ValueError as exc:
            raise ParetoError(str(exc).removeprefix("error: ")) from None
    rewrite = f"`python -m search.run SPACE --name {folder.name} --resume` rewrites it from study.db"
    try:
        rows = read_trials_csv(csv_path)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ParetoError(f"{csv_path} cannot be read as CSV ({exc}); {rewrite}") from None
    missing = {"number", "state", "val_bpb", "bytes_total"} - set(rows[0] if rows else REQUIRED_IF_EMPTY)
    if missing:
        raise ParetoError(f"{csv_path} lacks column(s) {', '.join(sorted(missing))}; {rewrite}")
    for line, row in enumerate(rows, start=2):
        number = _number(row.get("number"))
        if number is None or number != int(number) or not str(row.get("state") or "").isupper():
            raise ParetoError(f"{csv_path} line {line} is not a trial row (number {row.get('number')!r}, state "
                              f"{row.get('state')!r}); {rewrite}, or remove the line")
    return Experiment(name=str(meta.get("name") or folder.name), path=folder, meta=meta, rows=rows)


# ---------------------------------------------------------------- analysis


def _same(value: str, default: Any) -> bool:
    a, b = _number(value), _number(str(default)) if not isinstance(default, bool) else None
    if a is not None and b is not None:
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return str(value).strip().lower() == str(default).strip().lower()


def changed_params(params: dict[str, str], defaults: dict[str, Any]) -> dict[str, str]:
    """Parameters whose value differs from the space's defaults (unset ones skipped)."""
    out: dict[str, str] = {}
    for name, value in params.items():
        if value is None or str(value).strip() == "":
            continue
        default = defaults.get(name, defaults.get(PARAM_PREFIX + name))
        if default is None or not _same(value, default):
            out[name] = value
    return out


def _trial_point(exp: Experiment, row: dict[str, str], merged: bool) -> TrialPoint:
    number = int(float(row["number"]))
    params = row_params(row)
    bytes_total = _number(row.get("bytes_total"))
    predicted = _number(row.get("predicted_bytes"))
    return TrialPoint(
        experiment=exp.name,
        number=number,
        label=f"{exp.name}#{number}" if merged else f"#{number}",
        state=(row.get("state") or "").strip().upper(),
        reason=(row.get("reason") or "").strip(),
        val_bpb=_number(row.get("val_bpb")),
        val_loss=_number(row.get("val_loss")),
        bytes_total=None if bytes_total is None else int(bytes_total),
        params=params,
        changed=changed_params(params, exp.defaults),
        predicted_bytes=None if predicted is None else int(predicted),
        over_limits=broken_limits(row, time_limits(exp.meta)),
    )


def analyse(experiments: Sequence[Experiment], budget: int | None = None, ref_bpb: float | None = None) -> ParetoReport:
    """Merge the experiments' trials and classify them against one budget."""
    if not experiments:
        raise ParetoError("no experiment given; pass at least one results/<name> folder")
    notes: list[str] = []
    if budget is None:
        budgets = sorted({int(e.meta.get("budget_bytes") or DEFAULT_BUDGET_BYTES) for e in experiments})
        budget = budgets[0]
        if len(budgets) > 1:
            notes.append(f"experiments have different budgets {budgets}; using the smallest, {budget} (override with --budget)")
    if budget <= 0:
        raise ParetoError(f"--budget must be a positive number of bytes, got {budget}")
    if ref_bpb is not None and not (math.isfinite(ref_bpb) and ref_bpb > 0):
        raise ParetoError(f"--ref-bpb must be a positive val_bpb, got {ref_bpb}")
    merged = len(experiments) > 1
    trials = [_trial_point(e, row, merged) for e in experiments for row in e.rows]
    order = {e.name: i for i, e in enumerate(experiments)}
    trials.sort(key=lambda t: (order[t.experiment], t.number))

    for t in trials:
        measured = t.state == "COMPLETE" and t.val_bpb is not None and t.bytes_total is not None
        if measured:
            t.headroom = budget - t.bytes_total  # type: ignore[operator]
            within = t.bytes_total <= budget and not t.over_limits  # type: ignore[operator]
            t.status = "dominated" if within else "infeasible"
        elif t.state == "PRUNED":
            t.status = "pruned"
        elif t.state in ("FAIL", "COMPLETE"):
            t.status = "failed"  # a COMPLETE row without metrics is a failure to measure
        else:
            t.status = "running"

    feasible = [t for t in trials if t.status == "dominated"]
    points = [(t.val_bpb, t.bytes_total / 1e6) for t in feasible]  # type: ignore[operator]
    on_front = [feasible[i] for i in frontlib.non_dominated(points)]
    on_front.sort(key=lambda t: (t.val_bpb, t.bytes_total))
    for rank, t in enumerate(on_front, start=1):
        t.status, t.rank = "front", rank

    if ref_bpb is None:
        ref_bpb = max((t.val_bpb for t in feasible), default=float("nan"))  # type: ignore[type-var]
    reference = (float(ref_bpb), float(budget))
    ref_scaled = (reference[0], reference[1] / 1e6)
    history = frontlib.hypervolume_history(
        [(t.val_bpb, t.bytes_total / 1e6) if t.status in ("front", "dominated") else None for t in trials],  # type: ignore[operator]
        ref_scaled,
    ) if not math.isnan(ref_scaled[0]) else [0.0] * len(trials)
    for t, hv in zip(trials, history):
        t.hypervolume_after = hv

    counts = {"trials": len(trials)}
    counts["complete"] = sum(t.status in ("front", "dominated", "infeasible") for t in trials)
    for status in ("front", "dominated", "infeasible", "pruned", "failed", "running"):
        counts[status] = sum(t.status == status for t in trials)
    if not on_front:
        notes.append("no complete trial fits the budget, so the front is empty")
    return ParetoReport(
        experiments=[e.name for e in experiments],
        budget_bytes=budget,
        reference=reference,
        trials=trials,
        front=on_front,
        counts=counts,
        hypervolume=history[-1] if history else 0.0,
        notes=notes,
    )


# ---------------------------------------------------------------- rendering


def fmt_value(value: str) -> str:
    """A parameter value for people: floats to 4 significant digits, the rest as is."""
    number = _number(value)
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
        [str(t.rank), t.label, f"{t.val_bpb:.4f}", f"{t.bytes_total:,}", f"{t.headroom:,}", _fmt_changed(t)]
        for t in report.front
    ]


HEADER = ["rank", "trial", "val_bpb", "bytes", "headroom", "changed from defaults"]


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
        f"infeasible {c['infeasible']}), pruned {c['pruned']}, failed {c['failed']}, running {c['running']}"
        + (f" (pruned/failed by reason: {detail})" if detail else ""),
        f"hypervolume {report.hypervolume:.4f} bpb*MB against reference (val_bpb "
        + ("none: no feasible trial" if math.isnan(ref_bpb) else f"{ref_bpb:.4f}") + f", bytes {ref_bytes:,.0f})",
        f"hypervolume growth: {growth}",
    ] + [f"note: {n}" for n in report.notes]


def render_text(report: ParetoReport) -> str:
    rows = [HEADER] + _front_rows(report)
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER) - 1)]
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
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join(["---:", ":---", "---:", "---:", "---:", ":---"]) + "|",
    ]
    for r in _front_rows(report):
        r[-1] = " ".join(f"`{p}`" for p in r[-1].split(" ")) if r[-1] != "(defaults)" else r[-1]
        lines.append("| " + " | ".join(r) + " |")
    lines.append("")
    lines += [f"- {line}" for line in _summary_lines(report)]
    return "\n".join(lines) + "\n"


CSV_FIELDS = [
    "experiment", "trial", "status", "rank", "state", "reason", "val_bpb", "val_loss",
    "bytes_total", "headroom", "hypervolume_after", "changed",
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
            repr(t.hypervolume_after), ";".join(f"{k}={v}" for k, v in sorted(t.changed.items())),
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
        "history": [{"trial": t.label, "hypervolume": t.hypervolume_after} for t in report.trials],
        "trials": [trial(t) for t in report.trials],
        "notes": report.notes,
    }


def render_json(report: ParetoReport) -> str:
    return json.dumps(report_dict(report), indent=2, default=str, allow_nan=False) + "\n"


RENDERERS = {"text": render_text, "csv": render_csv, "json": render_json, "markdown": render_markdown}


# ---------------------------------------------------------------- plots


def write_png(report: ParetoReport, path: Path) -> Path:
    """Every measured trial, infeasible ones crossed, the front as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=120)
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
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


# ---------------------------------------------------------------- CLI


def default_out_dir(experiments: Sequence[Experiment]) -> Path:
    """One experiment: its own folder. Several: a sibling `merged-<a>+<b>` folder."""
    if len(experiments) == 1:
        return experiments[0].path
    return experiments[0].path.parent / ("merged-" + "+".join(e.path.name for e in experiments))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.pareto", description=__doc__.split("\n")[0])
    p.add_argument("experiments", nargs="+", help="experiment folders (results/<name>); several merge into one front")
    p.add_argument("--budget", type=int, default=None, help="byte budget (default: experiment.json budget_bytes, else 16,000,000)")
    p.add_argument("--ref-bpb", type=float, default=None, help="hypervolume reference val_bpb (default: worst feasible val_bpb)")
    p.add_argument("--format", choices=FORMATS, default="text", help="output format on stdout")
    p.add_argument("--out", type=Path, default=None, help="folder for pareto.png and pareto.html")
    p.add_argument("--no-plots", action="store_true", help="print only, write no pareto.png / pareto.html")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        experiments = [load_experiment(p) for p in args.experiments]
        names = [e.name for e in experiments]
        if len(set(names)) != len(names):
            raise ParetoError(f"experiment names repeat ({', '.join(names)}); pass each folder once")
        report = analyse(experiments, budget=args.budget, ref_bpb=args.ref_bpb)
    except ParetoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(RENDERERS[args.format](report))
    sys.stdout.flush()
    if not args.no_plots:
        out = args.out or default_out_dir(experiments)
        try:
            out.mkdir(parents=True, exist_ok=True)
            png, html = write_png(report, out / "pareto.png"), write_html(report, out / "pareto.html")
        except OSError as exc:  # the report is on stdout already: only the plots are missing
            print(f"error: cannot write the plots in {out} ({exc.strerror or exc}); pass --out with a folder "
                  "you can write to, or --no-plots", file=sys.stderr)
            return 2
        print(f"wrote {png} and {html}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
