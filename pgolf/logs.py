"""Tolerant parsing of upstream-style Parameter Golf training logs.

The search service never trusts one exact spelling of the log: records rename
the final line (`final_int6_roundtrip_exact`, `final_sliding_window_exact`,
...), add fields, or print extra lines. Every parser here picks out the
`key:value` pairs it needs and ignores the rest, so any upstream-compatible
`train_gpt.py` can be driven by the search.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Union

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf|NaN|Inf)"
_STEP_RE = re.compile(r"\bstep:(\d+)(?:/(\d+))?")
_FIELD_RE = re.compile(r"\b([a-z_]+):(" + _NUMBER + r")(?:ms)?(?=\s|$)")
_FINAL_RE = re.compile(r"^\s*(final_[A-Za-z0-9_]*exact)\b")
_SIZE_RE = re.compile(r"Total submission size\s*([^:]*):\s*(\d+)\s*bytes")


@dataclass(frozen=True)
class TrainStep:
    """One `step:N/T train_loss:X ...` line."""

    step: int
    total: int | None
    train_loss: float
    train_time_ms: float | None


@dataclass(frozen=True)
class ValStep:
    """One intermediate `step:N/T val_loss:X val_bpb:Y ...` line."""

    step: int
    total: int | None
    val_loss: float
    val_bpb: float
    train_time_ms: float | None


@dataclass(frozen=True)
class FinalScore:
    """A `final_<scheme>_..._exact val_loss:X val_bpb:Y` line (the score)."""

    label: str
    val_loss: float
    val_bpb: float


@dataclass(frozen=True)
class SubmissionSize:
    """A `Total submission size <scheme>: B bytes` line."""

    label: str
    bytes_total: int


LogEvent = Union[TrainStep, ValStep, FinalScore, SubmissionSize]


def _fields(line: str) -> dict[str, float]:
    return {key: float(value) for key, value in _FIELD_RE.findall(line)}


def parse_line(line: str) -> LogEvent | None:
    """Return the event one log line describes, or None for any other line."""
    size = _SIZE_RE.search(line)
    if size:
        return SubmissionSize(label=size.group(1).strip(), bytes_total=int(size.group(2)))
    values = _fields(line)
    final = _FINAL_RE.match(line)
    if final and "val_bpb" in values:
        return FinalScore(final.group(1), values.get("val_loss", math.nan), values["val_bpb"])
    step = _STEP_RE.search(line)
    if not step:
        return None
    number = int(step.group(1))
    total = int(step.group(2)) if step.group(2) else None
    if "val_bpb" in values:
        return ValStep(number, total, values.get("val_loss", math.nan), values["val_bpb"],
                       values.get("train_time"))
    if "train_loss" in values:
        return TrainStep(number, total, values["train_loss"], values.get("train_time"))
    return None


@dataclass
class LogSummary:
    """Everything the search reads from a whole log."""

    train_steps: list[TrainStep] = field(default_factory=list)
    val_steps: list[ValStep] = field(default_factory=list)
    finals: list[FinalScore] = field(default_factory=list)
    sizes: list[SubmissionSize] = field(default_factory=list)

    def add(self, event: LogEvent | None) -> None:
        if isinstance(event, TrainStep):
            self.train_steps.append(event)
        elif isinstance(event, ValStep):
            self.val_steps.append(event)
        elif isinstance(event, FinalScore):
            self.finals.append(event)
        elif isinstance(event, SubmissionSize):
            self.sizes.append(event)

    @property
    def final(self) -> FinalScore | None:
        """The score: the last final line printed (records print several)."""
        return self.finals[-1] if self.finals else None

    @property
    def bytes_total(self) -> int | None:
        return self.sizes[-1].bytes_total if self.sizes else None

    @property
    def last_step(self) -> int:
        steps = [s.step for s in self.train_steps] + [s.step for s in self.val_steps]
        return max(steps, default=0)

    @property
    def has_nan(self) -> bool:
        """True when any train or validation loss is NaN or infinite."""
        losses = [s.train_loss for s in self.train_steps] + [s.val_loss for s in self.val_steps]
        return any(not math.isfinite(x) for x in losses)


def parse_lines(lines: Iterable[str]) -> LogSummary:
    summary = LogSummary()
    for line in lines:
        summary.add(parse_line(line))
    return summary


def parse_log(path: str | Path) -> LogSummary:
    """Parse a log file; unreadable bytes are replaced, never fatal."""
    return parse_lines(Path(path).read_text(encoding="utf-8", errors="replace").splitlines())
