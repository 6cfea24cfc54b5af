"""The experiment's Optuna study: how it is opened, and how each trial's end is told to it.

A launched training ends COMPLETE with `[val_bpb, bytes_total]` and one
constraint per limit (measured - limit, <= 0 feasible), FAIL with its reason,
or PRUNED when stopped early. The study is the whole state of a search:
`settle_running_trials` makes a study left behind by a killed driver
consistent again (finished trainings recovered from their folders, launched
ones queued to run again), which is how `--resume` works.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.core import attrs
from search.core.limits import BUDGET_CONSTRAINT, as_limits, judge, named_constraints
from search.engine.constraints import set_constraint, set_violation
from search.engine.gp_sampler import KnownBudgetGPSampler
from search.engine.ladder import RungSampler
from search.engine.samplers import ForgivingSampler
from search.runner.failures import Failure, classify
from search.runner.metrics import load_finished_metrics
from search.runner.process import stop_training
from search.space.spec import SAMPLERS, SpaceSpec


def make_sampler(seed: int | None, ladder: Any = None, kind: str = SAMPLERS[0],
                 limits: Mapping[str, float] | None = None) -> optuna.samplers.BaseSampler:
    """The space's SAMPLER (see `search.engine.samplers`): the known-budget GP or TPE, through a
    `RungSampler` with a fidelity ladder, always through a `ForgivingSampler`."""
    if kind == "gp":
        base: optuna.samplers.BaseSampler = KnownBudgetGPSampler(seed=seed, limits=limits)
    else:
        base = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    return ForgivingSampler(base if ladder is None else RungSampler(base, ladder))


def open_study(name: str, storage: str, seed: int | None, create: bool, ladder: Any = None,
               sampler: str = SAMPLERS[0], limits: Mapping[str, float] | None = None) -> optuna.Study:
    """Create the experiment's study, or load it for --resume (`sampler`: the space's SAMPLER)."""
    if create:
        study = optuna.create_study(study_name=name, storage=storage, sampler=make_sampler(seed, ladder, sampler, limits),
                                    directions=["minimize", "minimize"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(["val_bpb", "bytes_total"])
        return study
    study = optuna.load_study(study_name=name, storage=storage)
    # A resumed study must not replay the proposals of the first run: offset the seed by
    # the trials already there (still reproducible for the same history).
    offset = len(study.get_trials(deepcopy=False))
    study.sampler = make_sampler(None if seed is None else seed + offset, ladder, sampler, limits)
    return study


def enqueue_seed_points(study: optuna.Study, spec: SpaceSpec) -> None:
    """Queue the space's POINTS_TO_EVALUATE (e.g. the baseline) to be proposed first."""
    for point in spec.points_to_evaluate:
        study.enqueue_trial(point, user_attrs={attrs.SEED_POINT: True})


def set_attrs(trial: optuna.Trial, values: Mapping[str, Any]) -> None:
    """Set user attributes; a non-finite float is stored as None (JSON has no NaN)."""
    for key, value in values.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        trial.set_user_attr(key, value)


def record_result(study: optuna.Study, trial: optuna.Trial, result: Mapping[str, Any] | None,
                  error: bool | Failure, limits: int | Mapping[str, float]) -> TrialState:
    """Tell Optuna how a launched training ended; return the state told.

    A finished training gets one constraint per limit (`search.core.limits.judge`: measured value -
    limit, <= 0 feasible); one over any limit is COMPLETE but infeasible, its reason naming the limits it
    broke. A limit on a figure the script did not report (no evaluation time in its log) cannot be
    judged: its constraint is 0 and the trial's `unjudged_limits` attribute names it.
    """
    limits = as_limits(limits)
    trial_dir = Path(trial.user_attrs.get(attrs.TRIAL_DIR, "."))
    predicted = trial.user_attrs.get(attrs.PREDICTED_BYTES)
    if error:
        failure = error if isinstance(error, Failure) else classify(trial_dir, None)
        set_attrs(trial, {attrs.REASON: failure.reason, attrs.MESSAGE: failure.message, attrs.LOG_TAIL: failure.tail})
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    if not result or not result.get("training_done"):
        last = dict(result or {})
        set_attrs(trial, {attrs.REASON: attrs.EARLY_STOPPED, "val_bpb": last.get("val_bpb"),
                          "val_loss": last.get("val_loss"), "steps": last.get("step")})
        if isinstance(predicted, (int, float)):
            set_violation(trial, predicted - int(limits["bytes_total"]))
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    val_bpb, total = result.get("val_bpb"), result.get("bytes_total")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (val_bpb, total)):
        failure = classify(trial_dir, None)
        message = failure.message if failure.reason != attrs.NODE_LOST else ""
        set_attrs(trial, {attrs.REASON: attrs.NAN_LOSS, attrs.MESSAGE: message or "the final val_bpb is not finite",
                          attrs.LOG_TAIL: failure.tail})
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    set_attrs(trial, {k: result.get(k) for k in attrs.METRICS})
    verdict = judge(result, limits)
    for name, violation in verdict.constraints.items():
        if name == BUDGET_CONSTRAINT:
            set_violation(trial, violation)  # unless told already
        else:
            set_constraint(trial, name, violation)
    if verdict.broken:
        set_attrs(trial, {attrs.REASON: "+".join(verdict.broken)})
    if verdict.unjudged:
        set_attrs(trial, {attrs.UNJUDGED_LIMITS: list(verdict.unjudged)})
    study.tell(trial, [float(val_bpb), float(total)])
    return TrialState.COMPLETE


def tell_duplicate(study: optuna.Study, trial: optuna.Trial, original: FrozenTrial) -> TrialState:
    """Tell a proposal that repeats `original` (same parameters, same rung) what that training found: its
    values and constraints (COMPLETE), or its state (stopped early, failed). It was never trained: it has
    no metrics of its own, so it counts neither as a training nor in the cost."""
    trial.set_user_attr(attrs.DUPLICATE_OF, original.number)
    if original.state == TrialState.COMPLETE and original.values:
        for name, value in named_constraints(original).items():
            set_constraint(trial, name, value)
        if original.user_attrs.get(attrs.REASON):
            trial.set_user_attr(attrs.REASON, original.user_attrs[attrs.REASON])
        study.tell(trial, list(original.values))
        return TrialState.COMPLETE
    state = TrialState.PRUNED if original.state == TrialState.PRUNED else TrialState.FAIL
    trial.set_user_attr(attrs.REASON, attrs.DUPLICATE)
    trial.set_user_attr(attrs.MESSAGE, f"a repeat of trial {original.number}, which ended {original.state.name}")
    study.tell(trial, state=state)
    return state


def settle_running_trials(study: optuna.Study, limits: int | Mapping[str, float],
                          stop_trainings: bool = False) -> tuple[list[int], list[int]]:
    """Leave no trial RUNNING: finished trainings become COMPLETE, others FAIL + re-enqueued.

    A trial whose folder holds a finished metrics.json for its environment is
    told COMPLETE from it (its training is never run again); any other RUNNING
    trial was interrupted: it is told FAIL with reason `interrupted`, and if its
    training had been launched its parameters are enqueued so that the next
    search runs it again (a proposal killed before launch, perhaps with only
    part of its parameters drawn, cost nothing and is not repeated).
    `stop_trainings` (the driver leaving a search it stopped: Ctrl-C, an abort) first kills each
    trial's training still running on this host (`search.runner.stop_training`), so that its folder
    cannot change after it was read.
    Returns (numbers recovered, numbers re-enqueued).
    """
    recovered, requeued = [], []
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        trial = optuna.Trial(study, frozen._trial_id)
        trial_dir = frozen.user_attrs.get(attrs.TRIAL_DIR)
        if trial_dir and stop_trainings:
            stop_training(Path(trial_dir))
        metrics = load_finished_metrics(Path(trial_dir), frozen.user_attrs.get(attrs.ENV)) if trial_dir else None
        if metrics is not None:
            record_result(study, trial, {**metrics, "training_done": True}, False, limits)
            recovered.append(frozen.number)
            continue
        set_attrs(trial, {attrs.REASON: attrs.INTERRUPTED})
        study.tell(trial, state=TrialState.FAIL)
        if frozen.user_attrs.get(attrs.LAUNCHED):
            requeue(study, frozen)
            requeued.append(frozen.number)
    return recovered, requeued


def requeue(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
    """Queue a launched trial's parameters to run again (after a killed driver or a lost node)."""
    lost = int(frozen.user_attrs.get(attrs.LOST_IN_A_ROW, 0)) + (frozen.user_attrs.get(attrs.REASON) == attrs.NODE_LOST)
    kept = {k: frozen.user_attrs[k] for k in (attrs.FIDELITY, attrs.PROMOTED_FROM, attrs.SEED_POINT)
            if k in frozen.user_attrs}
    study.enqueue_trial(frozen.params, user_attrs={attrs.REQUEUED_FROM: frozen.number, attrs.LOST_IN_A_ROW: lost,
                                                   attrs.REQUEUED_BECAUSE: frozen.user_attrs.get(attrs.REASON, ""),
                                                   **kept},
                        skip_if_exists=False)


def count_trainings(study: optuna.Study) -> int:
    """Trainings launched and finished (interrupted ones and those on a lost node excluded: they run
    again; so are the failures that stopped a search: their cause is fixed before it resumes)."""
    stopped = set(study.user_attrs.get(attrs.STOPPED_SEARCH, []))
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.user_attrs.get(attrs.LAUNCHED) and t.state.is_finished()
               and t.user_attrs.get(attrs.REASON) not in attrs.RUN_AGAIN and t.number not in stopped)
