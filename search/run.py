"""python -m search.run SPACE: a multi-objective, budget-constrained search.

Optuna proposes configurations (objectives `val_bpb` and `bytes_total`, the
byte budget as a constraint), Ray Tune launches each feasible one as a full
training (`search.runner.train_trial`), over-budget proposals are pruned before
launch. Everything lands in `results/<name>/` (see docs/design.md); the study
in `study.db` is the source of truth, which is what `--resume` continues from.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from search.cost import Cost, Device, trials_cost
from search.experiment import Experiment, ExperimentError, disk_full_line, is_disk_full
from search.predictors import LearnerError, make_predictors, margin_line
from search.runner import PREP_LOG
from search.space import SpaceError, SpaceSpec, check_points, load_space

DEFAULT_RESULTS = Path("results")


class RunError(RuntimeError):
    """A one-line problem; `code` is the exit code (2: the input is wrong, 1: the search could not go on)."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error in one line."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


MAX_NODE_LOSSES = 10  # a spot node lost now and then costs a rerun; ten in one run is a cluster problem


@dataclass
class RunOptions:
    """Command-line settings of one search (also usable from Python and tests)."""

    space: Path
    smoke: bool = False
    name: str | None = None
    num_samples: int | None = None
    max_concurrent: int | None = None
    address: str | None = None
    resume: bool = False
    force_space: bool = False         # --resume with a changed space file, deliberately (recorded)
    seed: int | None = None
    results_dir: Path = DEFAULT_RESULTS
    num_cpus: int | None = None       # embedded cluster only
    num_gpus: int | None = None       # embedded cluster only (logical GPUs are fine)
    object_store_memory: int | None = None
    max_over_budget_in_a_row: int = 200  # stop when the space is almost entirely over budget
    replay: Path | list[Path] | None = None  # look results up in this table (one per rung) instead of training
    gpu_hour_price: float | None = None  # dollars per GPU-hour (per CPU-hour with no GPUs), to show money
    warm_start: list[Path] = dataclasses.field(default_factory=list)  # earlier experiments to import trials from
    max_node_losses: int = MAX_NODE_LOSSES  # stop after this many trials lost with their node (0: never)
    sync_also: list[str] = dataclasses.field(default_factory=list)  # large trial files to bring back too


@dataclass
class RunSummary:
    """What a finished search reports."""

    folder: Path
    counts: dict[str, int]
    best_bpb: float | None
    best_number: int | None
    front_size: int
    pruned_before_launch: int
    launched: int
    num_samples: int
    margin_fraction: float = 0.0   # the size predictor's safety margin at the end
    cost: Cost | None = None       # device hours used and saved by pruning
    ladder: object = None          # the space's fidelity ladder (search.ladder.Ladder), if any
    rung_trainings: str = ""       # trainings finished per rung, e.g. "9+3"
    duplicates: int = 0            # proposals this run that repeated a training: told its result, not trained
    exhausted: str | None = None   # why the search stopped short: nothing left in a finite space to launch


DEFAULT_NUM_SAMPLES = 20
SMOKE_NUM_SAMPLES = 8


def parse_args(argv: Sequence[str] | None = None) -> RunOptions:
    p = _Parser(prog="python -m search.run", description=__doc__.splitlines()[0])
    p.add_argument("space", type=Path, help="space file, e.g. spaces/tokenizer_width_depth.py")
    p.add_argument("--smoke", action="store_true", help="the space's tiny CPU profile on the bundled corpus")
    p.add_argument("--name", help="experiment name: results/<name>/ (default: the space file's name)")
    p.add_argument("--num-samples", type=int, help="trainings to launch in total, pruned proposals not counted "
                   f"(default {DEFAULT_NUM_SAMPLES}, {SMOKE_NUM_SAMPLES} with --smoke, or the stored one on --resume)")
    p.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as the cluster fits)")
    p.add_argument("--address", help="join an existing Ray cluster (e.g. auto or HEAD:6379) instead of starting one")
    p.add_argument("--resume", action="store_true", help="continue the interrupted experiment of the same --name")
    p.add_argument("--force-space", action="store_true", help="with --resume: continue although the space file "
                   "(or its budget, limits) changed; the change is recorded in experiment.json")
    p.add_argument("--seed", type=int, help="seed of the Optuna sampler")
    p.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help="where experiments live (default results/)")
    p.add_argument("--num-cpus", type=int, help="CPUs of the embedded cluster (default: all)")
    p.add_argument("--num-gpus", type=int, help="GPUs of the embedded cluster (default: detected)")
    p.add_argument("--gpu-hour-price", type=float, metavar="DOLLARS",
                   help="price of one GPU-hour (of one CPU-hour with no GPUs): costs are shown in money too "
                        "(8xH100 at ~$21-24/h is ~3)")
    p.add_argument("--warm-start", type=Path, nargs="+", default=[], metavar="EXPERIMENT",
                   help="import the finished trials of earlier experiments (results/<old> …) that fit the space "
                        "before sampling; they are not counted as this experiment's trainings")
    p.add_argument("--replay", type=Path, nargs="+", metavar="TABLE.csv", help="replay a results table instead of "
                   "training (bench/grid_table.csv, or a past results/<name>/trials.csv; see search.replay); with a "
                   "fidelity ladder one table per rung, cheapest first")
    p.add_argument("--max-node-losses", type=int, default=MAX_NODE_LOSSES, metavar="N",
                   help="stop the search after N trials lost with their Ray node in this run (each runs again "
                        f"elsewhere; default {MAX_NODE_LOSSES}, 0: never stop)")
    p.add_argument("--sync-also", nargs="+", default=[], metavar="GLOB",
                   help="trial files over 8 MiB to bring back from the node that ran them too (e.g. '*.ptz'); "
                        "by default they stay there, listed in the trial folder's left_on_node.json")
    a = p.parse_args(argv)
    if a.max_node_losses < 0:
        p.error("--max-node-losses must be 0 (never stop) or more")
    for flag in ("num_samples", "max_concurrent", "num_cpus"):
        value = getattr(a, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1")
    if a.address is not None and (a.num_cpus or a.num_gpus is not None):
        p.error("--num-cpus/--num-gpus size the embedded cluster; drop them with --address")
    if a.force_space and not a.resume:
        p.error("--force-space only applies with --resume")
    if a.gpu_hour_price is not None and not (a.gpu_hour_price >= 0 and a.gpu_hour_price < float("inf")):
        p.error("--gpu-hour-price must be a non-negative number of dollars, e.g. 2.9")
    return RunOptions(space=a.space, smoke=a.smoke, name=a.name, num_samples=a.num_samples,
                      max_concurrent=a.max_concurrent, address=a.address, resume=a.resume,
                      force_space=a.force_space, seed=a.seed,
                      results_dir=a.results_dir, num_cpus=a.num_cpus, num_gpus=a.num_gpus, replay=a.replay,
                      gpu_hour_price=a.gpu_hour_price, warm_start=list(a.warm_start),
                      max_node_losses=a.max_node_losses, sync_also=list(a.sync_also))


def replay_tables(opts: RunOptions) -> list[Path]:
    """--replay's tables: one, or one per rung of a fidelity ladder."""
    return [opts.replay] if isinstance(opts.replay, Path) else list(opts.replay or [])


def default_name(spec: SpaceSpec) -> str:
    return spec.path.stem + ("-smoke" if spec.smoke else "")


PACKED_SCRIPT = "train_gpt.py"  # PACK_SCRIPT: the packed copy, in the experiment folder


def check_address(address: str | None) -> None:
    """A malformed --address is bad input (exit 2), found before anything starts."""
    from pgolf.cluster import ClusterError, split_address

    if address is not None:
        try:
            split_address(address)
        except ClusterError as exc:
            raise RunError(f"error: {exc}", code=2) from None


def check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise RunError(f"error: --name {name!r} is not a plain folder name (use letters, digits, - and _)", code=2)


def _start_ray(opts: RunOptions) -> bool:
    """Join or start a Ray cluster; True when this call started it (and must shut it down)."""
    from pgolf.cluster import ClusterError
    from search.runner import start_ray

    try:
        return start_ray(opts.address, opts.num_cpus, opts.num_gpus, opts.object_store_memory)
    except ClusterError as exc:
        raise RunError(f"error: {exc}") from None


def _fits(spec: SpaceSpec) -> int:
    """How many trials the cluster holds at once."""
    import ray

    res = ray.cluster_resources()
    fits = int(res.get("CPU", 0) // spec.cpus_per_trial)
    if fits < 1:
        raise RunError(f"error: the Ray cluster has {int(res.get('CPU', 0))} CPUs, a trial asks "
                       f"{spec.cpus_per_trial} (lower CPUS_PER_TRIAL in {spec.path} or join a bigger cluster "
                       "with --address)")
    if spec.gpus_per_trial > 0:
        gpu_fits = int(res.get("GPU", 0) // spec.gpus_per_trial)
        if gpu_fits < 1:
            raise RunError(f"error: the Ray cluster has {int(res.get('GPU', 0))} GPUs, a trial asks "
                           f"{spec.gpus_per_trial} (lower GPUS_PER_TRIAL in {spec.path} or join a bigger cluster "
                           "with --address)")
        fits = min(fits, gpu_fits)
    for name, amount in spec.resources.items():
        held = res.get(name, 0)
        if held < amount:
            raise RunError(f"error: the Ray cluster has {held:g} of resource {name!r}, a trial asks {amount:g} "
                           f"(RESOURCES_PER_TRIAL in {spec.path}: start nodes with `ray start --resources="
                           f"'{{\"{name}\": {amount:g}}}'` or remove it)")
        fits = min(fits, int(held // amount))
    return max(1, fits)


def _scheduler(spec: SpaceSpec):
    if not spec.early_stopping:
        return None
    from ray.tune.schedulers import ASHAScheduler

    settings = {"grace_period": 1, "reduction_factor": 2, "max_t": 100_000, **spec.early_stopping}
    return ASHAScheduler(metric="val_bpb", mode="min", time_attr="training_iteration", **settings)


def run_search(opts: RunOptions, out=sys.stdout) -> RunSummary:
    """Run (or resume) one search to the end; raise SpaceError/RunError/ExperimentError with one line.

    Every check that can fail on the input runs before Ray starts and before anything is written."""
    check_address(opts.address)
    spec = load_space(opts.space, smoke=opts.smoke)
    from search.knobs import check_space_variables

    check_points(spec)           # a POINTS_TO_EVALUATE key the space never suggests would be dropped
    check_space_variables(spec)  # a typo in a variable name would train the defaults in every trial
    if opts.replay is not None:
        from search.replay import ReplayError, load_table

        tables = replay_tables(opts)
        rungs = len(spec.ladder.rungs) if spec.ladder is not None else 1
        if len(tables) != rungs:
            raise RunError(f"error: --replay takes one table per rung of {spec.path}'s fidelity ladder, cheapest first "
                           f"({rungs}), got {len(tables)} (pass e.g. bench/grid_table.csv bench/grid_table_long.csv)"
                           if spec.ladder is not None else
                           f"error: --replay got {len(tables)} tables and {spec.path} has no fidelity ladder "
                           "(pass one table, or a space with FIDELITIES)", code=2)
        try:
            for table in tables:
                load_table(table)
        except ReplayError as exc:
            raise RunError(str(exc), code=2) from None
    name = opts.name if opts.name is not None else default_name(spec)
    check_name(name)
    warm_points: tuple[list, int] = ([], 0)
    if opts.warm_start and spec.ladder is not None:
        raise RunError(f"error: {spec.path} has a fidelity ladder ({'SMOKE_' if spec.smoke else ''}FIDELITIES) and "
                       "--warm-start imports single-fidelity results, which no rung can hold (drop --warm-start, "
                       "or the ladder)", code=2)
    if opts.warm_start:
        from search.warm_start import WarmStartError, gather

        try:
            warm_points = gather(opts.warm_start, spec)
        except WarmStartError as exc:
            raise RunError(f"error: {exc}", code=2) from None
    with Experiment.claim(opts.results_dir, name, opts.resume, out=out) as exp:
        exp.check_space(spec, opts.force_space)
        started = _start_ray(opts)  # a cluster that cannot be joined leaves no trace
        try:
            concurrent = opts.max_concurrent or _fits(spec)  # nor does a cluster too small for a trial
            return _search(opts, spec, exp, name, concurrent, out, warm_points)
        finally:
            if started:
                import ray

                ray.shutdown()


def _search(opts: RunOptions, spec: SpaceSpec, exp: Experiment, name: str, concurrent: int, out,
            warm_points: tuple[list, int] = ([], 0)) -> RunSummary:
    import optuna

    from search.progress import snapshot
    from search.searcher import BudgetedOptunaSearcher, TrialLaunch
    from search.study import count_trainings, enqueue_seed_points, settle_running_trials
    from search.trial_files import start_sink

    if spec.pack_script:  # the packed copy is what trials run, the size predictor counts and promote ships
        from pgolf.pack import PackError, pack_file

        try:
            packed = exp.write(lambda: pack_file(spec.script, exp.folder / PACKED_SCRIPT))
        except PackError as exc:
            raise RunError(f"error: {spec.path}: PACK_SCRIPT: {exc}", code=2) from None
        spec = dataclasses.replace(spec, script=packed.resolve())
    settings = exp.start(spec, name, opts.num_samples, opts.seed,
                         SMOKE_NUM_SAMPLES if spec.smoke else DEFAULT_NUM_SAMPLES)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = exp.open_study(create=not opts.resume)
    recovered: list[int] = []
    if opts.resume:
        recovered, requeued = exp.write(lambda: settle_running_trials(study, spec.limits))
        if recovered or requeued:
            print(f"resume: {len(recovered)} finished trial(s) recovered from their folders, "
                  f"{len(requeued)} interrupted trial(s) queued to run again", file=out, flush=True)
    else:
        exp.write(lambda: enqueue_seed_points(study, spec))
    warm: list = []
    if opts.warm_start:  # gathered by run_search before the experiment was claimed
        from search.warm_start import add_points

        points, misfits = warm_points
        warm = exp.write(lambda: add_points(study, points))
        print(f"warm start: {len(warm)} finished trial(s) imported from {', '.join(str(f) for f in opts.warm_start)}"
              + (f" ({misfits} did not fit the space)" if misfits else ""), file=out, flush=True)
    exp.write_csv()

    remaining = max(0, settings.num_samples - count_trainings(study))
    try:
        predictors, learner_paths = make_predictors(spec, exp.folder, opts.resume)
    except LearnerError as exc:
        raise RunError(str(exc), code=2) from None
    folder = exp.folder
    sink = None if opts.replay is not None else exp.write(lambda: start_sink(folder, also=tuple(opts.sync_also)))
    searcher = BudgetedOptunaSearcher(
        spec, study, TrialLaunch(folder=folder, script=spec.script,
                                 nproc=0 if spec.smoke else spec.gpus_per_trial,
                                 prepare_data=(spec.smoke or spec.docs is not None) and opts.replay is None,
                                 timeout_s=spec.trial_timeout_seconds, score_line=spec.score_line,
                                 docs=spec.docs, docs_val_docs=spec.docs_val_docs, data_dir=folder.parent / "data",
                                 sink=sink),
        predictors, max_over_budget_in_a_row=opts.max_over_budget_in_a_row, learner_path=learner_paths,
        target=remaining, max_node_losses=opts.max_node_losses)
    for frozen in warm:  # the imported trials' measured bytes teach the size learner too
        searcher.observe(frozen.user_attrs.get("env") or {}, frozen.values[1], rejudge=False)
    if opts.resume and recovered:  # trainings that finished while the driver was down: learn from them too
        trials = study.get_trials(deepcopy=False)
        for number in recovered:
            frozen = trials[number]
            if frozen.state == optuna.trial.TrialState.COMPLETE and frozen.values:
                searcher.observe(frozen.user_attrs.get("env") or {}, frozen.values[1],
                                 frozen.user_attrs.get("fidelity"), rejudge=False)
    if warm or (opts.resume and recovered):
        searcher.rejudge()
    # Tune's own files are not results (the study is): kept off the results disk, gone at the end
    tune_dir = tempfile.mkdtemp(prefix="pgolf-tune-")
    try:
        if remaining > 0:
            _tune(opts, spec, searcher, study, name, remaining, concurrent, tune_dir, out)
    finally:
        # Whatever happened, leave no Optuna trial RUNNING and the csv current (unless the disk is
        # full: then --resume settles them once there is room).
        try:
            if not searcher.urgent:
                settle_running_trials(study, spec.limits, stop_trainings=True)
            exp.write_csv()
        except Exception as exc:  # noqa: BLE001
            if not (is_disk_full(exc) or isinstance(exc, ExperimentError)):
                raise
            searcher.aborted = searcher.aborted or disk_full_line(folder)
        shutil.rmtree(tune_dir, ignore_errors=True)
    if searcher.aborted:
        raise RunError(searcher.aborted)
    snap = snapshot(study, top=exp.top_rung)
    return RunSummary(folder=folder, counts={"complete": snap.complete, "pruned": snap.pruned,
                                             "failed": snap.failed, "running": snap.running},
                      best_bpb=snap.best_bpb, best_number=snap.best_number, front_size=snap.front_size,
                      pruned_before_launch=searcher.pruned_before_launch,
                      launched=count_trainings(study), num_samples=settings.num_samples,
                      margin_fraction=searcher.predictor.margin_fraction,
                      cost=trials_cost(study.get_trials(deepcopy=False), _device(spec), opts.gpu_hour_price,
                                       by_rung=spec.ladder is not None),
                      ladder=spec.ladder, rung_trainings=snap.rungs, duplicates=searcher.duplicates,
                      exhausted=searcher.exhausted)


def _device(spec: SpaceSpec) -> Device:
    return Device(spec.gpus_per_trial, spec.cpus_per_trial)


def _tune(opts: RunOptions, spec: SpaceSpec, searcher, study, name: str, remaining: int, concurrent: int,
          tune_dir: str, out) -> None:
    """Run the trials through Ray Tune until the searcher has `remaining` trainings (or stops)."""
    from ray import tune

    from search.progress import ProgressPrinter
    from search.runner import stop_training, train_trial
    from search.searcher import StopAll, TrialTracker

    trainable = train_trial
    if opts.replay is not None:
        from search.replay import make_replay_trainable

        trainable = make_replay_trainable(replay_tables(opts))  # same contract, no training (a table per rung)
    print(f"search {name}: {remaining} training(s) to launch, {concurrent} at once, budget "
          f"{spec.budget_bytes} bytes, results in {searcher.launch.folder}", file=out, flush=True)
    print(margin_line(searcher.predictor), file=out, flush=True)
    if spec.ladder is not None:
        print(f"fidelity ladder: {spec.ladder.describe()}; only rung {spec.ladder.top}'s trainings are results",
              file=out, flush=True)
    progress = ProgressPrinter(study, out=out, device=_device(spec), price=opts.gpu_hour_price,
                               top=spec.ladder.top if spec.ladder is not None else None)
    # Ctrl-C raises KeyboardInterrupt here (not Tune's graceful stop, which returns as if done):
    # run_search's callers settle the study and exit 130
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    tuner = tune.Tuner(
        tune.with_resources(trainable, _resources(spec)),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(spec), num_samples=-1,
                                    max_concurrent_trials=concurrent, reuse_actors=False),
        run_config=tune.RunConfig(name="tune", storage_path=tune_dir, verbose=0, stop=StopAll(searcher),
                                  callbacks=[progress, TrialTracker(searcher)],
                                  failure_config=tune.FailureConfig(max_failures=0)))
    def interrupt(_signum, _frame):
        # the flag stops Tune through StopAll even where a library swallows the KeyboardInterrupt
        # (seen once on a loaded machine: the search then ran to its end and exited 0); the trainings
        # this host runs stop now, so none finishes between the signal and the study being settled
        searcher.interrupted = True
        for trial in list(searcher.live.values()):
            if trial.user_attrs.get("trial_dir"):
                stop_training(Path(trial.user_attrs["trial_dir"]), wait_s=0)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        tuner.fit()
    except Exception as exc:  # noqa: BLE001 - a full disk is one line; anything else is a bug to see
        if not is_disk_full(exc):
            raise
        searcher.aborted = searcher.aborted or disk_full_line(searcher.launch.folder)
        return
    finally:
        signal.signal(signal.SIGINT, previous)
    if searcher.interrupted:
        raise KeyboardInterrupt
    progress.report(force=True)


def _resources(spec: SpaceSpec):
    """What each trial holds: the space's GPUs, or its rung's (a ladder's GPUS_PER_TRIAL) from the config."""
    from search.runner import trial_resources

    if spec.ladder is None or all(g is None for g in spec.ladder.gpus) or spec.gpus_per_trial == 0:
        return trial_resources(spec.gpus_per_trial, spec.cpus_per_trial, spec.resources)
    gpus, cpus, custom = spec.gpus_per_trial, spec.cpus_per_trial, spec.resources
    return lambda config: trial_resources(int(config.get("gpus", gpus)), cpus, custom)


def print_summary(summary: RunSummary, out=sys.stdout) -> None:
    c = summary.counts
    best = (f"{summary.best_bpb:.4f} (trial {summary.best_number})" if summary.best_bpb is not None
            else "none (no feasible complete trial)")
    print(f"done: {c['complete']} complete, {c['pruned']} pruned ({summary.pruned_before_launch} before "
          f"launch this run), {c['failed']} failed, {c['running']} running; {summary.launched} trainings in total",
          file=out)
    if summary.duplicates:
        print(f"repeats: {summary.duplicates} proposal(s) this run repeated a configuration trained already and "
              "were told its result instead of training (duplicate_of in trials.csv)", file=out)
    ladder = summary.ladder
    top = f" (rung {ladder.top} of the ladder)" if ladder is not None else ""  # type: ignore[attr-defined]
    print(f"best feasible val_bpb: {best}; Pareto front: {summary.front_size} trial(s){top}", file=out)
    if ladder is not None:
        print(f"fidelity ladder: {summary.rung_trainings} trainings finished per rung "
              f"(cheapest first); see search.pareto for how the rungs' rankings agree", file=out)
    print(f"size margin: {summary.margin_fraction:.1%} (see margin_bytes in trials.csv)", file=out)
    if summary.cost is not None:
        print(summary.cost.line(), file=out)
    if summary.exhausted:
        print(f"{summary.launched} of --num-samples {summary.num_samples} trainings: {summary.exhausted}", file=out)
    elif summary.launched < summary.num_samples:
        print(f"{summary.num_samples - summary.launched} training(s) short of --num-samples "
              f"{summary.num_samples}: run the same command with --resume to continue", file=out)
    prep_log = Path(summary.folder) / PREP_LOG
    if prep_log.is_file():
        lines = prep_log.read_text().splitlines()
        seconds = sum(float(m.group(1)) for line in lines if (m := re.search(r" in ([0-9.]+) s: ", line)))
        print(f"data: {len(lines)} vocab(s) prepared from DOCS in {seconds:.0f} s (apart from training; "
              f"{prep_log})", file=out)
    print(f"files: {summary.folder}/trials.csv, {summary.folder}/study.db "
          f"(optuna-dashboard sqlite:///{summary.folder}/study.db), {summary.folder}/trials/", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    try:
        summary = run_search(opts)
    except (SpaceError, RunError, ExperimentError) as exc:
        print(str(exc), file=sys.stderr)
        return getattr(exc, "code", 2)
    except KeyboardInterrupt:
        print("interrupted: the study is consistent; run the same command with --resume to continue",
              file=sys.stderr)
        return 130
    print_summary(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
