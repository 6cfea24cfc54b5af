"""What an experiment has tried, configuration by configuration, at the rung new proposals start on.

The searcher never trains a configuration twice at one rung: a proposal repeating a training is told
that training's result (`original`), the GP's judge refuses what was trained (`trained_keys`), and a
finite space ends once every configuration is trained, imported or predicted over budget (`coverage`).
All of it is read from the study, the one source of truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.core import attrs
from search.core.trials import fidelity_of, imported, param_key
from search.engine.samplers import rejudged
from search.space.points import space_size


@dataclass(frozen=True)
class Coverage:
    """A finite space against what was tried: configurations in all, trained (or imported), and covered
    (trained, imported, or predicted over budget as the predictor judges now)."""

    size: int
    trained: int
    covered: int

    @property
    def complete(self) -> bool:
        return self.covered >= self.size


class History:
    """The study's trials seen by configuration (`search.core.trials.param_key`) and rung."""

    def __init__(self, study: optuna.Study):
        self.study = study
        # points imported by --warm-start: never trained again (search.engine.warm_start)
        self.imported = {param_key(t.params) for t in imported(study.get_trials(deepcopy=False))}
        self._trained: tuple[Any, set[tuple]] = (None, set())

    def trained_keys(self, rung: int | None, cached: bool = False) -> set[tuple]:
        """The configurations launched at `rung` (training, trained or failed there). `cached`: as last read
        for that rung, without reading the study (~11 ms with SQLite): the searcher reads it once per
        proposal, and its judge asks it for every candidate while nothing launches."""
        if cached and self._trained[0] is not None and self._trained[0][1] == rung:
            return self._trained[1]
        trials = self.study.get_trials(deepcopy=False)
        if self._trained[0] != (len(trials), rung):  # a launch adds a trial first: the count tells a change
            self._trained = ((len(trials), rung), {param_key(t.params) for t in trials
                                                   if t.user_attrs.get(attrs.LAUNCHED) and fidelity_of(t) == rung})
        return self._trained[1]

    def original(self, trial: optuna.Trial, rung: int | None) -> FrozenTrial | None:
        """The launched trial of this experiment with the same parameters at the same rung that finished
        its training (COMPLETE, or stopped early) or is training now; None if there is none."""
        key = param_key(trial.params)
        for t in self.study.get_trials(deepcopy=False):
            if (t.number != trial.number and t.user_attrs.get(attrs.LAUNCHED) and param_key(t.params) == key
                    and fidelity_of(t) == rung and t.user_attrs.get(attrs.DUPLICATE_OF) is None
                    and (t.state in (TrialState.COMPLETE, TrialState.RUNNING)
                         or (t.state == TrialState.PRUNED and t.user_attrs.get(attrs.REASON) == attrs.EARLY_STOPPED))):
                return t
        return None

    def coverage(self, distributions: Mapping[str, Any], rung: int | None) -> Coverage | None:
        """How much of a finite space was tried; None for a continuous or conditional space (knobs that
        come and go), which is never known to be exhausted."""
        size = space_size(distributions)
        trials = self.study.get_trials(deepcopy=False)
        if size is None or any(t.params and set(t.params) != set(distributions) for t in trials):
            return None
        judged = rejudged(self.study)  # a verdict not judged again since it was told stands
        trained = self.imported | self.trained_keys(rung)
        covered = set(trained)
        for t in trials:
            if t.user_attrs.get(attrs.REASON) == attrs.OVER_BUDGET_PREDICTED and judged.get(t.number, [0, 0, 1])[2] > 0:
                covered.add(param_key(t.params))
        return Coverage(size, len(trained), len(covered))
