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
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.front import non_dominated
from search.study import RUN_AGAIN, StudyView, ViewSampler
from search.warm_start import param_key

FIDELITY_ATTR = "fidelity"
PROMOTED_FROM_ATTR = "promoted_from"
RUNG_GPUS = "GPUS_PER_TRIAL"  # the one key of a rung that is not an environment variable
DEFAULT_PROMOTE_FRACTION = 1 / 3
MIN_MODEL_TRIALS = 10         # finished trainings a rung needs before the sampler learns from it


@dataclass(frozen=True)
class Ladder:
    """The rungs of a space (environment overlays, cheapest first) and the fraction promoted."""

    rungs: tuple[dict[str, str], ...]
    gpus: tuple[int | None, ...]     # per rung GPUS_PER_TRIAL, None: the space's
    fraction: float = DEFAULT_PROMOTE_FRACTION
    direct: float = 0.0              # TOP_RUNG_FRACTION: share of new proposals trained at the top rung at once

    def starts_at_top(self, proposals_before: int) -> bool:
        """Whether the next new proposal skips the cheap rungs: every 1/direct-th one, deterministically
        (Hyperband's bracket that starts at full budget, for configurations the cheap rungs misrank)."""
        return math.floor((proposals_before + 1) * self.direct + 1e-9) > math.floor(proposals_before * self.direct + 1e-9)

    @property
    def top(self) -> int:
        return len(self.rungs) - 1

    def describe(self) -> str:
        steps = [r.get("ITERATIONS") for r in self.rungs]
        shown = " -> ".join(s if s else f"rung {i}" for i, s in enumerate(steps))
        direct = f", {self.direct:.0%} of new proposals straight to the top" if self.direct else ""
        return (f"{len(self.rungs)} rungs ({shown}{' steps' if all(steps) else ''}), best {self.fraction:.0%} "
                f"promoted{direct}")


def _line(path: Path, problem: str, fix: str) -> str:
    return f"error: {path}: {problem} ({fix})"


def load_ladder(path: Path, module: ModuleType, smoke: bool) -> Ladder | None:
    """FIDELITIES (SMOKE_FIDELITIES under --smoke) and PROMOTE_FRACTION; None without a ladder.

    A smoke run never uses FIDELITIES itself: its full-scale rungs would override the smoke
    environment's tiny step counts."""
    from search.space import SpaceError, _stringify

    name = "SMOKE_FIDELITIES" if smoke else "FIDELITIES"
    value = getattr(module, name, None)
    fraction = getattr(module, "PROMOTE_FRACTION", DEFAULT_PROMOTE_FRACTION)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise SpaceError(_line(path, f"PROMOTE_FRACTION={fraction!r} is not a fraction between 0 and 1",
                               "e.g. PROMOTE_FRACTION = 1/3: the best third of each rung moves up"))
    direct = getattr(module, "TOP_RUNG_FRACTION", 0.0)
    if isinstance(direct, bool) or not isinstance(direct, (int, float)) or not 0 <= direct < 1:
        raise SpaceError(_line(path, f"TOP_RUNG_FRACTION={direct!r} is not a fraction in [0, 1)",
                               "e.g. TOP_RUNG_FRACTION = 0.25: every fourth new proposal trains at the top rung"))
    if value is None:
        return None
    example = '[{"ITERATIONS": 600}, {"ITERATIONS": 4950}]'
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence) or len(value) < 2 \
            or not all(isinstance(r, Mapping) for r in value):
        raise SpaceError(_line(path, f"{name} must be a list of at least two environments, cheapest first",
                               f"e.g. {name} = {example}"))
    rungs, gpus = [], []
    for i, rung in enumerate(value):
        rung = dict(rung)
        n = rung.pop(RUNG_GPUS, None)
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
            raise SpaceError(_line(path, f"{name}[{i}]['{RUNG_GPUS}']={n!r} is not a GPU count", "give e.g. 2"))
        rungs.append(_stringify(rung, path))
        gpus.append(n)
    if any(rungs[i] == rungs[i + 1] and gpus[i] == gpus[i + 1] for i in range(len(rungs) - 1)):
        raise SpaceError(_line(path, f"{name} has two equal rungs in a row", "make each rung longer than the last"))
    return Ladder(rungs=tuple(rungs), gpus=tuple(gpus), fraction=float(fraction), direct=float(direct))


# ----------------------------------------------------------------------------- a trial's rung

def fidelity_of(trial: FrozenTrial | optuna.Trial) -> int | None:
    """The rung a trial ran at (None: a search without a ladder)."""
    value = trial.user_attrs.get(FIDELITY_ATTR)
    return None if value is None else int(value)


def is_result(trial: FrozenTrial, top: int | None) -> bool:
    """Whether a trial counts as a result of its experiment: every trial without a ladder, the top
    rung's with one."""
    rung = fidelity_of(trial)
    return top is None or rung is None or rung == top


def feasible(trial: FrozenTrial) -> bool:
    """A complete trial within every limit (each constraint <= 0)."""
    return trial.state == TrialState.COMPLETE and bool(trial.values) and \
        all(v <= 0 for v in (trial.constraints or {}).values())


def lower_rung(folder: Path, number: int, top: int | None) -> str | None:
    """Why trial `number` of an experiment is no result (it trained at a lower rung, with that rung's
    cheaper environment), naming its top-rung training when there is one; None when it is a result."""
    from search.results import read_trials_csv, row_params

    if top is None or not (folder / "trials.csv").is_file():
        return None
    rows = {r["number"]: r for r in read_trials_csv(folder)}
    row = rows.get(str(number)) or {}
    rung = str(row.get("fidelity") or "")
    if not rung or int(rung) == top:
        return None
    same = [n for n, r in rows.items() if r.get("fidelity") == str(top) and r.get("state") == "COMPLETE"
            and row_params(r) == row_params(row)]
    hint = f"trial {same[0]} is its top-rung training" if same else "it was not promoted to the top rung"
    return f"trial {number} of {folder} trained at rung {rung} of the fidelity ladder, not the top rung {top} ({hint})"


# ----------------------------------------------------------------------------- promotion

def crowding(points: Sequence[tuple[float, float]]) -> list[float]:
    """NSGA-II crowding distance of points on one front (ends infinite)."""
    n = len(points)
    distance = [0.0] * n
    if n <= 2:
        return [math.inf] * n
    for axis in range(2):
        order = sorted(range(n), key=lambda i: points[i][axis])
        lo, hi = points[order[0]][axis], points[order[-1]][axis]
        distance[order[0]] = distance[order[-1]] = math.inf
        if hi == lo:
            continue
        for j in range(1, n - 1):
            distance[order[j]] += (points[order[j + 1]][axis] - points[order[j - 1]][axis]) / (hi - lo)
    return distance


def pareto_order(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of `points` best first: by non-domination rank, then larger crowding distance, then index."""
    left = list(range(len(points)))
    ordered: list[int] = []
    while left:
        front = [left[k] for k in non_dominated([points[i] for i in left])]
        if not front:  # only points with a NaN coordinate are left: last, in input order
            return ordered + left
        spread = crowding([points[i] for i in front])
        ordered += [front[k] for k in sorted(range(len(front)), key=lambda k: (-spread[k], front[k]))]
        taken = set(front)
        left = [i for i in left if i not in taken]
    return ordered


def finished_at(trials: Iterable[FrozenTrial], rung: int) -> list[FrozenTrial]:
    """Trainings finished at a rung (COMPLETE or FAIL; not those interrupted, which run again)."""
    return [t for t in trials if fidelity_of(t) == rung and t.user_attrs.get("launched")
            and t.state in (TrialState.COMPLETE, TrialState.FAIL) and t.user_attrs.get("reason") not in RUN_AGAIN]


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
        eligible = [t for t in done if feasible(t)]
        order = pareto_order([(t.values[0], t.values[1]) for t in eligible])
        for i in order[:allowed]:
            if (rung + 1, param_key(eligible[i].params)) not in promoted:
                return eligible[i], rung + 1
    return None


# ----------------------------------------------------------------------------- the sampler

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


# ----------------------------------------------------------------------------- rank agreement

@dataclass(frozen=True)
class Agreement:
    """Spearman's rho of val_bpb between two rungs over the configurations measured at both."""

    low: int
    high: int
    n: int
    rho: float | None   # None: fewer than 3 configurations, or no spread

    def line(self) -> str:
        if self.rho is None:
            return f"rung {self.low} vs rung {self.high}: {self.n} configuration(s) at both, too few to rank"
        trust = ("the cheap rung ranks these configurations much as the expensive one does" if self.rho >= 0.8
                 else "the cheap rung's order is a rough guide only" if self.rho >= 0.5
                 else "the cheap rung's order is not to be trusted for this space")
        return f"rung {self.low} vs rung {self.high}: Spearman {self.rho:+.2f} over {self.n} configurations ({trust})"


def rank_agreement(measured: Iterable[tuple[int, tuple, float]], top: int) -> list[Agreement]:
    """Agreement of every rung with the next one and with the top: `measured` holds
    (rung, configuration key, val_bpb) of complete trainings (a repeated one: its mean)."""
    from scipy.stats import spearmanr

    by_rung: dict[int, dict[tuple, list[float]]] = {}
    for rung, key, value in measured:
        if math.isfinite(value):
            by_rung.setdefault(rung, {}).setdefault(key, []).append(value)
    pairs = sorted({(k, k + 1) for k in range(top)} | {(k, top) for k in range(top)})
    out = []
    for low, high in pairs:
        a, b = by_rung.get(low, {}), by_rung.get(high, {})
        both = sorted(set(a) & set(b))
        xs = [sum(a[k]) / len(a[k]) for k in both]
        ys = [sum(b[k]) / len(b[k]) for k in both]
        rho = None
        if len(both) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1:
            rho = float(spearmanr(xs, ys).statistic)
        out.append(Agreement(low, high, len(both), rho))
    return out
