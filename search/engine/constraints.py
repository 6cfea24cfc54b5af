"""A trial's constraints as Optuna stores them, and as optuna-dashboard reads them.

Optuna 5's `Trial.set_constraint` writes `constraints:<name>` system attributes; optuna-dashboard 0.21
reads only the older `constraints` list. Every constraint the search writes goes through here, so both
forms always agree (for a trial being told, and for one made whole: a warm start's imported point, a
sampler's view of a re-judged proposal)."""

from __future__ import annotations

from typing import Any, Mapping

import optuna

from search.core.limits import BUDGET_CONSTRAINT, named_constraints

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
    named = named_constraints(trial)
    trial.storage.set_trial_system_attr(trial._trial_id, LIST_CONSTRAINTS, _listed(named))


def set_violation(trial: optuna.Trial, violation: float) -> None:
    if BUDGET_CONSTRAINT not in trial.constraints:
        set_constraint(trial, BUDGET_CONSTRAINT, float(violation))
