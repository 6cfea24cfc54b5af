"""Reading experiment folders and classifying their trials against one budget: the Pareto front, its
hypervolume and how it grew with the device hours spent."""

from __future__ import annotations

import csv
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from search.core import front as frontlib
from search.core.cost import Device
from search.core.layout import EXPERIMENT_FILE, TRIALS_CSV
from search.core.limits import DEFAULT_BUDGET_BYTES, row_over, time_limits
from search.review.agreement import Agreement, rank_agreement
from search.review.report import ParetoError, ParetoReport, ResultsFolder, TrialPoint, parse_number
from search.store.settings import read_experiment, top_rung
from search.store.trials_csv import PARAM_PREFIX, read_trials_csv, row_params

REQUIRED_IF_EMPTY = ("number", "state", "val_bpb", "bytes_total")  # a header-only trials.csv is fine


def load_experiment(path: str | Path) -> ResultsFolder:
    """Read one `results/<name>/` folder; raises ParetoError with the fix."""
    folder = Path(path)
    if not folder.is_dir():
        raise ParetoError(f"{folder} is not a folder; pass an experiment folder such as results/<name>")
    csv_path = folder / TRIALS_CSV
    if not csv_path.is_file():
        raise ParetoError(f"{folder} has no trials.csv; run `python -m search.run` for it first or pass another folder")
    meta: dict[str, Any] = {}
    if (folder / EXPERIMENT_FILE).is_file():
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
        number = parse_number(row.get("number"))
        if number is None or number != int(number) or not str(row.get("state") or "").isupper():
            raise ParetoError(f"{csv_path} line {line} is not a trial row (number {row.get('number')!r}, state "
                              f"{row.get('state')!r}); {rewrite}, or remove the line")
    return ResultsFolder(name=str(meta.get("name") or folder.name), path=folder, meta=meta, rows=rows)


def _same(value: str, default: Any) -> bool:
    a, b = parse_number(value), parse_number(str(default)) if not isinstance(default, bool) else None
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


def experiment_device(exp: ResultsFolder) -> Device:
    """What each trial of the experiment held: its GPUs (none with --smoke), else one CPU."""
    gpus = 0 if exp.meta.get("smoke") else int(exp.meta.get("gpus_per_trial") or 0)
    return Device(gpus, int(exp.meta.get("cpus_per_trial") or 1))


def _trial_point(exp: ResultsFolder, row: dict[str, str], merged: bool) -> TrialPoint:
    number = int(float(row["number"]))
    metrics = {k: parse_number(row.get(k)) for k in ("gpu_seconds", "wall_seconds", "train_seconds")}
    params = row_params(row)
    bytes_total = parse_number(row.get("bytes_total"))
    predicted = parse_number(row.get("predicted_bytes"))
    return TrialPoint(
        experiment=exp.name,
        number=number,
        label=f"{exp.name}#{number}" if merged else f"#{number}",
        state=(row.get("state") or "").strip().upper(),
        reason=(row.get("reason") or "").strip(),
        val_bpb=parse_number(row.get("val_bpb")),
        val_loss=parse_number(row.get("val_loss")),
        bytes_total=None if bytes_total is None else int(bytes_total),
        params=params,
        changed=changed_params(params, exp.defaults),
        predicted_bytes=None if predicted is None else int(predicted),
        over_limits=row_over(row, time_limits(exp.meta.get("limits"))),
        hours=experiment_device(exp).hours(metrics) if (row.get("state") or "").upper() != "PRUNED" else None,
        fidelity=None if parse_number(row.get("fidelity")) is None else int(parse_number(row.get("fidelity"))),
    )


def ladder_agreement(exp: ResultsFolder) -> list[Agreement]:
    """For an experiment with a fidelity ladder: Spearman's rho of val_bpb between its rungs."""
    top = top_rung(exp.meta)
    if top is None:
        return []
    measured = []
    for row in exp.rows:
        value, rung = parse_number(row.get("val_bpb")), parse_number(row.get("fidelity"))
        if (row.get("state") or "").upper() == "COMPLETE" and value is not None and rung is not None:
            measured.append((int(rung), tuple(sorted(row_params(row).items())), value))
    return rank_agreement(measured, top)


def analyse(experiments: Sequence[ResultsFolder], budget: int | None = None, ref_bpb: float | None = None) -> ParetoReport:
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
    trials = [_trial_point(e, row, merged) for e in experiments for row in e.rows
              if not row.get("imported_from") and row.get("duplicate_of") in (None, "")]
    tops = {e.name: top_rung(e.meta) for e in experiments}
    lower = sum(1 for t in trials if t.fidelity is not None and tops[t.experiment] is not None
                and t.fidelity < tops[t.experiment] and t.state == "COMPLETE")
    if lower:
        notes.append(f"{lower} training(s) on the fidelity ladder's lower rungs are not results (only the top "
                     "rung's are): they count in the cost, not on the front")
    imported = sum(1 for e in experiments for row in e.rows if row.get("imported_from"))
    if imported:
        notes.append(f"{imported} trial(s) imported by --warm-start are not shown (they are the earlier "
                     "experiments'; pass those folders to see them)")
    repeats = sum(1 for e in experiments for row in e.rows if row.get("duplicate_of") not in (None, ""))
    if repeats:
        notes.append(f"{repeats} proposal(s) repeated a configuration trained already: told that training's result, "
                     "not trained again, not shown (trials.csv's duplicate_of names the training)")
    order = {e.name: i for i, e in enumerate(experiments)}
    trials.sort(key=lambda t: (order[t.experiment], t.number))

    for t in trials:
        measured = t.state == "COMPLETE" and t.val_bpb is not None and t.bytes_total is not None
        top = tops[t.experiment]
        if measured and top is not None and t.fidelity is not None and t.fidelity < top:
            t.status = "lower_rung"
        elif measured:
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
    spent = 0.0
    for t in trials:
        spent += t.hours or 0.0
        t.cumulative_hours = spent
    units = sorted({experiment_device(e).unit for e in experiments})
    if len(units) > 1:
        notes.append(f"the experiments count cost in {' and '.join(units)}; their hours are added as they are")

    counts = {"trials": len(trials)}
    counts["complete"] = sum(t.status in ("front", "dominated", "infeasible") for t in trials)
    for status in ("front", "dominated", "infeasible", "lower_rung", "pruned", "failed", "running"):
        counts[status] = sum(t.status == status for t in trials)
    if not on_front:
        notes.append("no complete trial fits the budget, so the front is empty")
    return ParetoReport(
        agreement={e.name: a for e in experiments if (a := ladder_agreement(e))},
        experiments=[e.name for e in experiments],
        budget_bytes=budget,
        reference=reference,
        trials=trials,
        front=on_front,
        counts=counts,
        hypervolume=history[-1] if history else 0.0,
        notes=notes,
        cost_unit=units[0],
    )
