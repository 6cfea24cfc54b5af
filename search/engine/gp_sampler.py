"""A Bayesian optimiser that knows the byte budget before it proposes (a space's `SAMPLER = "gp"`).

Ax/BoTorch and Optuna's `GPSampler` learn the budget only from trainings they paid for. This sampler
asks the search's byte predictor (`judge`, installed by `search.engine.searcher`) about every candidate
first, and maximises its acquisition only over the candidates it accepts:

- candidates: every configuration of a small finite space, else a scrambled Sobol set over the space,
  fixed per sampler (the predictor's cache then serves later proposals), plus the neighbours of the
  current front (one knob moved one step); configurations trained, training or failed are left out, so
  a proposal is never a repeat (one pruned before launch is the judge's to accept once it has learned);
- the start: until `n_startup` trainings have finished, the accepted candidate farthest from every
  point tried (a maximin, space-filling design inside the predicted-feasible region);
- then: a Gaussian process (Matern 5/2, one length scale per knob, hyperparameters by maximum a
  posteriori) models val_bpb, a candidate's bytes are the predictor's, and the acquisition is the
  expected hypervolume improvement of the (val_bpb, bytes) front, exact in closed form because one
  objective is known; times the probability that each measured limit holds (bytes after training: a
  GP on log measured / predicted; train and eval seconds: GPs on their logs);
- trials still running join the data at their posterior mean (kriging believer), so proposals made
  while others train spread out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import FrozenTrial, TrialState
from scipy.special import ndtr
from scipy.stats import qmc

from search.core import attrs
from search.core.front import non_dominated
from search.core.limits import is_feasible
from search.engine.gp import GP, expected_hv_improvement
from search.space.points import all_configurations, space_size

Judge = Callable[[Mapping[str, Any]], "tuple[bool, float | None]"]  # params -> (accepted, predicted bytes)
N_CANDIDATES = 256
ENUMERATE_UP_TO = 2048  # a finite space this small is scored whole instead of through Sobol candidates
N_STARTUP = 3


def _numeric(choices: Sequence[Any]) -> bool:
    return all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)


@dataclass(frozen=True)
class Encoder:
    """Parameters <-> points of the unit cube: a numeric knob (a range, or numeric choices in value order)
    is one coordinate, other choices are one-hot."""

    dists: dict[str, BaseDistribution]

    def _order(self, dist: CategoricalDistribution) -> list[Any]:
        return sorted(dist.choices) if _numeric(dist.choices) else list(dist.choices)

    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        out: list[float] = []
        for name, dist in self.dists.items():
            value = params[name]
            if isinstance(dist, CategoricalDistribution):
                order = self._order(dist)
                if _numeric(dist.choices):
                    out.append(order.index(value) / max(1, len(order) - 1))
                else:
                    out += [float(value == c) for c in order]
            else:
                low, high, v = float(dist.low), float(dist.high), float(value)
                if dist.log:
                    low, high, v = math.log(low), math.log(high), math.log(v)
                out.append(0.0 if high == low else (v - low) / (high - low))
        return np.array(out)

    def decode(self, u: Sequence[float]) -> dict[str, Any]:
        """One point of the cube (a coordinate per knob) as parameters."""
        params: dict[str, Any] = {}
        for x, (name, dist) in zip(u, self.dists.items()):
            if isinstance(dist, CategoricalDistribution):
                order = self._order(dist)
                params[name] = order[min(int(x * len(order)), len(order) - 1)]
                continue
            low, high = float(dist.low), float(dist.high)
            v = math.exp(math.log(low) + x * (math.log(high) - math.log(low))) if dist.log else low + x * (high - low)
            params[name] = self._snap(dist, v)
        return params

    @staticmethod
    def _snap(dist: BaseDistribution, v: float) -> Any:
        step = getattr(dist, "step", None)
        if step:
            v = dist.low + round((v - dist.low) / step) * step
        v = min(max(v, dist.low), dist.high)
        return int(round(v)) if isinstance(dist, IntDistribution) else float(v)

    def neighbours(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The configurations one knob away: the next choice either side (any other, if unordered), or a
        step (a tenth of the range) either side."""
        out = []
        for name, dist in self.dists.items():
            value = params[name]
            if isinstance(dist, CategoricalDistribution):
                order = self._order(dist)
                i = order.index(value)
                others = [order[j] for j in (i - 1, i + 1) if 0 <= j < len(order)] if _numeric(order) else \
                    [c for c in order if c != value]
            else:
                low, high = float(dist.low), float(dist.high)
                delta = max((high - low) / 10, float(getattr(dist, "step", None) or 0), 1.0
                            if isinstance(dist, IntDistribution) else 0.0)
                others = [self._snap(dist, float(value) + s * delta) for s in (-1, 1)]
                others = [o for o in others if o != value]
            out += [{**params, name: o} for o in others]
        return out


def _key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


# ----------------------------------------------------------------------------- the Gaussian process

# ----------------------------------------------------------------------------- the sampler

class KnownBudgetGPSampler(optuna.samplers.BaseSampler):
    """The search's `SAMPLER = "gp"` (see the module docstring). Without a `judge` (no predictor installed)
    every candidate is accepted and its bytes are modelled like val_bpb."""

    def __init__(self, seed: int | None = None, n_startup: int = N_STARTUP, n_candidates: int = N_CANDIDATES,
                 limits: Mapping[str, float] | None = None):
        self.seed = seed
        self.n_startup = n_startup
        self.n_candidates = n_candidates
        self.limits = dict(limits or {})  # metric -> largest feasible value (search.core.limits.as_limits)
        self.judge: Judge | None = None
        self.distributions: dict[str, BaseDistribution] = {}  # the space, probed before any trial exists
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._pool: dict[tuple, np.ndarray] = {}
        self._theta: dict[str, np.ndarray] = {}  # last hyperparameters per model: the next fit starts there

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial) -> dict[str, BaseDistribution]:
        space = IntersectionSearchSpace(include_pruned=True).calculate(study)
        space = {k: v for k, v in space.items() if not v.single()}
        if not space and self.distributions:
            space = {k: v for k, v in self.distributions.items() if not v.single()}
        return dict(sorted(space.items()))

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def _candidates(self, encoder: Encoder, anchors: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
        size = space_size(encoder.dists)
        if size is not None and size <= ENUMERATE_UP_TO:  # a small finite space: every configuration
            return all_configurations(encoder.dists)
        key = _key({k: repr(v) for k, v in encoder.dists.items()})
        if key not in self._pool:
            sobol = qmc.Sobol(len(encoder.dists), scramble=True, seed=self.seed)
            self._pool = {key: sobol.random(self.n_candidates)}
        out = [encoder.decode(u) for u in self._pool[key]]
        for params in anchors:
            out += encoder.neighbours(params)
        return out

    def sample_relative(self, study, trial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        encoder = Encoder(search_space)
        trials = [t for t in study.get_trials(deepcopy=False) if t.number != trial.number
                  and all(k in t.params and search_space[k]._contains(search_space[k].to_internal_repr(t.params[k]))
                          for k in search_space)]
        trials = [t for t in trials if attrs.DUPLICATE_OF not in t.user_attrs]  # a repeat adds nothing to learn from
        done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
        pending = [t for t in trials if t.state == TrialState.RUNNING]
        front = [t for t in done if is_feasible(t)]
        # not proposed again: what was trained, is training or failed; a proposal pruned before launch is
        # the judge's to refuse or, once the predictor has learned better, to accept
        seen = {_key({k: t.params[k] for k in search_space}) for t in trials
                if t.user_attrs.get(attrs.REASON) != attrs.OVER_BUDGET_PREDICTED}
        anchors = [{k: front[i].params[k] for k in search_space}
                   for i in non_dominated([(t.values[0], t.values[1]) for t in front])]
        candidates: list[dict[str, Any]] = []
        keys = set()
        for params in self._candidates(encoder, anchors):
            k = _key(params)
            if k not in seen and k not in keys:
                keys.add(k)
                candidates.append(params)
        if not candidates:
            return {}
        tried = np.array([encoder.encode({k: t.params[k] for k in search_space}) for t in trials]) \
            if trials else np.zeros((0, len(encoder.encode(candidates[0]))))
        if len(done) < self.n_startup or len(done) < 2:
            # the accepted candidate farthest from every point tried: judged farthest first, so the first
            # accepted is the answer (a search's first proposals need not judge the whole space)
            xall = np.array([encoder.encode(p) for p in candidates])
            for i in np.argsort(-self._min_distance(xall, tried), kind="stable"):
                if self._judge(trial, candidates[i])[0]:
                    return candidates[i]
            return {}  # every candidate is over budget: independent draws, the searcher prunes them
        accepted = [(p, judged[1]) for p in candidates if (judged := self._judge(trial, p))[0]]
        if not accepted:
            return {}  # every candidate is over budget or tried: independent draws, the searcher prunes them
        xc = np.array([encoder.encode(p) for p, _ in accepted])
        score = self._acquisition(encoder, done, pending, front, accepted, xc)
        return accepted[int(np.argmax(score))][0]

    def _judge(self, trial, params: Mapping[str, Any]) -> tuple[bool, float | None]:
        if self.judge is None:
            return True, None
        return self.judge(params)

    @staticmethod
    def _min_distance(xc: np.ndarray, tried: np.ndarray) -> np.ndarray:
        """Each candidate's distance to the nearest point tried (all equal when none was)."""
        if not len(tried):
            return np.zeros(len(xc))
        return np.sqrt(((xc[:, None, :] - tried[None, :, :]) ** 2).sum(-1)).min(1)

    def _fit(self, name: str, x: np.ndarray, y: np.ndarray) -> GP:
        gp = GP(x, y, self._theta.get(name))
        self._theta[name] = gp.theta
        return gp

    def _acquisition(self, encoder: Encoder, done: list[FrozenTrial], pending: list[FrozenTrial],
                     front: list[FrozenTrial], accepted: list[tuple[dict[str, Any], float | None]],
                     xc: np.ndarray) -> np.ndarray:
        names = list(encoder.dists)
        x = np.array([encoder.encode({k: t.params[k] for k in names}) for t in done])
        values = np.array([t.values[0] for t in done])
        gp = self._fit("val_bpb", x, values)
        xp = np.array([encoder.encode({k: t.params[k] for k in names}) for t in pending]) \
            if pending else np.zeros((0, x.shape[1]))
        believed = gp.predict(xp)[0] if len(xp) else np.zeros(0)
        gp.believe(xp)
        mu, sd = gp.predict(xc)
        budget = float(self.limits.get("bytes_total", math.inf))
        measured = np.array([t.values[1] for t in done])
        predicted = np.array([p if p is not None else np.nan for _, p in accepted])
        if np.isnan(predicted).any():  # no prediction (an external script before its fit): model the bytes too
            bytes_gp = self._fit("bytes_total", x, np.log(measured))
            predicted = np.where(np.isnan(predicted), np.exp(bytes_gp.predict(xc)[0]), predicted)
        points = [(t.values[0], t.values[1]) for t in front]
        for t, v in zip(pending, believed):
            ok, b = self._judge(None, {k: t.params[k] for k in names})
            if ok and b is not None:
                points.append((float(v), float(b)))
        ref_v = float(values.max() + 0.1 * (values.max() - values.min() + 1e-9))
        ref_b = budget if math.isfinite(budget) else float(max(measured.max(), predicted.max()) * 1.1)
        score = expected_hv_improvement(mu, sd, predicted, np.array(points).reshape(-1, 2), (ref_v, ref_b))
        score = score * self._limit_probability(x, done, xc, predicted, budget)
        if not score.any():  # nothing improves in expectation: the most uncertain accepted candidate
            return sd
        return score

    def _limit_probability(self, x: np.ndarray, done: list[FrozenTrial], xc: np.ndarray,
                           predicted: np.ndarray, budget: float) -> np.ndarray:
        """P(every measured limit holds) per candidate, from GPs of what finished trainings measured."""
        prob = np.ones(len(xc))
        if math.isfinite(budget):
            pairs = [(i, self._judge(None, t.params)[1]) for i, t in enumerate(done)]
            rows = [(i, p) for i, p in pairs if p]
            if len(rows) >= 3:
                idx = [i for i, _ in rows]
                resid = np.log(np.array([done[i].values[1] for i in idx]) / np.array([p for _, p in rows]))
                mu, sd = self._fit("bytes_residual", x[idx], resid).predict(xc)
                prob *= ndtr((np.log(budget / predicted) - mu) / np.maximum(sd, 1e-9))
        for metric, limit in self.limits.items():
            if metric == "bytes_total":
                continue
            idx = [i for i, t in enumerate(done) if isinstance(t.user_attrs.get(metric), (int, float))
                   and t.user_attrs[metric] > 0]
            if len(idx) >= 3:
                y = np.log([float(done[i].user_attrs[metric]) for i in idx])
                mu, sd = self._fit(metric, x[idx], y).predict(xc)
                prob *= ndtr((math.log(limit) - mu) / np.maximum(sd, 1e-9))
        return prob
