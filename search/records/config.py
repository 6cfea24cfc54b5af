"""What one promotion works with: the promotion rules' settings, its settings resolved from the command
line and the experiment (`PromoteConfig`), each seed's result (`SeedResult`), and the one-line error it
stops with.

The rules: `readme`, the competition README's gain of at least 0.005 nats at p < 0.01 (one-sided
one-sample t-test against the old record's mean); `leaderboard`, what the leaderboard as maintained
applied (openai/parameter-golf PR #1902): a one-sided Welch t-test of the seeds' `val_bpb` against the
previous record's seeds, p < 0.25."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search.core.errors import OneLineError

MIN_GAIN_NATS = 0.005
ALPHA = 0.01
LEADERBOARD_ALPHA = 0.25
RULES = ("readme", "leaderboard")


class PromoteError(OneLineError):
    """Bad input or a failed rerun; the message is one line naming the problem and the fix."""


@dataclass
class SeedResult:
    """One seed's score as printed in its log (the final round-trip line)."""

    seed: int
    val_loss: float
    val_bpb: float
    bytes_total: int
    bytes_code: int
    steps: int | None
    ms_per_step: float | None
    log_path: Path
    metrics: dict[str, Any]
    train_seconds: float | None = None
    eval_seconds: float | None = None
    reproduction: str | None = None  # the log it was read from, for a seed run elsewhere (--reproductions)


@dataclass
class PromoteConfig:
    """Everything one promotion needs, resolved from the CLI and the experiment."""

    experiment_dir: Path
    trial: int
    seeds: list[int]
    script: Path
    env: dict[str, str]
    gpus_per_trial: int
    cpus_per_trial: int
    smoke: bool
    budget_bytes: int
    record_dir: Path
    work_dir: Path
    against_bpb: float | None
    author: str
    github_id: str
    name: str
    blurb: str
    hardware: str | None
    experiment_name: str
    changed: dict[str, str] = field(default_factory=dict)
    trial_bytes_code: int | None = None
    limits: dict[str, float] = field(default_factory=dict)  # the experiment's time limits (bytes: budget_bytes)
    score_line: str | None = None                           # the space's SCORE_LINE
    rule: str = "readme"                                    # which rule the record flag follows
    against_seeds: dict[str, float] = field(default_factory=dict)  # the previous record's per-seed val_bpb
    against_source: str = ""
    alpha: float = LEADERBOARD_ALPHA
    reproductions: list[SeedResult] = field(default_factory=list)  # seeds run elsewhere, from their logs
    trial_hours: float | None = None                        # the trial's own device hours in the search
    resources: dict[str, float] = field(default_factory=dict)  # the space's RESOURCES_PER_TRIAL
