"""The experiment's Optuna study: how it is opened, and how each trial's end is told to it.

A launched training ends COMPLETE with `[val_bpb, bytes_total]` and one
constraint per limit (measured - limit, <= 0 feasible), FAIL with its reason,
or PRUNED when stopped early. The study is the whole state of a search:
`settle_running_trials` makes a study left behind by a killed driver
consistent again (finished trainings recovered from their folders, launched
ones queued to run again), which is how `--resume` works.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.cost import PRUNED_BEFORE_LAUNCH
from search.failures import Failure, classify
from search.results import BUDGET_CONSTRAINT, DUPLICATE_OF_ATTR, REJUDGED_ATTR
from search.runner import load_finished_metrics, stop_training
from search.space import SAMPLERS, SpaceSpec

STOPPED_SEARCH_ATTR = "stopped_search_trials"  # study attribute: failures that stopped the search
_METRIC_ATTRS = ("val_loss", "bytes_code", "bytes_model", "steps", "train_seconds", "eval_seconds",
                 "gpu_seconds", "wall_seconds", "prep_seconds", "log_path", "score_label")


def as_limits(limits: int | Mapping[str, float]) -> dict[str, float]:
    """A space's limits as {metric: limit}; a bare number is the byte budget."""
    return {"bytes_total": limits} if isinstance(limits, (int, float)) else dict(limits)


def limit_constraint(metric: str) -> str:
    """The Optuna constraint of one limit: `bytes_over_budget`, `eval_seconds_over_limit`, ..."""
    return BUDGET_CONSTRAINT if metric == "bytes_total" else f"{metric}_over_limit"


def limit_reason(metric: str) -> str:
    return "over_budget" if metric == "bytes_total" else f"over_{metric}"




def make_sampler(seed: int | None, ladder: Any = None, kind: str = SAMPLERS[0],
                 limits: Mapping[str, float] | None = None) -> optuna.samplers.BaseSampler:
    """The search's sampler: `gp`, the known-budget Gaussian process (`search.gp_sampler`: it proposes only
    what the byte predictor accepts, the searcher installs its judge), or `tpe`, multivariate TPE (several
    objectives, trials' constraints). With a fidelity ladder it learns from one rung at a time
    (`search.ladder.RungSampler`); either way through a `ForgivingSampler`, which shows it proposals
    pruned before launch as the current prediction judges them."""
    if kind == "gp":
        from search.gp_sampler import KnownBudgetGPSampler

        base: optuna.samplers.BaseSampler = KnownBudgetGPSampler(seed=seed, limits=limits)
    else:
        base = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if ladder is None:
        return ForgivingSampler(base)
    from search.ladder import RungSampler

    return ForgivingSampler(RungSampler(base, ladder))


# ----------------------------------------------------------------------------- forgiving



class StudyView:
    """A study whose trial lists hold what `keep` accepts, each passed through `show`; everything
    else is the study's (a sampler asks its base sampler through one)."""

    def __init__(self, study: optuna.Study, keep: Callable[[FrozenTrial], bool],
                 show: Callable[[FrozenTrial], FrozenTrial] | None = None):
        self._study = study
        self._keep = keep
        self._show = show or (lambda t: t)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states=None, use_cache: bool = False) -> list[FrozenTrial]:
        return [self._show(t) for t in self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
                if self._keep(t)]

    def get_trials(self, deepcopy: bool = True, states=None) -> list[FrozenTrial]:
        return [self._show(t) for t in self._study.get_trials(deepcopy=deepcopy, states=states) if self._keep(t)]


def rejudged(study: optuna.Study) -> dict[int, list[float]]:
    """The current judgement of every proposal pruned before launch: {number: [predicted, margin, violation]}."""
    return {int(k): v for k, v in dict(study.user_attrs.get(REJUDGED_ATTR) or {}).items()}


def rejudge_pruned(study: optuna.Study, prune_of: Callable[[FrozenTrial], tuple[bool, int | None, int]],
                   budget_bytes: int) -> tuple[int, int]:
    """Judge every proposal pruned before launch again with the predictor as it is now (`prune_of`:
    a trial -> (prune?, predicted, margin)) and store the judgements in the study (REJUDGED_ATTR),
    for `ForgivingSampler`, `--resume` and trials.csv. Returns (re-judged, now within budget)."""
    judged: dict[str, list[float]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        if t.user_attrs.get("reason") != PRUNED_BEFORE_LAUNCH or not t.user_attrs.get("env"):
            continue
        _, predicted, margin = prune_of(t)
        if predicted is not None:
            judged[str(t.number)] = [int(predicted), int(margin), float(predicted + margin - budget_bytes)]
    if judged != dict(study.user_attrs.get(REJUDGED_ATTR) or {}):
        study.set_user_attr(REJUDGED_ATTR, judged)
    return len(judged), sum(v[2] <= 0 for v in judged.values())


class ViewSampler(optuna.samplers.BaseSampler):
    """A sampler that asks `base` for proposals through a view of the study (`_view`, per subclass)."""

    def __init__(self, base: optuna.samplers.BaseSampler):
        self.base = base

    def _view(self, study: optuna.Study) -> StudyView:
        raise NotImplementedError

    def infer_relative_search_space(self, study, trial):
        return self.base.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study, trial, search_space):
        return self.base.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.base.sample_independent(self._view(study), trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self.base.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self.base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.base.reseed_rng()


class ForgivingSampler(ViewSampler):
    """The search's sampler, shown the study as the byte predictor judges it now.

    A proposal pruned before launch was told PRUNED with the violation its prediction had then, and a
    finished trial cannot be changed in Optuna's storage. The predictor learns (a correction, a
    narrower margin), so every proposal pruned before launch is judged again after each completed
    training (`rejudge_pruned`, kept in the study). The base sampler then sees a proposal still over
    budget with its current violation, and does not see one now within budget at all: it was never
    trained, so it tells nothing but the wrong verdict, and that region is open to proposals again.
    """

    def _view(self, study: optuna.Study) -> StudyView:
        judged = rejudged(study)

        def keep(t: FrozenTrial) -> bool:
            return not (t.number in judged and judged[t.number][2] <= 0 and t.state == TrialState.PRUNED)

        def show(t: FrozenTrial) -> FrozenTrial:
            if t.number not in judged or t.state != TrialState.PRUNED:
                return t
            shown = copy.copy(t)
            named = {k: v for k, v in t.constraints.items() if not k.isdigit()}
            named[BUDGET_CONSTRAINT] = judged[t.number][2]
            shown._system_attrs = {**{k: v for k, v in t.system_attrs.items() if not k.startswith(LIST_CONSTRAINTS)},
                                   **constraint_attrs(named)}
            return shown
        return StudyView(study, keep, show)


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
        study.enqueue_trial(point, user_attrs={"seed_point": True})


def set_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        trial.set_user_attr(key, value)


LIST_CONSTRAINTS = "constraints"  # the older system attribute: one list, which optuna-dashboard 0.21 reads


def _listed(named: Mapping[str, float]) -> list[float]:
    return [float(named[k]) for k in sorted(named)]


def constraint_attrs(named: Mapping[str, float]) -> dict[str, Any]:
    """Constraints as a trial's system attributes in both forms (`set_constraint`), for a trial made whole
    (`optuna.trial.create_trial`)."""
    return {**{f"constraints:{k}": float(v) for k, v in named.items()}, LIST_CONSTRAINTS: _listed(named)}


def set_constraint(trial: optuna.Trial, name: str, value: float) -> None:
    """`Trial.set_constraint`, mirrored into the older list attribute so that optuna-dashboard (which reads
    only the list) shows the budget; Optuna reads both, every constraint then twice: the sum of positive
    violations its samplers rank infeasible trials by doubles for every trial alike, which keeps their order."""
    trial.set_constraint(name, float(value))
    named = {k: v for k, v in trial.constraints.items() if not k.isdigit()}
    trial.storage.set_trial_system_attr(trial._trial_id, LIST_CONSTRAINTS, _listed(named))


def set_violation(trial: optuna.Trial, violation: float) -> None:
    if BUDGET_CONSTRAINT not in trial.constraints:
        set_constraint(trial, BUDGET_CONSTRAINT, float(violation))


def record_result(study: optuna.Study, trial: optuna.Trial, result: Mapping[str, Any] | None,
                  error: bool | Failure, limits: int | Mapping[str, float]) -> TrialState:
    """Tell Optuna how a launched training ended; return the state told.

    A finished training gets one constraint per limit (measured value - limit, <= 0 feasible); one
    over any limit is COMPLETE but infeasible, its reason naming the limits it broke. A limit on a
    figure the script did not report (no evaluation time in its log) cannot be judged: its
    constraint is 0 and the trial's `unjudged_limits` attribute names it.
    """
    limits = as_limits(limits)
    budget_bytes = int(limits["bytes_total"])
    trial_dir = Path(trial.user_attrs.get("trial_dir", "."))
    predicted = trial.user_attrs.get("predicted_bytes")
    if error:
        failure = error if isinstance(error, Failure) else classify(trial_dir, None)
        set_attrs(trial, {"reason": failure.reason, "message": failure.message, "log_tail": failure.tail})
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    if not result or not result.get("training_done"):
        last = dict(result or {})
        set_attrs(trial, {"reason": "early_stopped", "val_bpb": last.get("val_bpb"),
                           "val_loss": last.get("val_loss"), "steps": last.get("step")})
        if isinstance(predicted, (int, float)):
            set_violation(trial, predicted - budget_bytes)
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED
    val_bpb, total = result.get("val_bpb"), result.get("bytes_total")
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (val_bpb, total)):
        failure = classify(trial_dir, None)
        message = failure.message if failure.reason != "node_lost" else ""
        set_attrs(trial, {"reason": "nan_loss", "message": message or "the final val_bpb is not finite",
                           "log_tail": failure.tail})
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL
    set_attrs(trial, {k: result.get(k) for k in _METRIC_ATTRS})
    broken, unjudged = [], []
    for metric, limit in limits.items():
        value = result.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            violation = float(value) - float(limit)
            if violation > 0:
                broken.append(limit_reason(metric))
        else:
            violation = 0.0
            unjudged.append(metric)
        if metric == "bytes_total":
            set_violation(trial, violation)
        else:
            set_constraint(trial, limit_constraint(metric), violation)
    if broken:
        set_attrs(trial, {"reason": "+".join(broken)})
    if unjudged:
        set_attrs(trial, {"unjudged_limits": unjudged})
    study.tell(trial, [float(val_bpb), float(total)])
    return TrialState.COMPLETE


def tell_duplicate(study: optuna.Study, trial: optuna.Trial, original: FrozenTrial) -> TrialState:
    """Tell a proposal that repeats `original` (same parameters, same rung) what that training found: its
    values and constraints (COMPLETE), or its state (stopped early, failed). It was never trained: it has
    no metrics of its own, so it counts neither as a training nor in the cost."""
    trial.set_user_attr(DUPLICATE_OF_ATTR, original.number)
    if original.state == TrialState.COMPLETE and original.values:
        for name, value in original.constraints.items():
            if not name.isdigit():
                set_constraint(trial, name, value)
        if original.user_attrs.get("reason"):
            trial.set_user_attr("reason", original.user_attrs["reason"])
        study.tell(trial, list(original.values))
        return TrialState.COMPLETE
    state = TrialState.PRUNED if original.state == TrialState.PRUNED else TrialState.FAIL
    trial.set_user_attr("reason", "duplicate")
    trial.set_user_attr("message", f"a repeat of trial {original.number}, which ended {original.state.name}")
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
        trial_dir = frozen.user_attrs.get("trial_dir")
        if trial_dir and stop_trainings:
            stop_training(Path(trial_dir))
        metrics = load_finished_metrics(Path(trial_dir), frozen.user_attrs.get("env")) if trial_dir else None
        if metrics is not None:
            record_result(study, trial, {**metrics, "training_done": True}, False, limits)
            recovered.append(frozen.number)
            continue
        set_attrs(trial, {"reason": "interrupted"})
        study.tell(trial, state=TrialState.FAIL)
        if frozen.user_attrs.get("launched"):
            requeue(study, frozen)
            requeued.append(frozen.number)
    return recovered, requeued


RUN_AGAIN = ("interrupted", "node_lost")  # reasons whose parameters are queued again


def requeue(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
    """Queue a launched trial's parameters to run again (after a killed driver or a lost node)."""
    lost = int(frozen.user_attrs.get("lost_in_a_row", 0)) + (frozen.user_attrs.get("reason") == "node_lost")
    rung = {k: frozen.user_attrs[k] for k in ("fidelity", "promoted_from", "seed_point") if k in frozen.user_attrs}
    study.enqueue_trial(frozen.params, user_attrs={"requeued_from": frozen.number, "lost_in_a_row": lost,
                                                   "requeued_because": frozen.user_attrs.get("reason", ""), **rung},
                        skip_if_exists=False)


def count_trainings(study: optuna.Study) -> int:
    """Trainings launched and finished (interrupted ones and those on a lost node excluded: they run
    again; so are the failures that stopped a search: their cause is fixed before it resumes)."""
    stopped = set(study.user_attrs.get(STOPPED_SEARCH_ATTR, []))
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.user_attrs.get("launched") and t.state.is_finished()
               and t.user_attrs.get("reason") not in RUN_AGAIN and t.number not in stopped)
