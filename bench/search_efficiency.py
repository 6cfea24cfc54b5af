"""How many trainings does each search strategy need to reach the true Pareto front?

Replays strategies against the tabular benchmark (bench/grid_table.csv: every
configuration of spaces/bench_grid.py really trained), so each "training" is a
table lookup and many seeds are cheap. Strategies:

- `ours`: `search.searcher.BudgetedOptunaSearcher` driven directly (a Ray Tune
  Searcher is a plain object: `suggest()` / `on_trial_complete()`), in-memory
  Optuna storage: constrained multi-objective TPE with pre-launch pruning by
  the predictor `search.run` builds (`search.run.make_predictor`: a fresh
  `pgolf.size.SizeLearner` per seed, pruning on prediction + its margin and
  learning from every completed trial), exactly the code `search.run` uses;
- `ours-exact`: the same searcher with a perfect byte predictor (the table's
  measured bytes, `search.replay.table_predictor`): what the search strategy
  achieves when pre-launch pruning makes no mistakes, apart from
  `pgolf.size`'s accuracy on these tiny models;
- `tpe`: Optuna multivariate TPE on (val_bpb, bytes_total) without the constraint;
- `nsga2`: Optuna NSGA-II (population 20), told the measured budget violation
  with `set_constraint` (constrained NSGA-II), no pre-launch pruning;
- `random`: Optuna random sampling;
- `greedy`: greedy forward selection as competitors tune: from the baseline,
  one knob at a time (knob order shuffled per seed), try its other values,
  keep the best feasible `val_bpb`; repeat passes until a pass changes nothing.

Every Optuna strategy evaluates the space's baseline first, as `search.run`
does. A training is a launched configuration (repeats count again: a real
search would train them again); proposals pruned before launch cost nothing.

Hypervolume: `search.front.hypervolume` of the feasible (val_bpb, bytes_total)
points found, over the table's true feasible front, reference point =
(worst feasible val_bpb, budget). Prints a markdown table, writes it to
bench/results/search_efficiency.md and a plot of the ratio vs trainings.

    .venv/bin/python bench/search_efficiency.py [--seeds 20] [--trainings 100]
        [--methods ours,tpe,nsga2,random,greedy] [--table bench/grid_table.csv]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import tempfile
import textwrap
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from search.front import hypervolume, hypervolume_history  # noqa: E402
from search.replay import ReplayTable, load_table, replay_metrics, table_predictor  # noqa: E402
from search.results import BUDGET_CONSTRAINT  # noqa: E402
from search.run import make_predictor  # noqa: E402
from search.searcher import BudgetedOptunaSearcher, TrialLaunch  # noqa: E402
from search.study import enqueue_seed_points, open_study  # noqa: E402
from search.space import SpaceSpec, load_space  # noqa: E402

METHODS = ("ours", "ours-exact", "tpe", "nsga2", "random", "greedy")
CHECKPOINTS = (25, 50, 100)
THRESHOLDS = (0.7, 0.9)
NSGA2_POPULATION = 20


@dataclass(frozen=True)
class Problem:
    """The benchmark: the space, its table, the budget and the true front's hypervolume."""

    spec: SpaceSpec
    table: ReplayTable
    budget: int
    ref: tuple[float, float]
    true_hv: float

    def measure(self, env: Mapping[str, str]) -> tuple[float, int]:
        row = self.table.lookup(env)
        return float(row["val_bpb"]), int(row["bytes_total"])

    def feasible(self, bytes_total: float) -> bool:
        return bytes_total <= self.budget


def make_problem(space: Path, table_path: Path, budget: int | None) -> Problem:
    spec = load_space(space, smoke=True)
    table = load_table(table_path)
    budget = budget or spec.budget_bytes
    points = [(float(r["val_bpb"]), float(r["bytes_total"])) for r in table.rows.values()]
    feasible = [p for p in points if p[1] <= budget]
    if not feasible:
        raise SystemExit(f"error: no configuration of {table_path} fits {budget} bytes (raise --budget)")
    ref = (max(p[0] for p in feasible), float(budget))
    true_hv = hypervolume(feasible, ref)
    if true_hv <= 0:
        raise SystemExit(f"error: the feasible front of {table_path} has zero hypervolume (use a larger table)")
    return Problem(spec=spec, table=table, budget=budget, ref=ref, true_hv=true_hv)


@dataclass
class Run:
    """One strategy, one seed: the (val_bpb, bytes_total) of each training in order."""

    method: str
    seed: int
    trainings: list[tuple[float, int]] = field(default_factory=list)
    pruned_before_launch: int = 0

    def ratios(self, problem: Problem, n: int) -> list[float]:
        """Hypervolume ratio after 1..n trainings (the last value carries on past the run's end)."""
        history = hypervolume_history([(v, float(t)) if problem.feasible(t) else None
                                       for v, t in self.trainings[:n]], problem.ref)
        out = [h / problem.true_hv for h in history]
        return out + [out[-1] if out else 0.0] * (n - len(out))

    def infeasible(self, n: int, problem: Problem) -> int:
        return sum(1 for _, total in self.trainings[:n] if not problem.feasible(total))

    def best_feasible(self, n: int, problem: Problem) -> float:
        values = [v for v, total in self.trainings[:n] if problem.feasible(total)]
        return min(values) if values else math.nan


def run_ours(problem: Problem, seed: int, n: int, exact: bool = False) -> Run:
    """The real searcher object, driven without Ray: suggest, look up, on_trial_complete."""
    run = Run("ours-exact" if exact else "ours", seed)
    with tempfile.TemporaryDirectory(prefix="pgolf_eff_") as tmp:
        # A fresh predictor per seed: the learner is stateful, as in a new search.
        predict = (table_predictor(problem.table.path) if exact
                   else make_predictor(problem.spec, Path(tmp), resume=False))
        study = open_study(f"ours-{seed}", None, seed, create=True)  # type: ignore[arg-type]
        enqueue_seed_points(study, problem.spec)
        launch = TrialLaunch(folder=Path(tmp), script=problem.spec.script, nproc=0, prepare_data=False)
        searcher = BudgetedOptunaSearcher(problem.spec, study, launch, predict)
        for i in range(n):
            config = searcher.suggest(f"t{i}")
            if not isinstance(config, dict):  # FINISHED: the searcher gave up
                if searcher.aborted and not run.trainings:
                    raise SystemExit(searcher.aborted)
                break
            _, final = replay_metrics(problem.table, config["env"])
            run.trainings.append((float(final["val_bpb"]), int(final["bytes_total"])))
            searcher.on_trial_complete(f"t{i}", final)
        run.pruned_before_launch = searcher.pruned_before_launch
    return run


def run_optuna(method: str, problem: Problem, seed: int, n: int) -> Run:
    """A plain Optuna sampler through ask/tell: every proposal is trained."""
    if method == "tpe":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    elif method == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=NSGA2_POPULATION)
    elif method == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    else:
        raise ValueError(f"unknown Optuna method {method!r}")
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    enqueue_seed_points(study, problem.spec)
    run = Run(method, seed)
    for _ in range(n):
        trial = study.ask()
        env = problem.spec.trial_env(problem.spec.space(trial))
        val_bpb, total = problem.measure(env)
        run.trainings.append((val_bpb, total))
        if method == "nsga2":
            trial.set_constraint(BUDGET_CONSTRAINT, float(total - problem.budget))
        study.tell(trial, [val_bpb, float(total)])
    return run


def _grid_choices(spec: SpaceSpec) -> dict[str, list[Any]]:
    """Each knob's choices, read from the space's own Optuna distributions."""
    study = optuna.create_study()
    trial = study.ask()
    spec.space(trial)
    choices = {name: list(dist.choices) for name, dist in trial.distributions.items()
               if isinstance(dist, optuna.distributions.CategoricalDistribution)}
    study.tell(trial, state=TrialState.FAIL)
    if len(choices) != len(trial.distributions):
        raise SystemExit("error: greedy forward selection needs categorical knobs "
                         "(use suggest_categorical in the space, as spaces/bench_grid.py does)")
    return choices


def _env_of(spec: SpaceSpec, params: Mapping[str, Any]) -> dict[str, str]:
    study = optuna.create_study()
    study.enqueue_trial(dict(params))
    trial = study.ask()
    env = spec.trial_env(spec.space(trial))
    study.tell(trial, state=TrialState.FAIL)
    return env


def run_greedy(problem: Problem, seed: int, n: int, choices: dict[str, list[Any]]) -> Run:
    """Greedy forward selection from the baseline on the best feasible val_bpb, one knob at a time."""
    run = Run("greedy", seed)
    measured: dict[tuple, tuple[float, int]] = {}

    def train(params: dict[str, Any]) -> tuple[float, int] | None:
        key = tuple(sorted(params.items()))
        if key not in measured:
            if len(run.trainings) >= n:
                return None
            measured[key] = problem.measure(_env_of(problem.spec, params))
            run.trainings.append(measured[key])
        return measured[key]

    def score(result: tuple[float, int]) -> float:
        return result[0] if problem.feasible(result[1]) else math.inf

    current = dict(problem.spec.points_to_evaluate[0])
    best = train(current)
    if best is None:
        return run
    knobs = list(choices)
    random.Random(seed).shuffle(knobs)
    changed = True
    while changed:
        changed = False
        for knob in knobs:
            for value in choices[knob]:
                if value == current[knob]:
                    continue
                trial = {**current, knob: value}
                result = train(trial)
                if result is None:
                    return run
                if score(result) < score(best):
                    best, current, changed = result, trial, True
    return run


def run_method(method: str, problem: Problem, seed: int, n: int, choices: dict[str, list[Any]]) -> Run:
    if method in ("ours", "ours-exact"):
        return run_ours(problem, seed, n, exact=method == "ours-exact")
    if method == "greedy":
        return run_greedy(problem, seed, n, choices)
    return run_optuna(method, problem, seed, n)


def trainings_to(ratios: Sequence[float], threshold: float) -> float:
    """1-based number of trainings until the ratio first reaches `threshold` (inf if never)."""
    for i, r in enumerate(ratios):
        if r >= threshold - 1e-12:
            return float(i + 1)
    return math.inf


def _median_count(values: list[float]) -> str:
    reached = sum(1 for v in values if math.isfinite(v))
    med = statistics.median(values)
    text = f"{med:.0f}" if math.isfinite(med) else "not reached"
    return f"{text} ({reached}/{len(values)})"


def summarize(problem: Problem, runs: dict[str, list[Run]], n: int) -> tuple[str, dict[str, list[list[float]]]]:
    """The markdown table, and each method's hypervolume-ratio curves (one per seed) for the plot."""
    checkpoints = [c for c in CHECKPOINTS if c <= n] or [n]
    header = (["method"] + [f"HV ratio @{c}" for c in checkpoints]
              + [f"trainings to {t}" for t in THRESHOLDS]
              + ["infeasible trainings", "pruned before launch", "best feasible val_bpb"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    all_curves: dict[str, list[list[float]]] = {}
    for method, method_runs in runs.items():
        curves = [r.ratios(problem, n) for r in method_runs]
        at = {c: statistics.median(curve[c - 1] for curve in curves) for c in checkpoints}
        to = {t: [trainings_to(curve, t) for curve in curves] for t in THRESHOLDS}
        infeasible = [r.infeasible(n, problem) for r in method_runs]
        pruned = [r.pruned_before_launch for r in method_runs]
        best = [r.best_feasible(n, problem) for r in method_runs]
        all_curves[method] = curves
        cells = ([method] + [f"{at[c]:.3f}" for c in checkpoints]
                 + [_median_count(to[t]) for t in THRESHOLDS]
                 + [f"{statistics.median(infeasible):.0f} (max {max(infeasible)})",
                    f"{statistics.median(pruned):.0f}",
                    f"{statistics.median(best):.4f} (best {min(best):.4f})"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), all_curves


def plot(problem: Problem, all_curves: dict[str, list[list[float]]], n: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    xs = list(range(1, n + 1))
    for method, curves in all_curves.items():
        columns = list(zip(*curves))
        med = [statistics.median(col) for col in columns]
        quart = [statistics.quantiles(col, n=4, method="inclusive") if len(col) > 1 else [col[0]] * 3
                 for col in columns]
        line, = ax.plot(xs, med, label=method, lw=2 if method.startswith("ours") else 1.3,
                        ls="--" if method == "ours-exact" else "-")
        ax.fill_between(xs, [q[0] for q in quart], [q[2] for q in quart], color=line.get_color(), alpha=0.15)
    for t in THRESHOLDS:
        ax.axhline(t, color="grey", lw=0.7, ls=":")
    ax.set_xlabel("trainings (pruned-before-launch proposals cost none)")
    ax.set_ylabel("hypervolume / true front's")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(1, n)
    ax.set_title(textwrap.fill(title, 95), fontsize=8)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=ROOT / "bench/grid_table.csv")
    parser.add_argument("--space", type=Path, default=ROOT / "spaces/bench_grid.py")
    parser.add_argument("--budget", type=int, default=None, help="bytes (default: the space's smoke budget)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trainings", type=int, default=100)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results", help="folder for .md and .png")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if args.seeds < 1 or args.trainings < 1:
        parser.error("--seeds and --trainings must be at least 1")

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    import os
    os.chdir(ROOT)
    problem = make_problem(args.space, args.table, args.budget)
    feasible = sum(1 for r in problem.table.rows.values() if problem.feasible(r["bytes_total"]))
    print(f"table {args.table}: {len(problem.table)} configurations, {feasible} feasible under "
          f"{problem.budget} bytes ({len(problem.table) - feasible} infeasible); reference point "
          f"({problem.ref[0]:.4f}, {problem.budget})", flush=True)
    choices = _grid_choices(problem.spec) if "greedy" in methods else {}
    runs: dict[str, list[Run]] = {}
    for method in methods:
        start = time.time()
        runs[method] = [run_method(method, problem, seed, args.trainings, choices) for seed in range(args.seeds)]
        print(f"  {method}: {args.seeds} seeds in {time.time() - start:.1f}s", flush=True)

    table, all_curves = summarize(problem, runs, args.trainings)
    note = (f"{len(problem.table)} configurations of {args.space.name} ({feasible} feasible under "
            f"{problem.budget} bytes), {args.seeds} seeds x {args.trainings} trainings; medians over seeds, "
            "(k/N) = seeds that reached the threshold")
    print()
    print(table)
    print()
    print(note)
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.out / "search_efficiency.md"
    md.write_text("# Search efficiency on the tabular benchmark\n\n" + note + "\n\n" + table + "\n\n"
                  "Command: `python bench/search_efficiency.py " + " ".join(argv or sys.argv[1:]) + "`\n")
    png = args.out / "search_efficiency.png"
    plot(problem, all_curves, args.trainings, png, note)
    print(f"wrote {md} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
