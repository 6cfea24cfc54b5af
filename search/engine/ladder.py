"""A fidelity ladder: configurations are trained cheaply first and the best are promoted to longer runs.

A space's `FIDELITIES` lists the rungs, cheapest first, each an environment laid
over the trial's (e.g. `{"ITERATIONS": 600}` ... `{"ITERATIONS": 4950}`); a rung may
also set `GPUS_PER_TRIAL` (fewer GPUs on a cheap rung: our trainer and upstream's
keep the global batch, accumulating more micro-batches per GPU). New proposals
train at rung 0. Each time a trial slot frees up, the searcher first looks for a
promotion, top rung first, as asynchronous successive halving does: of the
`n` trainings finished at rung k, the best `floor(n * PROMOTE_FRACTION)` by
Pareto rank over (val_bpb, bytes_total) among the feasible ones (bytes and time
limits are judged at every rung; an infeasible trial is never promoted; within a
front, crowding distance breaks ties, ends first) earn a training at rung k+1.
A promoted run is its own Optuna trial with the same parameters, attributes
`fidelity` (its rung) and `promoted_from` (the trial it was promoted from).
Only top-rung trials are results: the front, the best and promote read them.
`TOP_RUNG_FRACTION` sends that share of new proposals to the top rung at once
(Hyperband's bracket without early stopping), for the configurations a cheap
rung misranks, e.g. wide models that need the longer run.

What the sampler learns from (`RungSampler`): values of different rungs are
not comparable (a 600-step val_bpb is worse than any 4,950-step one, so mixed
together every promoted run would look "good" and every cheap one "bad"). As
BOHB does, the model is fitted on the highest rung that holds enough finished
trainings (`model_rung`: at least max(10, parameters + 1)), else on rung 0, which
every proposal reaches; proposals pruned before launch (their constraint
violation) and pending rung-0 proposals (constant liar) are always kept.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.core import attrs
from search.core.front import pareto_order
from search.core.limits import is_feasible
from search.core.trials import fidelity_of, param_key
from search.engine.samplers import StudyView, ViewSampler
from search.space.ladder import Ladder

MIN_MODEL_TRIALS = 10         # finished trainings a rung needs before the sampler learns from it


def finished_at(trials: Iterable[FrozenTrial], rung: int) -> list[FrozenTrial]:
    """Trainings finished at a rung (COMPLETE or FAIL; not those interrupted, which run again)."""
    return [t for t in trials if fidelity_of(t) == rung and t.user_attrs.get(attrs.LAUNCHED)
            and t.state in (TrialState.COMPLETE, TrialState.FAIL) and t.user_attrs.get(attrs.REASON) not in attrs.RUN_AGAIN]


def next_promotion(trials: Sequence[FrozenTrial], ladder: Ladder) -> tuple[FrozenTrial, int] | None:
    """The trial to train next at a higher rung, and that rung; None when no trial has earned it.

    Top rung first; at rung k, a feasible trial among the best floor(n_k x fraction) finished there
    whose parameters have no trial at rung k+1 yet (promoted, waiting, or sent there directly)."""
    promoted = {(rung, param_key(t.params)) for t in trials if (rung := fidelity_of(t))}
    for rung in range(ladder.top - 1, -1, -1):
        done = finished_at(trials, rung)
        allowed = math.floor(len(done) * ladder.fraction + 1e-9)
        if allowed < 1:
            continue
        eligible = [t for t in done if is_feasible(t)]
        order = pareto_order([(t.values[0], t.values[1]) for t in eligible])
        for i in order[:allowed]:
            if (rung + 1, param_key(eligible[i].params)) not in promoted:
                return eligible[i], rung + 1
    return None


def ask(study: optuna.Study, ladder: Ladder) -> tuple[optuna.Trial, int]:
    """The next trial and its rung: a waiting one (a seed point, a requeued or promoted run), a promotion
    the ladder owes (`next_promotion`, enqueued as a trial of its own), else a new proposal: at rung 0,
    or at the top rung for every 1/TOP_RUNG_FRACTION-th one."""
    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        promotion = next_promotion(study.get_trials(deepcopy=False), ladder)
        if promotion is not None:
            source, rung = promotion
            study.enqueue_trial(source.params, user_attrs={attrs.FIDELITY: rung, attrs.PROMOTED_FROM: source.number})
    trial = study.ask()
    rung = fidelity_of(trial)
    if rung is None:  # a new proposal (or a seed point): the cheapest rung, or the top one (TOP_RUNG_FRACTION)
        proposals = sum(1 for t in study.get_trials(deepcopy=False)
                        if t.user_attrs.get(attrs.LAUNCHED) and t.user_attrs.get(attrs.PROMOTED_FROM) is None
                        and t.user_attrs.get(attrs.REQUEUED_FROM) is None)
        rung = ladder.top if ladder.starts_at_top(proposals) else 0
        trial.set_user_attr(attrs.FIDELITY, rung)
    return trial, rung


def model_rung(trials: Sequence[FrozenTrial], ladder: Ladder, n_params: int) -> int:
    """The highest rung with at least max(MIN_MODEL_TRIALS, parameters + 1) finished trainings (BOHB's
    rule), else 0."""
    need = max(MIN_MODEL_TRIALS, n_params + 1)
    for rung in range(ladder.top, 0, -1):
        if sum(1 for t in trials if fidelity_of(t) == rung and t.state == TrialState.COMPLETE) >= need:
            return rung
    return 0


class RungSampler(ViewSampler):
    """A sampler that learns from one rung at a time (see the module docstring); proposals are
    asked of `base` (the search's TPE) through a view of the study holding that rung's trials."""

    def __init__(self, base: optuna.samplers.BaseSampler, ladder: Ladder):
        super().__init__(base)
        self.ladder = ladder

    def _view(self, study: optuna.Study) -> StudyView:
        trials = study._get_trials(deepcopy=False, use_cache=True)
        rung = model_rung(trials, self.ladder, len({k for t in trials for k in t.params}))

        def keep(t: FrozenTrial) -> bool:
            at = fidelity_of(t) or 0
            if t.state == TrialState.PRUNED:  # pruned before launch: its violation teaches the constraint
                return True
            if t.state == TrialState.RUNNING:  # pending proposals (constant liar), never promotions
                return at == 0
            return at == rung
        return StudyView(study, keep)
