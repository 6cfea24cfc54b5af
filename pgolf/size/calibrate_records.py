"""`python -m pgolf.size calibrate-records DIR...`: fit the trained-weights regime on record folders
and print every record's predicted against real model bytes; `python -m pgolf.size records DIR...`
prints the same table with the committed fit (seconds, nothing written).

The fit is one number, the tail `nu` of the trained weights (`pgolf.size.trained`), chosen to
minimise the squared log error over the fitted records' mean model bytes. Held-out records
(`pgolf.size.records.HELD_OUT`) are predicted, never fitted. The same run measures the prior an
external script gets (its parameter count and the format its log names, e.g. `int6+zstd`, alone)
on every record whose log names a width and a compressor, mapped or not: the largest
under-prediction becomes that prior's margin.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from pgolf.size.learner import parse_format
from pgolf.size.records import RecordPoint, find_record_dirs, load_points, read_runs
from pgolf.size.trained import CKEYS, NU_RANGE, STORAGES, TRAINED_PATH, TrainedRegime, load_trained

WITHIN = 0.02  # the accuracy the table counts (the bar: 2 %)


@dataclass(frozen=True)
class Row:
    folder: str
    role: str            # fit | held out
    real: float          # mean model bytes over the record's runs
    low: int
    high: int
    predicted: int

    @property
    def error(self) -> float:
        return (self.predicted - self.real) / self.real


def predicted_bytes(point: RecordPoint, regime: TrainedRegime) -> int:
    from pgolf.size.prediction import predict

    return predict(point.shape.env, regime=regime, stored=point.shape.stored).model_bytes


def cpu_model_bytes(point: RecordPoint) -> int:
    """The record's model bytes as the CPU calibration predicts them (the regime before this one)."""
    from pgolf.size.prediction import predict

    return predict(point.shape.env, stored=point.shape.stored).model_bytes


def rows(points: list[RecordPoint], regime: TrainedRegime) -> list[Row]:
    return [Row(p.shape.folder, "held out" if p.held_out else "fit", p.model_bytes,
                min(r.model_bytes for r in p.runs), max(r.model_bytes for r in p.runs), predicted_bytes(p, regime))
            for p in points]


def fit_nu(points: list[RecordPoint], progress=print) -> float:
    """The nu minimising the fitted records' squared log errors (bounded search in log nu)."""
    from scipy.optimize import minimize_scalar

    fitted = [p for p in points if not p.held_out]
    if not fitted:
        raise ValueError("no record to fit: every mapped record is held out (give the folders of more records)")
    ckeys = sorted({TrainedRegime.ckey_of(p.shape.env) for p in fitted})

    def loss(log_nu: float) -> float:
        regime = TrainedRegime.on_demand(math.exp(log_nu), ckeys=ckeys)
        errs = [math.log(predicted_bytes(p, regime) / p.model_bytes) for p in fitted]
        value = sum(e * e for e in errs)
        progress(f"  nu {math.exp(log_nu):8.2f}: rms error {math.sqrt(value / len(errs)):.3%}")
        return value

    res = minimize_scalar(loss, bounds=(math.log(NU_RANGE[0]), math.log(NU_RANGE[1])), method="bounded",
                          options={"xatol": 0.02})
    return float(math.exp(res.x))


@dataclass(frozen=True)
class PriorCheck:
    """The external-script prior on one record: parameters x the format's trained rate."""

    folder: str
    format: str
    params: int
    real: float
    predicted: int

    @property
    def error(self) -> float:
        return (self.predicted - self.real) / self.real


def prior_checks(roots: list[str | Path], regime: TrainedRegime) -> list[PriorCheck]:
    out = []
    for folder in find_record_dirs(roots):
        runs = [r for r in read_runs(folder) if parse_format(r.format)]
        if not runs:
            continue
        bits, ckey = parse_format(runs[0].format)
        real = sum(r.model_bytes for r in runs) / len(runs)
        out.append(PriorCheck(folder.name, runs[0].format, runs[0].model_params, real,
                              regime.prior_model_bytes(runs[0].model_params, bits, ckey)))
    return out


def run_margin(points: list[RecordPoint], regime: TrainedRegime) -> float:
    """Our trainer's prior margin: MARGIN_SAFETY x the largest |error| against any single run of a mapped
    record (a seed's own spread included), at least MARGIN_FLOOR."""
    from pgolf.size.learner import MARGIN_FLOOR, MARGIN_SAFETY

    worst = max(abs(predicted_bytes(p, regime) / r.model_bytes - 1.0) for p in points for r in p.runs)
    return max(MARGIN_FLOOR, MARGIN_SAFETY * worst)


def external_margin(checks: list[PriorCheck]) -> float:
    """The prior's margin: its largest under-prediction (real over predicted) on the records, at least 2 %."""
    worst = max((c.real / c.predicted - 1.0 for c in checks), default=0.1)
    return max(WITHIN, worst)


def format_table(table: list[Row], regime: TrainedRegime, checks: list[PriorCheck] | None = None) -> str:
    lines = [f"trained-weights regime: nu {regime.nu:.2f} (Student-t tail of trained weights; "
             f"{TRAINED_PATH.name}); prior margin {regime.margin:.2%} (1.5 x the largest error on one run)",
             f"{'record':<58s} {'role':<8s} {'real model bytes':>16s} {'runs range':>23s} {'predicted':>11s} "
             f"{'error':>7s}"]
    for r in table:
        span = f"{r.low:,}..{r.high:,}" if r.low != r.high else "1 run"
        lines.append(f"{r.folder:<58s} {r.role:<8s} {r.real:>16,.0f} {span:>23s} {r.predicted:>11,d} {r.error:>+7.2%}")
    for role in ("fit", "held out"):
        part = [r for r in table if r.role == role]
        if part:
            ok = sum(abs(r.error) <= WITHIN for r in part)
            lines.append(f"{role}: {ok}/{len(part)} within {WITHIN:.0%}, max |error| "
                         f"{max(abs(r.error) for r in part):.2%}")
    if checks:
        lines.append("")
        lines.append("the prior of a script pgolf.size cannot build (parameters x the trained rate of its "
                     "log's format):")
        for c in checks:
            lines.append(f"  {c.folder:<66s} {c.format:<12s} {c.params:>11,d} params {c.real:>12,.0f} "
                         f"predicted {c.predicted:>11,d} {c.error:>+7.2%}")
        lines.append(f"  {len(checks)} records; margin (largest under-prediction): {external_margin(checks):.1%}")
    return "\n".join(lines)


def skipped_lines(skipped: list[tuple[str, str]]) -> list[str]:
    return [f"not used: {folder}: {why}" for folder, why in skipped]


def calibrate_records(roots: list[str | Path], out: str | Path = TRAINED_PATH, progress=print) -> TrainedRegime:
    """Fit nu on the records under roots, tabulate every compressor at it, save, print the table."""
    t0 = time.time()
    points, skipped = load_points(roots)
    if not points:
        raise ValueError(f"no record our trainer expresses under {', '.join(map(str, roots))} (give "
                         "../shared/conformance/records or record folders of openai/parameter-golf)")
    for line in skipped_lines(skipped):
        progress(line)
    progress(f"fitting nu on {sum(not p.held_out for p in points)} records ({sum(p.held_out for p in points)} "
             "held out)")
    nu = fit_nu(points, progress)
    regime = TrainedRegime.build(nu, ckeys=CKEYS, storages=STORAGES)
    table = rows(points, regime)
    checks = prior_checks(roots, regime)
    regime.external_margin = external_margin(checks)
    regime.margin = run_margin(points, regime)
    regime.meta = {"made_by": "python -m pgolf.size calibrate-records", "made_at": time.strftime("%Y-%m-%d"),
                   "fitted": [r.folder for r in table if r.role == "fit"],
                   "held_out": [r.folder for r in table if r.role != "fit"],
                   "errors": {r.folder: round(r.error, 5) for r in table},
                   # real model bytes over the CPU calibration's prediction (bench/efficiency_model.py's shift)
                   "cpu_ratio": {p.shape.folder: round(p.model_bytes / cpu_model_bytes(p), 5) for p in points},
                   "seconds": round(time.time() - t0, 1)}
    regime.save(out)
    progress(format_table(table, regime, checks))
    return regime


def report_records(roots: list[str | Path], regime: TrainedRegime | None = None, progress=print) -> list[Row]:
    """The table with the committed (or given) regime, nothing refitted or written."""
    regime = regime or load_trained()
    points, skipped = load_points(roots)
    for line in skipped_lines(skipped):
        progress(line)
    table = rows(points, regime)
    progress(format_table(table, regime, prior_checks(roots, regime)))
    return table
