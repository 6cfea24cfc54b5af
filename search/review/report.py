"""What `search.pareto` reports: the trials of one or more experiments classified against the budget,
their front, hypervolume and cost (`ParetoReport`), built by `search.review.analysis` and shown by
`search.review.render` and `search.review.plots`: data flows one way, into the renderers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.core.errors import OneLineError
from search.review.agreement import Agreement
from search.review.importance import Importance


class ParetoError(OneLineError):
    """Bad input; the message is one line naming the problem and the fix."""


@dataclass
class ResultsFolder:
    """One experiment folder as the review reads it: experiment.json and the rows of trials.csv."""

    name: str
    path: Path
    meta: dict[str, Any]
    rows: list[dict[str, str]]

    @property
    def defaults(self) -> dict[str, Any]:
        return dict(self.meta.get("defaults") or {})


@dataclass
class TrialPoint:
    """One trial of a (possibly merged) experiment, classified against the budget."""

    experiment: str
    number: int
    label: str
    state: str
    reason: str
    val_bpb: float | None
    val_loss: float | None
    bytes_total: int | None
    params: dict[str, str]
    changed: dict[str, str]
    predicted_bytes: int | None = None
    over_limits: list[str] = field(default_factory=list)  # time limits it broke (train_seconds, eval_seconds)
    status: str = ""  # front | dominated | infeasible | lower_rung | pruned | failed | running
    fidelity: int | None = None  # a fidelity ladder's rung; lower rungs are never on the front
    rank: int | None = None
    headroom: int | None = None
    hypervolume_after: float = 0.0
    hours: float | None = None    # the training's device hours (search.core.cost), None when not launched or unknown
    cumulative_hours: float = 0.0  # of every trial up to this one


@dataclass
class ParetoReport:
    """Everything the table, the machine-readable formats and the plots show."""

    experiments: list[str]
    budget_bytes: int
    reference: tuple[float, float]  # (val_bpb, bytes_total)
    trials: list[TrialPoint]
    front: list[TrialPoint]
    counts: dict[str, int]
    hypervolume: float
    notes: list[str] = field(default_factory=list)
    cost_unit: str = "GPU-h"  # CPU-h for experiments with no GPUs (--smoke)
    importance: dict[str, Importance] = field(default_factory=dict)  # per experiment, from its study (main)
    agreement: dict[str, list[Agreement]] = field(default_factory=dict)  # per experiment with a fidelity ladder

    @property
    def hours(self) -> float:
        return self.trials[-1].cumulative_hours if self.trials else 0.0


def parse_number(text: str | None) -> float | None:
    if text is None or str(text).strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return None if math.isnan(value) else value
