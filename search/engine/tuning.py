"""Running a search's trials through Ray Tune: the trainable (or a replay of a table), what each trial
holds, early stopping, the progress line, Ctrl-C, and the hooks that tie Tune to the searcher."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from search.core import attrs
from search.core.cost import Device
from search.core.errors import disk_full_line, is_disk_full
from search.engine.options import RunOptions, replay_tables
from search.engine.predictors import margin_line
from search.engine.progress import ProgressPrinter
from search.engine.searcher import BudgetedOptunaSearcher
from search.runner.cluster import trial_resources
from search.runner.process import stop_training
from search.runner.replay import make_replay_trainable
from search.runner.trainable import train_trial
from search.space.spec import SpaceSpec

def reuse_workers(spec: SpaceSpec) -> bool:
    """Whether Tune may run a trial in the worker of a finished one (`reuse_actors`): it cuts the idle time
    between trials (bench/overhead.py, against --fresh-workers) and saves ~1.5 CPU-s of imports per trial.
    Not with EARLY_STOPPING: a trial ASHA stops is cached for reuse while its training may still run until
    its next validation line (and Tune fails the next trial when the worker is not free within 2 s); a
    fresh worker per trial lets Tune kill the stopped one, and the training dies with it."""
    return not spec.early_stopping


def device_of(spec: SpaceSpec) -> Device:
    """What one trial of the space holds: the unit its cost is counted in."""
    return Device(spec.gpus_per_trial, spec.cpus_per_trial)


def _scheduler(spec: SpaceSpec):
    """A space's EARLY_STOPPING as Tune's ASHA scheduler (None: every training runs to its end)."""
    if not spec.early_stopping:
        return None
    from ray.tune.schedulers import ASHAScheduler

    settings = {"grace_period": 1, "reduction_factor": 2, "max_t": 100_000, **spec.early_stopping}
    return ASHAScheduler(metric="val_bpb", mode="min", time_attr="training_iteration", **settings)


def run_trials(opts: RunOptions, spec: SpaceSpec, searcher: BudgetedOptunaSearcher, study, name: str,
               remaining: int, concurrent: int, tune_dir: str, out) -> None:
    """Run the trials through Ray Tune until the searcher has `remaining` trainings (or stops)."""
    from ray import tune

    trainable = train_trial
    if opts.replay is not None:
        trainable = make_replay_trainable(replay_tables(opts))  # same contract, no training (a table per rung)
    print(f"search {name}: {remaining} training(s) to launch, {concurrent} at once, budget "
          f"{spec.budget_bytes} bytes, results in {searcher.launch.folder}", file=out, flush=True)
    print(margin_line(searcher.predictor), file=out, flush=True)
    if spec.ladder is not None:
        print(f"fidelity ladder: {spec.ladder.describe()}; only rung {spec.ladder.top}'s trainings are results",
              file=out, flush=True)
    progress = ProgressPrinter(study, out=out, device=device_of(spec), price=opts.gpu_hour_price,
                               top=spec.ladder.top if spec.ladder is not None else None)
    # Ctrl-C raises KeyboardInterrupt here (not Tune's graceful stop, which returns as if done):
    # run_search's callers settle the study and exit 130
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    tuner = tune.Tuner(
        tune.with_resources(trainable, trial_request(spec)),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(spec), num_samples=-1,
                                    max_concurrent_trials=concurrent, reuse_actors=reuse_workers(spec)),
        run_config=tune.RunConfig(name="tune", storage_path=tune_dir, verbose=0, stop=StopAll(searcher),
                                  callbacks=[progress, TrialTracker(searcher)],
                                  failure_config=tune.FailureConfig(max_failures=0)))
    def interrupt(_signum, _frame):
        # the flag stops Tune through StopAll even where a library swallows the KeyboardInterrupt
        # (seen once on a loaded machine: the search then ran to its end and exited 0); the trainings
        # this host runs stop now, so none finishes between the signal and the study being settled
        searcher.interrupted = True
        for trial in list(searcher.live.values()):
            if trial.user_attrs.get(attrs.TRIAL_DIR):
                stop_training(Path(trial.user_attrs[attrs.TRIAL_DIR]), wait_s=0)
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


def trial_request(spec: SpaceSpec):
    """What each trial holds: the space's GPUs, or its rung's (a ladder's GPUS_PER_TRIAL) from the config."""
    if spec.ladder is None or all(g is None for g in spec.ladder.gpus) or spec.gpus_per_trial == 0:
        return trial_resources(spec.gpus_per_trial, spec.cpus_per_trial, spec.resources)
    gpus, cpus, custom = spec.gpus_per_trial, spec.cpus_per_trial, spec.resources
    return lambda config: trial_resources(int(config.get("gpus", gpus)), cpus, custom)


class TrialTracker(Callback):
    """Hands the searcher Tune's Trial objects, whose recorded errors tell a lost node from a crash."""

    def __init__(self, searcher: BudgetedOptunaSearcher):
        self.searcher = searcher

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info) -> None:
        self.searcher.tune_trials[trial.trial_id] = trial


class StopAll(Stopper):
    """Stops every running trial once the searcher must stop at once (a full disk, Ctrl-C)."""

    def __init__(self, searcher: BudgetedOptunaSearcher):
        self.searcher = searcher

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.searcher.urgent or self.searcher.interrupted

    def stop_all(self) -> bool:
        return self.searcher.urgent or self.searcher.interrupted
