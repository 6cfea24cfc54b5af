"""How many trainings does each search strategy need to reach the true Pareto front?

Replays strategies against the tabular benchmark (bench/grid_table.csv: every
configuration of spaces/bench_grid.py really trained), so each "training" is a
table lookup and many seeds are cheap. Strategies:

- `ours`: `search.searcher.BudgetedOptunaSearcher` driven directly (a Ray Tune
  Searcher is a plain object: `suggest()` / `on_trial_complete()`), in-memory
  Optuna storage: constrained multi-objective TPE with pre-launch pruning by
  the predictor `search.run` builds (`search.predictors.make_predictor`: a fresh
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
import dataclasses
import itertools
import json
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
from search.ladder import Ladder  # noqa: E402
from search.predictors import make_predictors  # noqa: E402
from search.searcher import BudgetedOptunaSearcher, TrialLaunch  # noqa: E402
from search.study import enqueue_seed_points, open_study  # noqa: E402
from search.space import SpaceSpec, load_space  # noqa: E402

PEERS = ("ax", "syne-morea", "syne-moasha")  # bench/peers.py: the optional `bench` extra
MULTI_FIDELITY = ("ours-ladder", "ours-ladder-top", "syne-moasha")  # need --low-table
METHODS = ("ours", "ours-exact", "ours-ladder", "ours-ladder-top", "tpe", "nsga2", "random", "greedy") + PEERS
CHECKPOINTS = (25, 50, 100)
LADDER_FRACTION = 1 / 3
LADDER_TOP = 0.25  # ours-ladder-top: TOP_RUNG_FRACTION, a quarter of new proposals start at the top rung
THRESHOLDS = (0.7, 0.9)
NSGA2_POPULATION = 20


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
    log: list[tuple[float, tuple[float, int] | None, bool]] = field(default_factory=list)  # (cost, result, infeasible)
    searcher_seconds: float = 0.0   # in the method's own code (proposing, learning), not in lookups

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


def run_ours(problem: Problem, seed: int, n: float, exact: bool = False, ladder: float | None = None) -> Run:
    """The real searcher object, driven without Ray: suggest, look up, on_trial_complete. `ladder`: the
    two tables as a two-rung fidelity ladder (search.ladder), one size learner per rung, with that
    TOP_RUNG_FRACTION."""
    name = "ours-exact" if exact else "ours" if ladder is None else "ours-ladder-top" if ladder else "ours-ladder"
    run = Run(name, seed)
    spec = dataclasses.replace(problem.spec, ladder=problem.ladder(ladder)) if ladder is not None else problem.spec
    with tempfile.TemporaryDirectory(prefix="pgolf_eff_") as tmp:
        # A fresh predictor per seed: the learner is stateful, as in a new search.
        if exact:
            predictors: Any = table_predictor(problem.table.path)
        else:
            predictors = make_predictors(spec, Path(tmp), resume=False)[0]
        study = open_study(f"ours-{seed}", None, seed, create=True, ladder=spec.ladder)  # type: ignore[arg-type]
        enqueue_seed_points(study, spec)
        launch = TrialLaunch(folder=Path(tmp), script=spec.script, nproc=0, prepare_data=False)
        searcher = BudgetedOptunaSearcher(spec, study, launch, predictors)
        low_steps = spec.ladder.rungs[0] if spec.ladder is not None else None
        i = 0
        while run.spent() < n:
            start = time.perf_counter()
            config = searcher.suggest(f"t{i}")
            run.searcher_seconds += time.perf_counter() - start
            if not isinstance(config, dict):  # FINISHED: the searcher gave up
                if searcher.aborted and not run.log:
                    raise SystemExit(searcher.aborted)
                break
            env = config["env"]
            rung = 0 if low_steps and all(env.get(k) == v for k, v in low_steps.items()) else None
            table = problem.low if rung == 0 else problem.table
            _, final = replay_metrics(table, env)  # type: ignore[arg-type]
            run.record((float(final["val_bpb"]), int(final["bytes_total"])), problem.cost(env, rung), problem,
                       result=rung is None)
            start = time.perf_counter()
            searcher.on_trial_complete(f"t{i}", final)
            run.searcher_seconds += time.perf_counter() - start
            i += 1
        run.pruned_before_launch = searcher.pruned_before_launch
    return run


def run_optuna(method: str, problem: Problem, seed: int, n: float) -> Run:
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
    while run.spent() < n:
        start = time.perf_counter()
        trial = study.ask()
        env = problem.spec.trial_env(problem.spec.space(trial))
        run.searcher_seconds += time.perf_counter() - start
        val_bpb, total = problem.measure(env)
        run.record((val_bpb, total), problem.cost(env), problem)
        start = time.perf_counter()
        if method == "nsga2":
            trial.set_constraint(BUDGET_CONSTRAINT, float(total - problem.budget))
        study.tell(trial, [val_bpb, float(total)])
        run.searcher_seconds += time.perf_counter() - start
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


def run_greedy(problem: Problem, seed: int, n: float, choices: dict[str, list[Any]]) -> Run:
    """Greedy forward selection from the baseline on the best feasible val_bpb, one knob at a time."""
    run = Run("greedy", seed)
    measured: dict[tuple, tuple[float, int]] = {}

    def train(params: dict[str, Any]) -> tuple[float, int] | None:
        key = tuple(sorted(params.items()))
        if key not in measured:
            if run.spent() >= n:
                return None
            env = _env_of(problem.spec, params)
            measured[key] = problem.measure(env)
            run.record(measured[key], problem.cost(env), problem)
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


def run_method(method: str, problem: Problem, seed: int, n: float, choices: dict[str, list[Any]]) -> Run:
    """One method, one seed, until it has spent `n` units (median full trainings) or gives up."""
    if method.startswith("ours"):
        ladder = {"ours-ladder": 0.0, "ours-ladder-top": LADDER_TOP}.get(method)
        return run_ours(problem, seed, n, exact=method == "ours-exact", ladder=ladder)
    if method == "greedy":
        return run_greedy(problem, seed, n, choices)
    if method in PEERS:
        import peers

        return peers.run_peer(method, problem, seed, n, choices, Run(method, seed), _env_of)
    return run_optuna(method, problem, seed, n)


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


def summarize(problem: Problem, runs: dict[str, list[Run]], n: float) -> tuple[str, dict[str, list[Run]]]:
    """The markdown table (medians over seeds); costs in median full trainings of the full table."""
    checkpoints = [c for c in CHECKPOINTS if c <= n] or [n]
    header = (["method", "fidelity"] + [f"HV ratio @{c:g}" for c in checkpoints]
              + [f"cost to {t}" for t in THRESHOLDS] + ["trainings to 0.9", "infeasible trainings",
                                                        "pruned before launch", "searcher ms / proposal",
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
        cells = ([method, "two rungs" if method in MULTI_FIDELITY else "full"] + [f"{at[c]:.3f}" for c in checkpoints]
                 + [_median_count(to[t], ".1f") for t in THRESHOLDS] + [_median_count(count)]
                 + [f"{statistics.median(infeasible):.0f} (max {max(infeasible)})",
                    f"{statistics.median(pruned):.0f}", f"{statistics.median(per):.1f}",
                    f"{statistics.median(best):.4f} (best {min(best):.4f})"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), runs


def plot(problem: Problem, runs: dict[str, list[Run]], n: float, path: Path, title: str) -> None:
    """Median hypervolume ratio (and quartiles) against cumulative cost, per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    xs = [n * i / 200 for i in range(1, 201)]
    for method, method_runs in runs.items():
        columns = [[r.ratio_at(problem, x) for r in method_runs] for x in xs]
        med = [statistics.median(col) for col in columns]
        quart = [statistics.quantiles(col, n=4, method="inclusive") if len(col) > 1 else [col[0]] * 3
                 for col in columns]
        line, = ax.plot(xs, med, label=method, lw=2 if method.startswith("ours") else 1.3,
                        ls="--" if method in PEERS else "-")
        ax.fill_between(xs, [q[0] for q in quart], [q[2] for q in quart], color=line.get_color(), alpha=0.12)
    for t in THRESHOLDS:
        ax.axhline(t, color="grey", lw=0.7, ls=":")
    ax.set_xlabel(f"cumulative training cost (full trainings: {_unit(problem)})")
    ax.set_ylabel("hypervolume / true front's")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, n)
    ax.set_title(textwrap.fill(title, 100), fontsize=7)
    ax.legend(loc="lower right", fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=ROOT / "bench/grid_table_long.csv",
                        help="the full-fidelity table (its front is the truth)")
    parser.add_argument("--low-table", default=str(ROOT / "bench/grid_table.csv"),
                        help="the same grid trained cheaper: rung 0 of the two-rung methods ('none': single fidelity only)")
    parser.add_argument("--space", type=Path, default=ROOT / "spaces/bench_grid.py")
    parser.add_argument("--budget", type=int, default=None, help="bytes (default: the space's smoke budget)")
    parser.add_argument("--cost", choices=("steps", "wall", "train"), default="steps",
                        help="a training's cost: its steps over a full training's (default: on the competition's "
                             "hardware every full training runs to one wallclock cap), or its measured wall_seconds "
                             "or train_seconds (on this shared CPU: see the tables' meta notes)")
    parser.add_argument("--overhead", type=float, default=0.0,
                        help="with --cost steps: a fixed cost per training (start-up, compilation, evaluation) as a "
                             "fraction of a full training's steps, e.g. 0.5 for a 5-minute evaluation after 10 minutes")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--slow-seeds", type=int, default=None,
                        help="seeds for the slow peers (ax: seconds per proposal on CPU); default --seeds")
    parser.add_argument("--trainings", type=float, default=100,
                        help="what each run may spend, in median full trainings")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results", help="folder for .md and .png")
    args = parser.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    if args.seeds < 1 or args.trainings < 1:
        parser.error("--seeds and --trainings must be at least 1")
    low = None if args.low_table == "none" else Path(args.low_table)
    skipped = []
    if low is None:
        skipped += [f"{m} (needs --low-table)" for m in methods if m in MULTI_FIDELITY]
        methods = [m for m in methods if m not in MULTI_FIDELITY]
    if any(m in PEERS for m in methods):
        import peers

        missing = {m: why for m in methods if m in PEERS and (why := peers.missing(m))}
        skipped += [f"{m} ({why})" for m, why in missing.items()]
        methods = [m for m in methods if m not in missing]

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    import os
    os.chdir(ROOT)
    if args.overhead < 0 or (args.overhead and args.cost != "steps"):
        parser.error("--overhead is a non-negative fraction, used with --cost steps")
    problem = make_problem(args.space, args.table, args.budget, low,
                           "steps" if args.cost == "steps" else f"{args.cost}_seconds", args.overhead)
    feasible = sum(1 for r in problem.table.rows.values() if problem.feasible(r["bytes_total"]))
    print(f"table {args.table}: {len(problem.table)} configurations, {feasible} feasible under "
          f"{problem.budget} bytes ({len(problem.table) - feasible} infeasible); reference point "
          f"({problem.ref[0]:.4f}, {problem.budget}); one cost unit = one full training ({_unit(problem)})",
          flush=True)
    if skipped:
        print(f"  skipped: {', '.join(skipped)}", flush=True)
    choices = _grid_choices(problem.spec) if {"greedy", *PEERS} & set(methods) else {}
    runs: dict[str, list[Run]] = {}
    seeds = {m: args.slow_seeds if m in peers_slow() and args.slow_seeds else args.seeds for m in methods}
    for method in methods:
        start = time.time()
        runs[method] = [run_method(method, problem, seed, args.trainings, choices) for seed in range(seeds[method])]
        print(f"  {method}: {seeds[method]} seeds in {time.time() - start:.1f}s", flush=True)

    table, _ = summarize(problem, runs, args.trainings)
    fewer = ", ".join(f"{m} {seeds[m]}" for m in methods if seeds[m] != args.seeds)
    two = f"; rung 0 of two-rung methods: {low.name}" if low is not None else ""
    note = (f"{len(problem.table)} configurations of {args.space.name} ({feasible} feasible under "
            f"{problem.budget} bytes), full fidelity {args.table.name}{two}; {args.seeds} seeds"
            + (f" ({fewer})" if fewer else "") + f", each run may spend {args.trainings:g} cost units (1 unit = one "
            f"full training: {_unit(problem)}); medians over seeds, (k/N) = seeds that reached the threshold")
    print()
    print(table)
    print()
    print(note)
    args.out.mkdir(parents=True, exist_ok=True)
    md = args.out / "search_efficiency.md"
    md.write_text("# Search efficiency on the tabular benchmark\n\n" + note + "\n\n" + table + "\n\n"
                  "Command: `python bench/search_efficiency.py " + " ".join(argv or sys.argv[1:]) + "`\n")
    png = args.out / "search_efficiency.png"
    plot(problem, runs, args.trainings, png, note)
    print(f"wrote {md} and {png}")
    return 0


def _unit(problem: Problem) -> str:
    if problem.cost_column == "steps":
        return (f"{problem.unit_seconds:.0f} steps" + (f" plus a fixed {problem.overhead:g} per training"
                                                       if problem.overhead else ""))
    return f"the median {problem.cost_column}, {problem.unit_seconds:.2f} s"


def peers_slow() -> tuple[str, ...]:
    return ("ax",)


if __name__ == "__main__":
    raise SystemExit(main())
