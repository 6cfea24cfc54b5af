"""Is a record folder a record against the one before it? Both promotion rules, without training.

    python -m search.significance NEW_RECORD_DIR --against-record OLD_RECORD_DIR [--alpha 0.25]
    python -m search.significance NEW_RECORD_DIR --against-seeds 1.0808,1.0810,1.0812

Why two rules: the competition README asks for a gain of at least 0.005 nats at p < 0.01 (a
one-sided one-sample t-test against the old record's mean), but the leaderboard as maintained
accepted a record when a one-sided Welch t-test of its seeds' `val_bpb` against the previous record's
seeds gave p < 0.25 (openai/parameter-golf PR #1902; fewer than 15 % of merged records met the
0.005-nat bar). Both are printed, each with its p-value (`leaderboard p=P`, `readme p=P`).

Each folder's per-seed scores: the per-seed results its `submission.json` lists (`seeds` /
`seed_results` / `seed_scores`, as `python -m pgolf.logs check` reads them), else the scores its
training logs print (read with `pgolf.logs`). The readme rule needs the new seeds' `val_loss`
(from `submission.json`, else from the logs); without them it is reported as not computable.
Exit codes: 0 (verdicts printed), 2 (a folder without per-seed scores, bad arguments).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Sequence

from pgolf.logs import ScoresError, SeedScores, record_scores
from search.core.errors import OneLineError
from search.records.config import ALPHA, LEADERBOARD_ALPHA, MIN_GAIN_NATS, PromoteError
from search.records.stats import significance, welch


class SignificanceError(OneLineError, ValueError):
    """A folder or a list of seeds that cannot be judged (the message names the fix)."""


def verdict_lines(new: SeedScores, old: SeedScores, alpha: float = LEADERBOARD_ALPHA) -> list[str]:
    """The printed report: both seed lists, then one line per rule."""
    lines = [f"new:     {len(new.val_bpb)} seeds, mean val_bpb {new.mean:.8f} ({new.source}): "
             + ", ".join(f"{s} {v:.8f}" for s, v in new.val_bpb.items()),
             f"against: {len(old.val_bpb)} seeds, mean val_bpb {old.mean:.8f} ({old.source}): "
             + ", ".join(f"{s} {v:.8f}" for s, v in old.val_bpb.items())]
    try:
        w = welch(list(new.val_bpb.values()), list(old.val_bpb.values()), alpha)
    except PromoteError as exc:
        raise SignificanceError(str(exc)) from None
    lines.append(f"leaderboard p={w.p_value:.3f} (one-sided Welch t-test of the seeds' val_bpb, t={w.t_statistic:.3f}, "
                 f"p < {alpha:g} needed): {'record' if w.significant else 'not a record'}")
    if len(new.val_loss) == len(new.val_bpb):
        sig = significance(list(new.val_loss.values()), list(new.val_bpb.values()), old.mean)
        lines.append(f"readme p={sig.p_value:.3f} (gain of at least {MIN_GAIN_NATS} nats over mean val_bpb "
                     f"{old.mean:.8f}, one-sample t-test, p < {ALPHA:g} needed): "
                     f"{'record' if sig.significant else 'not a record'}")
    else:
        lines.append("readme p=n/a (the new seeds' val_loss is not listed in submission.json nor read from logs)")
    return lines


def parse_seeds(text: str) -> SeedScores:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SignificanceError(f"--against-seeds {text!r} is not a comma-separated list of val_bpb numbers") from None
    if len(values) < 2 or not all(math.isfinite(v) and v > 0 for v in values):
        raise SignificanceError(f"--against-seeds needs at least 2 positive val_bpb values, got {text!r}")
    return SeedScores({str(i): v for i, v in enumerate(values)}, {}, "--against-seeds")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m search.significance", description=__doc__.split("\n")[0])
    p.add_argument("record", help="the new record folder (submission.json with per-seed results, or its logs)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--against-record", help="the previous record's folder")
    group.add_argument("--against-seeds", help="the previous record's per-seed val_bpb, comma-separated")
    p.add_argument("--alpha", type=float, default=LEADERBOARD_ALPHA,
                   help=f"the leaderboard rule's threshold (default {LEADERBOARD_ALPHA})")
    args = p.parse_args(argv)
    try:
        if not 0 < args.alpha < 1:
            raise SignificanceError(f"--alpha {args.alpha} must be between 0 and 1")
        new = record_scores(Path(args.record))
        old = record_scores(Path(args.against_record)) if args.against_record else parse_seeds(args.against_seeds)
        print("\n".join(verdict_lines(new, old, args.alpha)))
    except (ScoresError, SignificanceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
