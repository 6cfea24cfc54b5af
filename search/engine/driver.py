"""The driver of one search: every check on the input before Ray starts, then the experiment folder
claimed, the study opened (or settled, for --resume), the predictors built and the trials run through
Ray Tune (`search.engine.tuning`) until the searcher has its trainings; the study is left consistent
on every exit path."""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile

import optuna

from pgolf.cluster import ClusterError
from search.core import attrs
from search.core.cost import trials_cost
from search.core.errors import disk_full_line, is_disk_full
from search.core.layout import PACKED_SCRIPT
from search.engine.options import (DEFAULT_NUM_SAMPLES, SMOKE_NUM_SAMPLES, RunError, RunOptions, RunSummary,
                                   check_address, check_name, default_name, replay_tables)
from search.engine.predictors import LearnerError, make_predictors
from search.engine.progress import snapshot
from search.engine.searcher import BudgetedOptunaSearcher, TrialLaunch
from search.engine.study import count_trainings, enqueue_seed_points, open_study, settle_running_trials
from search.engine.tuning import device_of, run_trials
from search.engine.warm_start import WarmStartError, add_points, gather
from search.runner.cluster import start_ray
from search.runner.replay import ReplayError, load_table
from search.runner.trial_files import start_sink
from search.space.knobs import check_space_variables
from search.space.load import load_space
from search.space.points import check_points
from search.space.spec import SpaceSpec
from search.store.experiment import Experiment
from search.store.lock import ExperimentError


def _start_ray(opts: RunOptions) -> bool:
    """Join or start a Ray cluster; True when this call started it (and must shut it down)."""
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


def run_search(opts: RunOptions, out=sys.stdout) -> RunSummary:
    """Run (or resume) one search to the end; raise SpaceError/RunError/ExperimentError with one line.

    Every check that can fail on the input runs before Ray starts and before anything is written."""
    check_address(opts.address)
    spec = load_space(opts.space, smoke=opts.smoke)
    check_points(spec)           # a POINTS_TO_EVALUATE key the space never suggests would be dropped
    check_space_variables(spec)  # a typo in a variable name would train the defaults in every trial
    if opts.replay is not None:
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
    study = exp.write(lambda: open_study(settings.study_name or name, exp.storage, settings.seed,
                                         create=not opts.resume, ladder=spec.ladder, sampler=spec.sampler,
                                         limits=settings.limits))
    exp.study = study
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
        searcher.observe(frozen.user_attrs.get(attrs.ENV) or {}, frozen.values[1], rejudge=False)
    if opts.resume and recovered:  # trainings that finished while the driver was down: learn from them too
        trials = study.get_trials(deepcopy=False)
        for number in recovered:
            frozen = trials[number]
            if frozen.state == optuna.trial.TrialState.COMPLETE and frozen.values:
                searcher.observe(frozen.user_attrs.get(attrs.ENV) or {}, frozen.values[1],
                                 frozen.user_attrs.get(attrs.FIDELITY), rejudge=False)
    if warm or (opts.resume and recovered):
        searcher.rejudge()
    # Tune's own files are not results (the study is): kept off the results disk, gone at the end
    tune_dir = tempfile.mkdtemp(prefix="pgolf-tune-")
    try:
        if remaining > 0:
            run_trials(opts, spec, searcher, study, name, remaining, concurrent, tune_dir, out)
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
                      cost=trials_cost(study.get_trials(deepcopy=False), device_of(spec), opts.gpu_hour_price,
                                       by_rung=spec.ladder is not None),
                      ladder=spec.ladder, rung_trainings=snap.rungs, duplicates=searcher.duplicates,
                      exhausted=searcher.exhausted)
