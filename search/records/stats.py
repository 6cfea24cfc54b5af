"""Is a set of seeds a record? Both promotion rules' tests (the rules and their settings:
`search.records.config`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from search.records.config import ALPHA, LEADERBOARD_ALPHA, MIN_GAIN_NATS, PromoteError, SeedResult


@dataclass
class Significance:
    """The one-sided test of a gain of at least MIN_GAIN_NATS over the record."""

    n: int
    mean_val_loss: float
    mean_val_bpb: float
    std_val_loss: float | None
    std_val_bpb: float | None
    bpb_per_nat: float
    against_bpb: float | None
    against_loss: float | None
    target_loss: float | None  # H0: mean val_loss >= target_loss
    threshold_bpb: float  # MIN_GAIN_NATS expressed in bpb
    t_statistic: float | None
    p_value: float | None
    significant: bool
    reasons: list[str]


@dataclass(frozen=True)
class Welch:
    """The leaderboard's rule: one-sided Welch t-test, H1 new mean val_bpb < old mean val_bpb."""

    n_new: int
    n_old: int
    t_statistic: float
    p_value: float
    alpha: float

    @property
    def significant(self) -> bool:
        return self.p_value < self.alpha


@dataclass(frozen=True)
class Judgement:
    """Both rules on one set of seeds; `rule` is the one the record flag follows."""

    rule: str
    readme: Significance
    leaderboard: Welch | None
    against_seeds: dict[str, float]  # the previous record's per-seed val_bpb (leaderboard rule)
    against_source: str

    @property
    def reasons(self) -> list[str]:
        if self.rule == "readme":
            return list(self.readme.reasons)
        if self.leaderboard is None and self.against_seeds:
            return [f"only {self.readme.n} seed: a Welch test needs at least 2 (use --seeds 3)"]
        if self.leaderboard is None:
            return ["no --against-record or --against-seeds given: nothing to test the seeds against"]
        if not self.leaderboard.significant:
            return [f"not significant by the leaderboard's rule: p={self.leaderboard.p_value:.4g} (needs p < "
                    f"{self.leaderboard.alpha:g}) against the previous record's seeds"]
        return []

    @property
    def p_value(self) -> float | None:
        return self.readme.p_value if self.rule == "readme" else (self.leaderboard and self.leaderboard.p_value)


def welch(new: Sequence[float], old: Sequence[float], alpha: float = LEADERBOARD_ALPHA) -> Welch:
    """scipy.stats.ttest_ind(new, old, equal_var=False, alternative="less")."""
    from scipy import stats

    if len(new) < 2 or len(old) < 2:
        raise PromoteError(f"a Welch test needs at least 2 seeds on each side (got {len(new)} and {len(old)})")
    test = stats.ttest_ind(list(new), list(old), equal_var=False, alternative="less")
    return Welch(len(new), len(old), float(test.statistic), float(test.pvalue), alpha)


def judge(results: Sequence[SeedResult], rule: str, against_bpb: float | None,
          against_seeds: dict[str, float] | None = None, against_source: str = "",
          alpha: float = LEADERBOARD_ALPHA) -> Judgement:
    """Both rules on the seeds (reproductions included). The readme rule's reference is `against_bpb`,
    else the previous record's mean; the leaderboard rule needs the previous record's seeds."""
    import statistics

    seeds = dict(against_seeds or {})
    if against_bpb is None and seeds:
        against_bpb = statistics.fmean(seeds.values())
    readme_test = significance([r.val_loss for r in results], [r.val_bpb for r in results], against_bpb)
    board = welch([r.val_bpb for r in results], list(seeds.values()), alpha) if seeds and len(results) >= 2 else None
    return Judgement(rule, readme_test, board, seeds, against_source)




def significance(val_losses: Sequence[float], val_bpbs: Sequence[float], against_bpb: float | None,
                 min_gain_nats: float = MIN_GAIN_NATS, alpha: float = ALPHA) -> Significance:
    """One-sided one-sample t-test of mean val_loss < against_loss - min_gain_nats.

    `against_bpb` is a val_bpb; it becomes a loss with this run's own
    bits-per-byte per nat (mean val_bpb / mean val_loss), which is the same
    for every seed because the tokenizer and the validation bytes are.
    """
    import numpy as np
    from scipy import stats

    n = len(val_losses)
    losses, bpbs = np.asarray(val_losses, dtype=float), np.asarray(val_bpbs, dtype=float)
    mean_loss, mean_bpb = float(losses.mean()), float(bpbs.mean())
    ratio = mean_bpb / mean_loss
    std_loss = float(losses.std(ddof=1)) if n >= 2 else None
    std_bpb = float(bpbs.std(ddof=1)) if n >= 2 else None
    reasons: list[str] = []
    against_loss = target = t_stat = p = None
    if against_bpb is not None:
        against_loss = against_bpb / ratio
        target = against_loss - min_gain_nats
    if n < 2:
        reasons.append(f"only {n} seed: a significance test needs at least 2 (use --seeds 3)")
    if against_bpb is None:
        reasons.append("no --against given: nothing to test the gain against")
    if n >= 2 and target is not None:
        if std_loss == 0.0:
            t_stat = -math.inf if mean_loss < target else math.inf
            p = 0.0 if mean_loss < target else 1.0
        else:
            test = stats.ttest_1samp(losses, popmean=target, alternative="less")
            t_stat, p = float(test.statistic), float(test.pvalue)
        if not p < alpha:
            reasons.append(f"not significant: p={p:.4g} (needs p < {alpha}) for a gain of at least "
                           f"{min_gain_nats} nats over val_bpb {against_bpb}")
    return Significance(
        n=n, mean_val_loss=mean_loss, mean_val_bpb=mean_bpb, std_val_loss=std_loss, std_val_bpb=std_bpb,
        bpb_per_nat=ratio, against_bpb=against_bpb, against_loss=against_loss, target_loss=target,
        threshold_bpb=min_gain_nats * ratio, t_statistic=t_stat, p_value=p,
        significant=not reasons, reasons=reasons,
    )
