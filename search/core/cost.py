"""What a search costs, in the hours competitors budget by: GPU-hours used, and saved by pruning.

Used: each launched training's device time. On GPUs that is the runner's
`gpu_seconds` (wall time × GPUs visible); a run with no GPUs (`--smoke`) is
counted in CPU-hours (wall time × the trial's CPUs) and labelled so. Saved: the
proposals pruned before launch (predicted over budget), each costed at the
median device time of the completed trainings. `--gpu-hour-price` turns hours
into money (8×H100 went for about $21–24 an hour, i.e. ~$3 per GPU-hour).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from search.core import attrs


@dataclass(frozen=True)
class Device:
    """What a trial holds: its GPUs, else its CPUs (the unit the hours are counted in)."""

    gpus: int
    cpus: int = 1

    @property
    def unit(self) -> str:
        return "GPU-h" if self.gpus > 0 else "CPU-h"

    @property
    def label(self) -> str:
        return "GPU-hours" if self.gpus > 0 else "CPU-hours (no GPUs: a --smoke or CPU run)"

    def hours(self, metrics: Mapping[str, Any]) -> float | None:
        """One training's device hours from its metrics (trial user attributes or metrics.json)."""
        if self.gpus > 0:
            seconds = metrics.get("gpu_seconds")
        else:
            wall = metrics.get("wall_seconds")
            if not isinstance(wall, (int, float)):  # an experiment from before wall_seconds was kept
                wall = metrics.get("train_seconds")
            seconds = wall * self.cpus if isinstance(wall, (int, float)) else None
        return float(seconds) / 3600 if isinstance(seconds, (int, float)) and seconds >= 0 else None


def hours_text(hours: float) -> str:
    """Hours to read at a glance: 1,234 / 12.3 / 0.12 / 0.00853 (a smoke training is seconds)."""
    if hours >= 100:
        return f"{hours:,.0f}"
    if hours >= 0.1:
        return f"{hours:.2f}"
    return f"{hours:.3g}"


@dataclass(frozen=True)
class Cost:
    """Device hours a search used and saved."""

    device: Device
    used_hours: float
    trainings: int                # trainings whose time is known
    median_hours: float | None    # of completed trainings
    pruned_before_launch: int
    price: float | None = None    # per device-hour
    by_rung: dict[int, float] | None = None  # a fidelity ladder's hours used per rung

    @property
    def saved_hours(self) -> float:
        return self.pruned_before_launch * (self.median_hours or 0.0)

    def _money(self, hours: float) -> str:
        if self.price is None:
            return ""
        money = hours * self.price
        return f" (${money:,.2f})" if money >= 1 else f" (${money:.3g})"

    def short(self) -> str:
        """For the progress line."""
        u = self.device.unit
        return (f"{hours_text(self.used_hours)} {u} used{self._money(self.used_hours)}, "
                f"{hours_text(self.saved_hours)} {u} saved{self._money(self.saved_hours)}")

    def line(self) -> str:
        """For the summary."""
        each = f", median {hours_text(self.median_hours)} h each" if self.median_hours is not None else ""
        price = f" at ${self.price:g} per {self.device.unit[:-2]}-hour" if self.price is not None else ""
        rungs = ""
        if self.by_rung:
            rungs = " (per rung: " + ", ".join(f"{k}: {hours_text(h)}" for k, h in sorted(self.by_rung.items())) + ")"
        return (f"cost: {hours_text(self.used_hours)} {self.device.label} used{self._money(self.used_hours)} by "
                f"{self.trainings} training(s){each}{rungs}; {hours_text(self.saved_hours)} saved"
                f"{self._money(self.saved_hours)} by pruning {self.pruned_before_launch} proposal(s) before "
                f"launch{price}")


def trials_cost(trials: Iterable[Any], device: Device, price: float | None = None, by_rung: bool = False) -> Cost:
    """The cost of an Optuna study's trials (FrozenTrial-like: `state.name`, `user_attrs`); `by_rung`: also
    the hours of each rung of a fidelity ladder (its `fidelity` attribute)."""
    used, completed, pruned, known = 0.0, [], 0, 0
    rungs: dict[int, float] = {}
    for t in trials:
        found = t.user_attrs
        if t.state.name == "PRUNED" and found.get(attrs.REASON) == attrs.OVER_BUDGET_PREDICTED:
            pruned += 1
            continue
        hours = device.hours(found)
        if hours is None:
            continue
        used += hours
        known += 1
        rung = found.get(attrs.FIDELITY)
        if by_rung and rung is not None:
            rungs[int(rung)] = rungs.get(int(rung), 0.0) + hours
        if t.state.name == "COMPLETE":
            completed.append(hours)
    return Cost(device, used, known, statistics.median(completed) if completed else None, pruned, price,
                rungs if by_rung else None)
