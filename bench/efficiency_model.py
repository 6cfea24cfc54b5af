"""What bench/search_efficiency.py measures: the problem (tables, budget, true front, costs) and one run.

A `Problem` is the full-fidelity table (its feasible front is the truth), optionally
a second table of the same configurations trained cheaper (rung 0 of a two-rung
ladder), the byte budget and how a training is costed. A `Run` is one method with
one seed: every training in order with its cost and, at full fidelity, its point.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from search.core.front import hypervolume, hypervolume_history
from search.runner.replay import ReplayTable, load_table
from search.space.ladder import Ladder
from search.space.load import load_space
from search.space.spec import SpaceSpec

LADDER_FRACTION = 1 / 3
CHECKPOINTS = (25, 50, 100)   # hypervolume ratio reported after this much cost
THRESHOLDS = (0.7, 0.9)       # cost to reach these hypervolume ratios


@dataclass(frozen=True)
class Problem:
    """The benchmark: the space, its table (the full fidelity), the budget and the true front's
    hypervolume; with `low`, a second table of the same configurations trained cheaper (rung 0 of a
    two-rung ladder). A training's cost is counted in full trainings (`cost`)."""

    spec: SpaceSpec
    table: ReplayTable
    budget: int
    ref: tuple[float, float]
    true_hv: float
    low: ReplayTable | None = None
    cost_column: str = "steps"    # or wall_seconds / train_seconds, measured
    unit_seconds: float = 1.0     # what one cost unit is in that column (the full table's median)
    overhead: float = 0.0         # with steps: a fixed cost per training, as a fraction of a full one
    shift: float = 1.0            # the regime shift's model-bytes ratio (1: the tables as measured)

    def measure(self, env: Mapping[str, str], rung: int | None = None) -> tuple[float, int]:
        row = (self.low if rung == 0 else self.table).lookup(env)  # type: ignore[union-attr]
        return float(row["val_bpb"]), int(row["bytes_total"])

    def cost(self, env: Mapping[str, str], rung: int | None = None) -> float:
        """One training's cost in full trainings: by steps, (steps / full steps + overhead) / (1 + overhead),
        as on the competition's hardware, where every full training runs to the same wallclock cap; else
        its measured seconds over the full table's median."""
        row = (self.low if rung == 0 else self.table).lookup(env)  # type: ignore[union-attr]
        if self.cost_column == "steps":
            return (float(row["steps"]) / self.unit_seconds + self.overhead) / (1 + self.overhead)
        return float(row[self.cost_column]) / self.unit_seconds

    def feasible(self, bytes_total: float) -> bool:
        return bytes_total <= self.budget

    def ladder(self, direct: float = 0.0) -> Ladder:
        """The two rungs: the environments the two tables were trained with where they differ."""
        low, full = _table_env(self.low.path), _table_env(self.table.path)  # type: ignore[union-attr]
        keys = sorted(k for k in set(low) | set(full) if low.get(k) != full.get(k))
        if not keys:
            raise SystemExit(f"error: {self.low.path} and {self.table.path} were trained with the same environment "  # type: ignore[union-attr]
                             "(make the cheap one with bench/grid.py --set ITERATIONS=...)")
        return Ladder(rungs=({k: low[k] for k in keys}, {k: full[k] for k in keys}), gpus=(None, None),
                      fraction=LADDER_FRACTION, direct=direct)


def records_ratio() -> float:
    """How much smaller the records' trained models are than the CPU calibration predicts: the median
    over the mapped records of real / CPU-predicted model bytes (pgolf/size_trained.json's meta, written
    by `python -m pgolf.size calibrate-records`)."""
    from pgolf.size import load_trained

    ratios = load_trained().meta.get("cpu_ratio") or {}
    if not ratios:
        raise SystemExit("error: pgolf/size_trained.json has no cpu_ratio (rerun python -m pgolf.size "
                         "calibrate-records ../shared/conformance/records)")
    return statistics.median(ratios.values())


def shifted(problem: Problem, ratio: float) -> Problem:
    """The regime shift: the same trainings, their models `ratio` x as many bytes (code unchanged), as
    the records' trained models are to the CPU calibration's, while the searcher's predictor still
    starts from the CPU calibration. The true front is the shifted table's. (Scaling whole artifacts
    instead is no physical shift: a tiny model's code is over half its bytes, so its model would
    shrink by 8-20 % depending on its size, which no per-width correction can learn.)"""
    def scale(table: ReplayTable) -> ReplayTable:
        rows = {k: {**r, "bytes_model": round(r["bytes_model"] * ratio),
                    "bytes_total": r["bytes_code"] + round(r["bytes_model"] * ratio)} for k, r in table.rows.items()}
        return dataclasses.replace(table, rows=rows)
    table = scale(problem.table)
    feasible = [(float(r["val_bpb"]), float(r["bytes_total"])) for r in table.rows.values()
                if r["bytes_total"] <= problem.budget]
    ref = (max(p[0] for p in feasible), float(problem.budget))
    return dataclasses.replace(problem, table=table, low=scale(problem.low) if problem.low is not None else None,
                               ref=ref, true_hv=hypervolume(feasible, ref), shift=ratio)


def _table_env(table: Path) -> dict[str, str]:
    meta = table.with_name(table.name.removesuffix(".csv") + ".meta.json")
    return {k: str(v) for k, v in json.loads(meta.read_text()).get("fixed_env", {}).items()}


def make_problem(space: Path, table_path: Path, budget: int | None, low_path: Path | None = None,
                 cost_column: str = "steps", overhead: float = 0.0) -> Problem:
    spec = load_space(space, smoke=True)
    table = load_table(table_path)
    low = load_table(low_path) if low_path is not None else None
    if low is not None and set(low.rows) != set(table.rows):
        raise SystemExit(f"error: {low_path} and {table_path} hold different configurations (train both over "
                         "the same grid with bench/grid.py)")
    rows = list(table.rows.values())
    if any(not isinstance(r.get(cost_column), (int, float)) for r in rows):
        raise SystemExit(f"error: {table_path} lacks numbers in its {cost_column} column (pass another --cost)")
    unit = statistics.median(float(r[cost_column]) for r in rows)
    budget = budget or spec.budget_bytes
    points = [(float(r["val_bpb"]), float(r["bytes_total"])) for r in table.rows.values()]
    feasible = [p for p in points if p[1] <= budget]
    if not feasible:
        raise SystemExit(f"error: no configuration of {table_path} fits {budget} bytes (raise --budget)")
    ref = (max(p[0] for p in feasible), float(budget))
    true_hv = hypervolume(feasible, ref)
    if true_hv <= 0:
        raise SystemExit(f"error: the feasible front of {table_path} has zero hypervolume (use a larger table)")
    return Problem(spec=spec, table=table, budget=budget, ref=ref, true_hv=true_hv, low=low,
                   cost_column=cost_column, unit_seconds=unit, overhead=overhead)


@dataclass
class Run:
    """One strategy, one seed: the (val_bpb, bytes_total) of each full-fidelity training in order, and
    every training's cost (cheap rungs included: their points are no results)."""

    method: str
    seed: int
    trainings: list[tuple[float, int]] = field(default_factory=list)
    pruned_before_launch: int = 0
    wrongly_pruned: int = 0         # distinct configurations pruned before launch that are feasible in truth
    log: list[tuple[float, tuple[float, int] | None, bool]] = field(default_factory=list)  # (cost, result, infeasible)
    searcher_seconds: float = 0.0   # in the method's own code (proposing, learning), not in lookups
    stopped: str = ""               # why the method stopped before spending its budget (a searcher's line)

    def record(self, point: tuple[float, int], cost: float, problem: "Problem", result: bool = True) -> None:
        """One training: its measured point, its cost, whether it is a result (full fidelity)."""
        if result:
            self.trainings.append(point)
        self.log.append((cost, point if result else None, not problem.feasible(point[1])))

    def spent(self) -> float:
        return sum(c for c, _, _ in self.log)

    def cost_curve(self, problem: "Problem") -> tuple[list[float], list[float]]:
        """(cumulative cost, hypervolume ratio) after each training."""
        points = [(p[0], float(p[1])) if p is not None and problem.feasible(p[1]) else None for _, p, _ in self.log]
        history = hypervolume_history(points, problem.ref)
        costs = list(itertools.accumulate(c for c, _, _ in self.log))
        return costs, [h / problem.true_hv for h in history]

    def ratio_at(self, problem: "Problem", budget: float) -> float:
        costs, ratios = self.cost_curve(problem)
        return max((r for c, r in zip(costs, ratios) if c <= budget + 1e-9), default=0.0)

    def cost_to(self, problem: "Problem", threshold: float) -> float:
        costs, ratios = self.cost_curve(problem)
        return next((c for c, r in zip(costs, ratios) if r >= threshold - 1e-12), math.inf)

    def ratios(self, problem: Problem, n: int) -> list[float]:
        """Hypervolume ratio after 1..n trainings (the last value carries on past the run's end)."""
        history = hypervolume_history([(v, float(t)) if problem.feasible(t) else None
                                       for v, t in self.trainings[:n]], problem.ref)
        out = [h / problem.true_hv for h in history]
        return out + [out[-1] if out else 0.0] * (n - len(out))

    def infeasible(self, n: int, problem: Problem) -> int:
        """Trainings, at any rung, of configurations measured over the budget there."""
        return sum(1 for _, _, bad in self.log[:n] if bad) if self.log else \
            sum(1 for _, total in self.trainings[:n] if not problem.feasible(total))

    def best_feasible(self, n: int, problem: Problem) -> float:
        values = [v for v, total in self.trainings[:n] if problem.feasible(total)]
        return min(values) if values else math.nan


def trainings_to(ratios: Sequence[float], threshold: float) -> float:
    """1-based number of trainings until the ratio first reaches `threshold` (inf if never)."""
    for i, r in enumerate(ratios):
        if r >= threshold - 1e-12:
            return float(i + 1)
    return math.inf


def _median_count(values: list[float], fmt: str = ".0f") -> str:
    reached = sum(1 for v in values if math.isfinite(v))
    med = statistics.median(values)
    text = f"{med:{fmt}}" if math.isfinite(med) else "not reached"
    return f"{text} ({reached}/{len(values)})"


def summarize(problem: Problem, runs: dict[str, list[Run]], n: float,
              multi_fidelity: Sequence[str] = ()) -> tuple[str, dict[str, list[Run]]]:
    """The markdown table (medians over seeds); costs in median full trainings of the full table."""
    checkpoints = [c for c in CHECKPOINTS if c <= n] or [n]
    header = (["method", "fidelity"] + [f"HV ratio @{c:g}" for c in checkpoints]
              + [f"cost to {t}" for t in THRESHOLDS] + ["trainings to 0.9", "infeasible trainings",
                                                        "pruned before launch", "feasible pruned",
                                                        "searcher ms / proposal",
                                                        "best feasible val_bpb"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, method_runs in runs.items():
        at = {c: statistics.median(r.ratio_at(problem, c) for r in method_runs) for c in checkpoints}
        to = {t: [r.cost_to(problem, t) for r in method_runs] for t in THRESHOLDS}
        count = [trainings_to(r.cost_curve(problem)[1], 0.9) for r in method_runs]
        infeasible = [r.infeasible(len(r.log), problem) for r in method_runs]
        pruned = [r.pruned_before_launch for r in method_runs]
        best = [r.best_feasible(len(r.trainings), problem) for r in method_runs]
        per = [1000 * r.searcher_seconds / max(1, len(r.log)) for r in method_runs]
        cells = ([method, "two rungs" if method in multi_fidelity else "full"] + [f"{at[c]:.3f}" for c in checkpoints]
                 + [_median_count(to[t], ".1f") for t in THRESHOLDS] + [_median_count(count)]
                 + [f"{statistics.median(infeasible):.0f} (max {max(infeasible)})",
                    f"{statistics.median(pruned):.0f}",
                    f"{statistics.median(r.wrongly_pruned for r in method_runs):.0f}", f"{statistics.median(per):.1f}",
                    f"{statistics.median(best):.4f} (best {min(best):.4f})"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), runs
