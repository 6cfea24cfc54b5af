"""Scheduling overhead of the search service: idle time between trials and driver CPU per trial.

Runs real local Ray Tune with the real `BudgetedOptunaSearcher` (Optuna study
in SQLite, as `search.run` keeps it, pre-launch pruning included) over
spaces/bench_grid.py, with the replay trainable of `search.runner.replay` told to
sleep a fixed time: every trial costs exactly `--trial-seconds`, so whatever
else passes between trials is the service's overhead (Ray worker start,
searcher suggest / Optuna sampling, result handling, trials.csv writes).

For each number of concurrent slots (Ray logical CPUs), prints:
- idle seconds between consecutive trials in a slot (median and mean; slots
  are reconstructed from the trials' start/end times),
- driver CPU seconds per trial (user + system of this process),
- overhead fraction = mean idle per trial / trial seconds.

    .venv/bin/python bench/overhead.py [--slots 2,8] [--trials-per-slot 4] [--trial-seconds 2] [--fresh-workers]

It prints figures; it never passes or fails on them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@dataclass(frozen=True)
class OverheadResult:
    slots: int
    trials: int
    trial_seconds: float
    gaps: list[float]             # idle seconds between consecutive trials of one slot
    first_start_latency: float    # fit() start to the first trial's start
    wall_seconds: float           # the whole fit()
    driver_cpu_seconds: float

    @property
    def idle_per_trial(self) -> float:
        return statistics.mean(self.gaps) if self.gaps else 0.0

    @property
    def fraction(self) -> float:
        return self.idle_per_trial / self.trial_seconds

    @property
    def cpu_per_trial(self) -> float:
        return self.driver_cpu_seconds / max(1, self.trials)


def slot_gaps(intervals: list[tuple[float, float]], slots: int) -> list[float]:
    """Idle gaps per slot: each trial goes to the free slot that has been idle the longest (FIFO)."""
    free_at: list[float] = [float("-inf")] * slots
    gaps = []
    for start, end in sorted(intervals):
        free = [i for i, t in enumerate(free_at) if t <= start + 1e-6] or list(range(slots))
        slot = min(free, key=lambda i: free_at[i])
        if free_at[slot] != float("-inf"):
            gaps.append(max(0.0, start - free_at[slot]))
        free_at[slot] = end
    return gaps


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(slots: int, trials: int, trial_seconds: float, table: Path, space: Path,
            work: Path, fresh_workers: bool = False) -> OverheadResult:
    """One Tune run of `trials` sleeping trials on `slots` logical CPUs; workers reused as `search.run`
    reuses them for the space (`search.engine.tuning.reuse_workers`), or a fresh one per trial."""
    import optuna
    import ray
    from ray import tune

    from search.core.layout import LEARNER_FILE
    from search.engine.predictors import make_predictor
    from search.engine.searcher import BudgetedOptunaSearcher
    from search.engine.tuning import reuse_workers
    from search.engine.study import enqueue_seed_points, open_study
    from search.runner.cluster import start_ray, trial_resources
    from search.runner.launch import TrialLaunch
    from search.runner.replay import make_replay_trainable
    from search.space.load import load_space

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = load_space(space, smoke=True)
    folder = work / f"slots{slots}"
    folder.mkdir(parents=True)
    study = open_study(f"overhead{slots}", f"sqlite:///{folder / 'study.db'}", seed=0, create=True)
    enqueue_seed_points(study, spec)
    predict = make_predictor(spec, folder, resume=False)  # what search.run builds (size learner + margin)
    searcher = BudgetedOptunaSearcher(spec, study, TrialLaunch(folder=folder, script=spec.script, nproc=0,
                                                               prepare_data=False), predict,
                                       learner_path=folder / LEARNER_FILE)
    start_ray(num_cpus=slots, object_store_memory=200 * 1024 ** 2)
    try:
        tuner = tune.Tuner(
            tune.with_resources(make_replay_trainable(table, seconds=trial_seconds), trial_resources(0, 1)),
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=trials, max_concurrent_trials=slots,
                                        reuse_actors=reuse_workers(spec) and not fresh_workers),
            run_config=tune.RunConfig(name="overhead", storage_path=str(folder.resolve()), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0)))
        cpu0, t0 = _cpu(), time.time()
        tuner.fit()
        wall, cpu = time.time() - t0, _cpu() - cpu0
    finally:
        ray.shutdown()
    intervals = []
    for timing in folder.glob("trials/*/replay_timing.json"):
        data = json.loads(timing.read_text())
        intervals.append((float(data["started"]), float(data["ended"])))
    if len(intervals) < trials:
        raise SystemExit(f"error: only {len(intervals)} of {trials} trials ran (see {folder})")
    return OverheadResult(slots=slots, trials=len(intervals), trial_seconds=trial_seconds,
                          gaps=slot_gaps(intervals, slots), first_start_latency=min(s for s, _ in intervals) - t0,
                          wall_seconds=wall, driver_cpu_seconds=cpu)


def report(results: list[OverheadResult]) -> str:
    lines = ["| slots | trials | trial s | idle s between trials in a slot (median / mean / max) | "
             "overhead fraction | driver CPU s / trial | first trial after s | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        med = statistics.median(r.gaps) if r.gaps else 0.0
        top = max(r.gaps) if r.gaps else 0.0
        lines.append(f"| {r.slots} | {r.trials} | {r.trial_seconds:g} | {med:.2f} / {r.idle_per_trial:.2f} / "
                     f"{top:.2f} | {r.fraction:.1%} | {r.cpu_per_trial:.3f} | {r.first_start_latency:.1f} | "
                     f"{r.wall_seconds:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", default="2,8", help="comma-separated concurrent slots (logical CPUs)")
    parser.add_argument("--trials-per-slot", type=int, default=4)
    parser.add_argument("--trial-seconds", type=float, default=2.0)
    parser.add_argument("--table", type=Path, default=ROOT / "bench/grid_table.csv")
    parser.add_argument("--space", type=Path, default=ROOT / "spaces/bench_grid.py")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results")
    parser.add_argument("--fresh-workers", action="store_true",
                        help="a fresh Ray worker process per trial (search.run reuses a trial's worker for the next)")
    args = parser.parse_args(argv)
    try:
        slots = [int(s) for s in args.slots.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--slots {args.slots!r} is not a comma-separated list of integers (e.g. 2,8)")
    if not slots or min(slots) < 1 or args.trials_per_slot < 2 or args.trial_seconds <= 0:
        parser.error("--slots >= 1 each, --trials-per-slot >= 2 (a gap needs two trials), --trial-seconds > 0")
    os.chdir(ROOT)
    results = []
    with tempfile.TemporaryDirectory(prefix="pgolf_overhead_") as tmp:
        for n in slots:
            r = measure(n, n * args.trials_per_slot, args.trial_seconds, args.table, args.space, Path(tmp),
                        fresh_workers=args.fresh_workers)
            print(f"{n} slots: {r.trials} trials of {r.trial_seconds:g}s, idle {r.idle_per_trial:.2f}s per trial "
                  f"between trials in a slot ({r.fraction:.1%} of trial time), driver CPU "
                  f"{r.cpu_per_trial:.3f}s per trial", flush=True)
            results.append(r)
    table = report(results)
    print()
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    name = "overhead_fresh_workers.md" if args.fresh_workers else "overhead.md"
    (args.out / name).write_text(
        "# Scheduling overhead\n\nSleeping replay trials through real Ray Tune + BudgetedOptunaSearcher "
        "(SQLite study) on this machine.\n\n" + table + "\n\nCommand: `python bench/overhead.py "
        + " ".join(argv if argv is not None else sys.argv[1:]) + "`\n")
    print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
