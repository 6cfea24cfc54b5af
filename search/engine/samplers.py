"""The search's samplers: what proposes the next configuration, and which trials it learns from.

`make_sampler` builds the space's SAMPLER: `gp`, the known-budget Gaussian process
(`search.engine.gp_sampler`: it proposes only what the byte predictor accepts, the searcher installs
its judge), or `tpe`, multivariate TPE (several objectives, trials' constraints). With a fidelity
ladder it learns from one rung at a time (`search.engine.ladder.RungSampler`); either way through a
`ForgivingSampler`, which shows it proposals pruned before launch as the current prediction judges
them. A wrapper asks its base sampler through a `StudyView` of the study.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.core import attrs
from search.core.limits import BUDGET_CONSTRAINT, named_constraints
from search.engine.constraints import LIST_CONSTRAINTS, constraint_attrs


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
    return {int(k): v for k, v in dict(study.user_attrs.get(attrs.REJUDGED) or {}).items()}


def rejudge_pruned(study: optuna.Study, prune_of: Callable[[FrozenTrial], tuple[bool, int | None, int]],
                   budget_bytes: int) -> tuple[int, int]:
    """Judge every proposal pruned before launch again with the predictor as it is now (`prune_of`:
    a trial -> (prune?, predicted, margin)) and store the judgements in the study (REJUDGED),
    for `ForgivingSampler`, `--resume` and trials.csv. Returns (re-judged, now within budget)."""
    judged: dict[str, list[float]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)):
        if t.user_attrs.get(attrs.REASON) != attrs.OVER_BUDGET_PREDICTED or not t.user_attrs.get(attrs.ENV):
            continue
        _, predicted, margin = prune_of(t)
        if predicted is not None:
            judged[str(t.number)] = [int(predicted), int(margin), float(predicted + margin - budget_bytes)]
    if judged != dict(study.user_attrs.get(attrs.REJUDGED) or {}):
        study.set_user_attr(attrs.REJUDGED, judged)
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
            named = named_constraints(t)
            named[BUDGET_CONSTRAINT] = judged[t.number][2]
            shown._system_attrs = {**{k: v for k, v in t.system_attrs.items() if not k.startswith(LIST_CONSTRAINTS)},
                                   **constraint_attrs(named)}
            return shown
        return StudyView(study, keep, show)


def innermost(sampler: Any) -> Any:
    """The sampler under the search's wrappers (`ForgivingSampler`, `RungSampler`: their `.base`)."""
    while hasattr(sampler, "base"):
        sampler = sampler.base
    return sampler
