"""How far a fidelity ladder's cheap rungs can be trusted: Spearman's rho of val_bpb between rungs, over
the configurations trained at both (a cheap rung that ranks as the top one does is worth promoting from)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable


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
