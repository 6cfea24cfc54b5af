"""What does each search strategy pay to reach the true Pareto front, on real trainings?

Replays strategies against the tabular benchmark, so each "training" is a table
lookup and many seeds are cheap: bench/grid_table_long.csv (every configuration of
spaces/bench_grid.py trained 100 steps: the full fidelity, whose feasible front is
the truth) and bench/grid_table.csv (the same configurations at 20 steps: rung 0
of the two-rung methods). Every run may spend the same cost, counted in full
trainings (`--cost steps`, the default: a 20-step training costs 0.2, as on the
competition's hardware every full training runs to one wallclock cap;
`--overhead` adds a fixed cost per training such as evaluation; `--cost wall`
uses the tables' measured seconds). Strategies:

- `ours`: the default sampler of `search.run` (`SAMPLER` unset; `ours-gp` and
  `ours-tpe` name one: the known-budget GP of `search.engine.gp_sampler`, or
  multivariate TPE), `search.engine.searcher.BudgetedOptunaSearcher` driven directly (a Ray Tune
  Searcher is a plain object: `suggest()` / `on_trial_complete()`), in-memory
  Optuna storage, with pre-launch pruning by the predictor `search.run` builds (`search.engine.predictors.make_predictor`: a fresh
  `pgolf.size.SizeLearner` per seed), exactly the code `search.run` uses;
- `ours-exact`: the same searcher with a perfect byte predictor (the table's
  measured bytes, `search.runner.replay.table_predictor`);
- `ours-ladder` (`ours-gp-ladder`, `ours-tpe-ladder`): the same searcher with the two tables as a fidelity ladder
  (`search.engine.ladder`: the best third of rung 0 by Pareto rank promoted), one size
  learner per rung; `ours-ladder-top`: with TOP_RUNG_FRACTION 0.25 (every
  fourth new proposal trains at the full fidelity at once, as Hyperband's
  bracket without early stopping);
- `tpe`: Optuna multivariate TPE on (val_bpb, bytes_total) without the constraint;
- `nsga2`: Optuna NSGA-II (population 20), told the measured budget violation
  with `set_constraint` (constrained NSGA-II), no pre-launch pruning;
- `optuna-gp`: Optuna's `GPSampler` (its own Gaussian process, logEHVI for two
  objectives) told the measured budget violation with `set_constraint`: it
  learns the budget from COMPLETE trials only, no pre-launch pruning;
- `random`: Optuna random sampling;
- `greedy`: greedy forward selection as competitors tune: from the baseline,
  one knob at a time (knob order shuffled per seed), try its other values,
  keep the best feasible `val_bpb`; repeat passes until a pass changes nothing;
- the peers (bench/peers.py, the optional `bench` extra): `ax` (Ax/BoTorch,
  multi-objective with the budget as an outcome constraint), `syne-morea`
  (Syne Tune's multi-objective regularized evolution), `syne-moasha` (Syne
  Tune's MOASHA on both tables) and `autosampler` (optunahub's AutoSampler,
  skipped where its code cannot be fetched).

Every method but MOASHA evaluates the space's baseline first, as `search.run`
does. A training is a launched configuration; a peer's repeats count again,
ours are never launched (told the trained result: `duplicate_of`); proposals
pruned before launch cost nothing.

Hypervolume: `search.core.front.hypervolume` of the feasible full-fidelity
(val_bpb, bytes_total) points found, over the full table's true feasible
front, reference point = (worst feasible val_bpb, budget). Prints a markdown
table (medians over seeds: hypervolume ratio at cost checkpoints, cost and
trainings to 0.7 / 0.9, infeasible trainings, the searcher's own time per
proposal), writes it to bench/results/search_efficiency.md and the ratio
against cumulative cost to bench/results/search_efficiency.png.

    .venv/bin/python bench/search_efficiency.py [--seeds 20] [--slow-seeds 5] [--trainings 60]
        [--methods ours,ours-ladder,...] [--table T] [--low-table T|none] [--cost steps|wall|train]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import statistics
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from efficiency_model import (THRESHOLDS, Problem, Run, make_problem, records_ratio,  # noqa: E402,F401 (tests read them)
                              shifted, summarize, trainings_to)
from search.core import attrs  # noqa: E402
from search.core.limits import BUDGET_CONSTRAINT  # noqa: E402
from search.engine.predictors import make_predictors  # noqa: E402
from search.engine.searcher import BudgetedOptunaSearcher  # noqa: E402
from search.engine.study import enqueue_seed_points, open_study  # noqa: E402
from search.runner.launch import TrialLaunch  # noqa: E402
from search.runner.replay import replay_metrics, table_predictor  # noqa: E402
from search.space.spec import SAMPLERS, SpaceSpec  # noqa: E402

PEERS = ("ax", "syne-morea", "syne-moasha", "autosampler")  # bench/peers.py: the optional `bench` extra
MULTI_FIDELITY = ("ours-ladder", "ours-gp-ladder", "ours-tpe-ladder", "ours-ladder-top", "syne-moasha")  # need --low-table
METHODS = ("ours", "ours-gp", "ours-tpe", "ours-unforgiving", "ours-exact", "ours-ladder", "ours-gp-ladder",
           "ours-tpe-ladder", "ours-ladder-top", "tpe", "optuna-gp", "nsga2", "random", "greedy") + PEERS
LADDER_TOP = 0.25  # ours-ladder-top: TOP_RUNG_FRACTION, a quarter of new proposals start at the top rung
NSGA2_POPULATION = 20


def run_ours(problem: Problem, seed: int, n: float, exact: bool = False, ladder: float | None = None,
             forgive: bool = True, sampler: str | None = None, name: str | None = None) -> Run:
    """The real searcher object, driven without Ray: suggest, look up, on_trial_complete. `ladder`: the
    two tables as a two-rung fidelity ladder (search.engine.ladder), one size learner per rung, with that
    TOP_RUNG_FRACTION. `forgive=False`: TPE sees every proposal pruned before launch as it was told
    (search.engine.samplers.ForgivingSampler left out)."""
    name = name or ("ours-exact" if exact else "ours" if ladder is None else "ours-ladder-top" if ladder else "ours-ladder")
    run = Run(name + ("-unforgiving" if not forgive else ""), seed)
    spec = dataclasses.replace(problem.spec, ladder=problem.ladder(ladder)) if ladder is not None else problem.spec
    if sampler is not None:
        spec = dataclasses.replace(spec, sampler=sampler)
    with tempfile.TemporaryDirectory(prefix="pgolf_eff_") as tmp:
        # A fresh predictor per seed: the learner is stateful, as in a new search.
        if exact:
            predictors: Any = table_predictor(problem.table.path)
        else:
            predictors = make_predictors(spec, Path(tmp), resume=False)[0]
        study = open_study(f"ours-{seed}", None, seed, create=True, ladder=spec.ladder,  # type: ignore[arg-type]
                           sampler=spec.sampler, limits=spec.limits)
        if not forgive:
            study.sampler = study.sampler.base
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
                run.stopped = searcher.aborted or searcher.exhausted or "the searcher finished"
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
        run.wrongly_pruned = len({tuple(sorted(t.params.items())) for t in study.get_trials(deepcopy=False)
                                  if t.user_attrs.get(attrs.REASON) == attrs.OVER_BUDGET_PREDICTED
                                  and problem.feasible(problem.measure(t.user_attrs["env"])[1])})
    return run


def run_optuna(method: str, problem: Problem, seed: int, n: float) -> Run:
    """A plain Optuna sampler through ask/tell: every proposal is trained."""
    if method == "tpe":
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=seed, multivariate=True)
    elif method == "nsga2":
        sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=NSGA2_POPULATION)
    elif method == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    elif method == "optuna-gp":  # Optuna's own GP: learns the budget from COMPLETE trials only
        sampler = optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)  # reads set_constraint
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
        if method in ("nsga2", "optuna-gp"):  # constrained: told the measured violation
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
        sampler = next((k for k in SAMPLERS if f"-{k}" in method), None)
        base = method.replace(f"-{sampler}", "") if sampler else method
        ladder = {"ours-ladder": 0.0, "ours-ladder-top": LADDER_TOP}.get(base)
        return run_ours(problem, seed, n, exact=base == "ours-exact", ladder=ladder,
                        forgive=base != "ours-unforgiving", sampler=sampler, name=method)
    if method == "greedy":
        return run_greedy(problem, seed, n, choices)
    if method in PEERS:
        import peers

        return peers.run_peer(method, problem, seed, n, choices, Run(method, seed), _env_of)
    return run_optuna(method, problem, seed, n)


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
    parser.add_argument("--regime-shift", nargs="?", const="records", default=None, metavar="RATIO",
                        help="the tables' model bytes scaled by the records' real / CPU-predicted ratio (weights "
                             "trained at full scale compress better; or by RATIO) while the predictor starts from "
                             "the CPU calibration")
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
    if args.regime_shift:
        ratio = records_ratio() if args.regime_shift == "records" else float(args.regime_shift)
        if not 0 < ratio <= 2:
            parser.error("--regime-shift RATIO is a model-bytes ratio such as 0.85")
        problem = shifted(problem, ratio)
        why = "the records' median real / CPU-predicted" if args.regime_shift == "records" else "given"
        print(f"regime shift: model bytes x {problem.shift:.4f} ({why})", flush=True)
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

    table, _ = summarize(problem, runs, args.trainings, MULTI_FIDELITY)
    fewer = ", ".join(f"{m} {seeds[m]}" for m in methods if seeds[m] != args.seeds)
    two = f"; rung 0 of two-rung methods: {low.name}" if low is not None else ""
    note = (f"{len(problem.table)} configurations of {args.space.name} ({feasible} feasible under "
            f"{problem.budget} bytes), full fidelity {args.table.name}{two}"
            + (f", model bytes x {problem.shift:.4f} (regime shift)" if problem.shift != 1.0 else "")
            + f"; {args.seeds} seeds"
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
