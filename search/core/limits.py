"""The competition's limits and whether a trial keeps them: the one owner of feasibility.

A space's limits are `{metric: largest feasible value}` (`bytes_total`, the byte budget, always;
`train_seconds`, `eval_seconds` when it sets LIMITS). Each limit is one Optuna constraint named by
`constraint_name` whose value is measured - limit (<= 0 feasible). A finished training is judged by
`judge` (the study tells Optuna its constraints), a trial of the study by `is_feasible`, a row of
`trials.csv` by `row_over`, and a warm start's imported point by `judge` again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

BUDGET_CONSTRAINT = "bytes_over_budget"
BUDGET_METRIC = "bytes_total"
DEFAULT_BUDGET_BYTES = 16_000_000
LIMIT_NAMES = (BUDGET_METRIC, "train_seconds", "eval_seconds")


def as_limits(limits: int | Mapping[str, float]) -> dict[str, float]:
    """A space's limits as {metric: limit}; a bare number is the byte budget."""
    return {BUDGET_METRIC: limits} if isinstance(limits, (int, float)) else dict(limits)


def constraint_name(metric: str) -> str:
    """The Optuna constraint of one limit: `bytes_over_budget`, `eval_seconds_over_limit`, ..."""
    return BUDGET_CONSTRAINT if metric == BUDGET_METRIC else f"{metric}_over_limit"


def limit_reason(metric: str) -> str:
    """The reason a trial over that limit is infeasible: `over_budget`, `over_eval_seconds`, ..."""
    return "over_budget" if metric == BUDGET_METRIC else f"over_{metric}"


def time_limits(limits: Mapping[str, float] | None) -> dict[str, float]:
    """The limits other than the byte budget (judged apart: a --budget override may replace it)."""
    return {k: float(v) for k, v in dict(limits or {}).items() if k != BUDGET_METRIC}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Verdict:
    """A finished training against the limits."""

    constraints: dict[str, float]   # constraint name -> measured - limit (0 for a figure not reported)
    broken: tuple[str, ...]         # the reasons of the limits it is over (`over_budget`, ...)
    unjudged: tuple[str, ...]       # limits on figures it did not report (no evaluation time in its log)

    @property
    def feasible(self) -> bool:
        return not self.broken


def judge(measured: Mapping[str, Any], limits: int | Mapping[str, float]) -> Verdict:
    """Judge a finished training's figures (`bytes_total`, `train_seconds`, ...) against every limit."""
    constraints, broken, unjudged = {}, [], []
    for metric, limit in as_limits(limits).items():
        value = measured.get(metric)
        if _finite(value):
            violation = float(value) - float(limit)
            if violation > 0:
                broken.append(limit_reason(metric))
        else:
            violation = 0.0
            unjudged.append(metric)
        constraints[constraint_name(metric)] = violation
    return Verdict(constraints, tuple(broken), tuple(unjudged))


def named_constraints(trial: Any) -> dict[str, float]:
    """A trial's constraints by name (Optuna also keeps an unnamed, numbered list)."""
    return {k: v for k, v in (getattr(trial, "constraints", None) or {}).items() if not k.isdigit()}


def is_feasible(trial: Any) -> bool:
    """A finished training of the study within every limit: COMPLETE with values, each constraint <= 0."""
    return trial.state.name == "COMPLETE" and bool(trial.values) and \
        all(v <= 0 for v in named_constraints(trial).values())


def row_over(row: Mapping[str, Any], limits: Mapping[str, float]) -> list[str]:
    """The limits a measured `trials.csv` row is over (`bytes_total`, `eval_seconds`, ...)."""
    over = []
    for metric, limit in limits.items():
        try:
            value = float(row.get(metric) or "nan")
        except ValueError:
            continue
        if math.isfinite(value) and value > limit:
            over.append(metric)
    return over
