"""Live progress of a search in the terminal, as a Ray Tune callback.

Ray's own table is switched off (verbose=0); instead one short line is printed
whenever the picture changes: trials done/running/pruned/failed, the best
feasible `val_bpb`, the size of the feasible Pareto front and the device hours
used and saved (`search.core.cost`), all read from the Optuna study (the source of
truth).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable, TextIO

import optuna
from optuna.trial import TrialState
from ray.tune import Callback

from search.core import attrs
from search.core.cost import Device, trials_cost
from search.core.front import non_dominated
from search.core.limits import is_feasible
from search.core.trials import is_result, own
from search.engine.ladder import finished_at


@dataclass(frozen=True)
class Snapshot:
    """Counts and bests of a study at one moment."""

    complete: int
    running: int
    pruned: int
    failed: int
    best_bpb: float | None
    best_number: int | None
    front_size: int
    last_failure: str = ""  # "trial N <reason>: <the script's own message>" of the latest failure
    cost: str = ""          # device hours used and saved (search.core.cost)
    rungs: str = ""         # with a fidelity ladder: trainings finished per rung, e.g. "9+3"

    def line(self, elapsed: float) -> str:
        best = (f"best feasible val_bpb {self.best_bpb:.4f} (trial {self.best_number})"
                if self.best_bpb is not None else "no feasible trial yet")
        failure = f" | last failure: {self.last_failure}" if self.last_failure else ""
        cost = f" | {self.cost}" if self.cost else ""
        rungs = f" (per rung {self.rungs})" if self.rungs else ""
        return (f"[{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d}] trials: {self.complete} done{rungs}, "
                f"{self.running} running, {self.pruned} pruned, {self.failed} failed | {best} | "
                f"Pareto front {self.front_size}{cost}{failure}")


def snapshot(study: optuna.Study, device: Device | None = None, price: float | None = None,
             top: int | None = None) -> Snapshot:
    """`top`: a fidelity ladder's top rung; only its trainings are results (best, front)."""
    trials = own(study.get_trials(deepcopy=False))  # --warm-start's imported trials are another experiment's
    count = {s: 0 for s in TrialState}
    for t in trials:
        count[t.state] += 1
    feasible = [t for t in trials if is_feasible(t) and is_result(t, top)]
    rungs = ""
    if top is not None:
        rungs = "+".join(str(len(finished_at(trials, rung))) for rung in range(top + 1))
    best = min(feasible, key=lambda t: t.values[0], default=None)
    front = non_dominated([(t.values[0], t.values[1]) for t in feasible])
    failed = [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get(attrs.MESSAGE)]
    last = failed[-1] if failed else None  # trials come in number order
    last_failure = (f"trial {last.number} {last.user_attrs.get(attrs.REASON, 'failed')}: "
                    f"{str(last.user_attrs[attrs.MESSAGE])[:160]}") if last else ""
    cost = trials_cost(trials, device, price).short() if device is not None else ""
    return Snapshot(count[TrialState.COMPLETE], count[TrialState.RUNNING], count[TrialState.PRUNED],
                    count[TrialState.FAIL], best.values[0] if best else None,
                    best.number if best else None, len(front), last_failure, cost, rungs)


class ProgressPrinter(Callback):
    """Prints a progress line when the study's counts change (at most every `every` s)."""

    def __init__(self, study: optuna.Study, out: TextIO = sys.stdout, every: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, device: Device | None = None,
                 price: float | None = None, top: int | None = None):
        self.study = study
        self.device, self.price = device, price
        self.top = top  # a fidelity ladder's top rung (search.engine.ladder)
        self.out = out
        self.every = every
        self.clock = clock
        self.start = clock()
        self._last_line = ""  # the last line printed, at elapsed 0: tells a change from a tick
        self._last_time = 0.0

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks with the experiment; streams do not pickle.
        state = dict(self.__dict__)
        state["out"] = None
        state["clock"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.out = self.out or sys.stdout
        self.clock = self.clock or time.monotonic

    def report(self, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_time < self.every:
            return
        self._last_time = now
        snap = snapshot(self.study, self.device, self.price, self.top)
        line = snap.line(0)
        if line != self._last_line:
            self._last_line = line
            print(snap.line(now - self.start), file=self.out, flush=True)

    def on_step_end(self, iteration, trials, **info) -> None:
        self.report()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.report(force=True)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.report(force=True)
