"""A Gaussian process and the expected hypervolume improvement it gives, for the known-budget sampler.

A zero-mean GP on standardized targets (Matern 5/2, one length scale per coordinate, hyperparameters by
maximum a posteriori), and the expected improvement of a two-objective front's hypervolume when one
objective is random (the GP's val_bpb) and the other known (the byte predictor's bytes): exact in
closed form, no Monte Carlo.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize
from scipy.special import ndtr


def _matern52(a: np.ndarray, b: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    d = np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) / lengths) ** 2, 0).sum(-1))
    s5 = math.sqrt(5) * d
    return (1 + s5 + s5 ** 2 / 3) * np.exp(-s5)


class GP:
    """A zero-mean GP on standardized targets: Matern 5/2 with one length scale per coordinate, signal and
    noise variances; hyperparameters by maximum a posteriori (log-normal priors), a few L-BFGS starts."""

    PRIOR_LOG_LENGTH = (math.log(0.5), 1.0)
    NOISE_BOUNDS = (1e-6, 1.0)

    def __init__(self, x: np.ndarray, y: np.ndarray, start: np.ndarray | None = None):
        self.mean, self.scale = float(np.mean(y)), float(np.std(y)) or 1.0
        self.x, self.z = x, (y - self.mean) / self.scale
        d = x.shape[1]
        starts = [np.r_[np.full(d, self.PRIOR_LOG_LENGTH[0]), 0.0, math.log(1e-3)]]
        if start is not None and start.shape == starts[0].shape:
            starts.append(start)
        bounds = [(math.log(0.02), math.log(20.0))] * d + [(math.log(0.05), math.log(20.0)),
                                                           tuple(math.log(b) for b in self.NOISE_BOUNDS)]
        best = min((minimize(self._neg_log_posterior, s, method="L-BFGS-B", bounds=bounds) for s in starts),
                   key=lambda r: r.fun)
        self.theta = best.x
        self._condition(self.x, self.z)

    def _parts(self, theta: np.ndarray) -> tuple[np.ndarray, float, float]:
        return np.exp(theta[:-2]), float(np.exp(theta[-2])), float(np.exp(theta[-1]))

    def _neg_log_posterior(self, theta: np.ndarray) -> float:
        lengths, signal, noise = self._parts(theta)
        k = signal * _matern52(self.x, self.x, lengths) + (noise + 1e-9) * np.eye(len(self.x))
        try:
            chol = np.linalg.cholesky(k)
        except np.linalg.LinAlgError:
            return 1e10
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, self.z))
        nll = 0.5 * self.z @ alpha + np.log(np.diag(chol)).sum()
        mu, sd = self.PRIOR_LOG_LENGTH
        prior = 0.5 * (((theta[:-2] - mu) / sd) ** 2).sum() + 0.5 * theta[-2] ** 2 + 0.5 * ((theta[-1] + 7) / 3) ** 2
        return float(nll + prior)

    def _condition(self, x: np.ndarray, z: np.ndarray) -> None:
        lengths, signal, noise = self._parts(self.theta)
        k = signal * _matern52(x, x, lengths) + (noise + 1e-9) * np.eye(len(x))
        self._chol = np.linalg.cholesky(k)
        self._alpha = np.linalg.solve(self._chol.T, np.linalg.solve(self._chol, z))
        self._x = x

    def believe(self, x_pending: np.ndarray) -> None:
        """Add pending points at their posterior mean (same hyperparameters): their uncertainty collapses."""
        if len(x_pending):
            mu, _ = self._predict_z(x_pending)
            self._condition(np.vstack([self._x, x_pending]), np.r_[self._alpha_targets(), mu])

    def _alpha_targets(self) -> np.ndarray:
        lengths, signal, noise = self._parts(self.theta)
        k = signal * _matern52(self._x, self._x, lengths) + (noise + 1e-9) * np.eye(len(self._x))
        return k @ self._alpha

    def _predict_z(self, xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lengths, signal, _ = self._parts(self.theta)
        ks = signal * _matern52(xc, self._x, lengths)
        mu = ks @ self._alpha
        v = np.linalg.solve(self._chol, ks.T)
        var = np.maximum(signal - (v ** 2).sum(0), 1e-12)
        return mu, np.sqrt(var)

    def predict(self, xc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu, sd = self._predict_z(xc)
        return self.mean + self.scale * mu, self.scale * sd


def _psi(z: np.ndarray) -> np.ndarray:
    """The integral of the normal CDF: psi'(z) = Phi(z), psi(-inf) = 0."""
    return z * ndtr(z) + np.exp(-0.5 * z ** 2) / math.sqrt(2 * math.pi)


def expected_hv_improvement(mu: np.ndarray, sd: np.ndarray, known: np.ndarray, front: np.ndarray,
                            ref: tuple[float, float]) -> np.ndarray:
    """E[hypervolume improvement] of candidates whose first objective is ~ N(mu, sd^2) and whose second is
    known (`known`), over a two-objective (minimised) front and reference point. Adding (y, b) adds
    the integral over v from y to ref[0] of max(0, g(v) - b), g(v) the least second objective among front
    points with a first objective <= v (ref[1] below all); its expectation is the sum over the steps of g
    of height x the integral of P(Y <= v) over the step, which is sd x (psi(z_high) - psi(z_low))."""
    pts = front[(front[:, 0] < ref[0]) & (front[:, 1] < ref[1])] if len(front) else front
    pts = pts[np.argsort(pts[:, 0])] if len(pts) else pts
    edges = np.r_[-np.inf, pts[:, 0] if len(pts) else [], ref[0]]
    levels = np.r_[ref[1], np.minimum.accumulate(pts[:, 1]) if len(pts) else []]
    sd = np.maximum(sd, 1e-12)
    total = np.zeros_like(mu)
    for low, high, level in zip(edges[:-1], edges[1:], levels):
        height = np.maximum(level - known, 0.0)
        upper = _psi((high - mu) / sd)
        lower = 0.0 if low == -np.inf else _psi((low - mu) / sd)
        total += height * sd * np.maximum(upper - lower, 0.0)
    return total
