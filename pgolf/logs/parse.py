"""Reading Parameter Golf training logs, as the competition's scripts really print them.

`python -m pgolf.logs LOG...` prints what was read from each log (`pgolf.logs.__main__`).

Shapes read (all seen in the competition's records):
- training steps: `step:N/T train_loss:X train_time:Tms ...` and `N/T train_loss: X train_time: 0.8m ...`;
- validation steps: `step:N/T val_loss:X val_bpb:Y ...` and `N/T val_loss: X val_bpb: Y`;
- evaluation lines: `<label> val_loss:X val_bpb:Y [eval_time:Tms]` where the label starts the line
  (`final_int8_zlib_roundtrip_exact`, `final_int6_sliding_window`, `legal_ttt_exact`,
  `quantized_ttt_phased`, `diagnostic quantized`, ...); a script's source code echoed into its
  log never matches (its values are `{expressions}`, not numbers);
- `Total submission size <scheme>: B bytes`, `stopping_early: ... train_time:Tms step:N/T`,
  `total_eval_time:Ns`;
- the artifact: `model_params:N` and `Serialized model <format>: B bytes` (the compressed model
  a script wrote, e.g. `int8+zlib`; the unquantized `Serialized model: B bytes` has no format). A
  log may hold several runs: each such line is kept, in order.

**The score rule.** When a log prints several evaluation lines, the score is the *last* one that
is not a diagnostic. A diagnostic is a line whose label says `diagnostic`, or is a
pre-quantization number (`pre-quantization ...`, `prequant`, `pre_quant`, `post_ema`): the
competition scores the model after its quantized round trip, and every later evaluation
(sliding window, test-time training) is printed after the round trip it improves on. Lines after
the score that are not evaluation lines (timings, sizes) do not matter. A space file can override
the rule with `SCORE_LINE`: a regular expression the line's first word must match in full (a
plain name such as `final_int6_sliding_window_exact` matches itself); the last such line wins.

Evaluation time: the log's `total_eval_time` when it prints one, else the score line's
`eval_time` (or that of its twin without `_exact`, which prints the same evaluation rounded):
the number records report as their evaluation time. Training time: the largest `train_time` of a
step or `stopping_early` line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Union

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|nan|inf|NaN|Inf)"
# key:value pairs; a space may follow the colon, a time may carry a unit (ms, s or m)
_FIELD_RE = re.compile(r"\b([A-Za-z_]+):\s?(" + _NUMBER + r")(ms|s|m)?(?=[\s,)]|$)")
_STEP_RE = re.compile(r"^\s*(?:step:\s?)?(\d+)(?:/(\d+))?\s")
_STEP_ANYWHERE_RE = re.compile(r"\bstep:\s?(\d+)(?:/(\d+))?")
_EVAL_RE = re.compile(r"^([A-Za-z][\w+\-.]*)((?:\s+[^\s]+?)*?)\s+val_loss:\s?(" + _NUMBER + r")\s+val_bpb:\s?("
                      + _NUMBER + r")(?=\s|$)")
_SIZE_RE = re.compile(r"Total submission size\s*([^:]*):\s*(\d+)\s*bytes")
_STOP_RE = re.compile(r"^stopping_early\b")
_TOTAL_EVAL_RE = re.compile(r"^total_eval_time:\s?(" + _NUMBER + r")(ms|s)?\b")
_MODEL_PARAMS_RE = re.compile(r"^model_params:(\d+)\b")
_SERIALIZED_RE = re.compile(r"^Serialized model(?: ([^:\s]+))?: (\d+) bytes\b")
_DIAGNOSTIC_RE = re.compile(r"diagnostic|pre-?quant|pre_quant|post[_-]ema", re.IGNORECASE)
_TIME_UNITS_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, None: 1.0}


@dataclass(frozen=True)
class TrainStep:
    """One training-step line (`step:N/T train_loss:X ...` or `N/T train_loss: X ...`)."""

    step: int
    total: int | None
    train_loss: float
    train_time_ms: float | None


@dataclass(frozen=True)
class ValStep:
    """One intermediate validation line (`step:N/T val_loss:X val_bpb:Y ...`)."""

    step: int
    total: int | None
    val_loss: float
    val_bpb: float
    train_time_ms: float | None


@dataclass(frozen=True)
class FinalScore:
    """An evaluation line `<label> val_loss:X val_bpb:Y`; `label` is its first word."""

    label: str
    val_loss: float
    val_bpb: float
    eval_time_ms: float | None = None
    diagnostic: bool = False


@dataclass(frozen=True)
class SubmissionSize:
    """A `Total submission size <scheme>: B bytes` line."""

    label: str
    bytes_total: int


@dataclass(frozen=True)
class TrainStop:
    """`stopping_early: wallclock_cap train_time:Tms step:N/T`: the end of training."""

    step: int | None
    train_time_ms: float | None


@dataclass(frozen=True)
class TotalEvalTime:
    """`total_eval_time:Ns`: the whole evaluation, as the script measured it."""

    seconds: float


@dataclass(frozen=True)
class ModelParams:
    """`model_params:N`: the parameter count a script printed."""

    count: int


@dataclass(frozen=True)
class SerializedModel:
    """`Serialized model <format>: B bytes`; `format` is '' for the unquantized checkpoint."""

    format: str
    bytes: int


LogEvent = Union[TrainStep, ValStep, FinalScore, SubmissionSize, TrainStop, TotalEvalTime, ModelParams,
                 SerializedModel]


def _fields(line: str) -> dict[str, float]:
    """key -> value; times with a unit are converted to milliseconds."""
    out = {}
    for key, value, unit in _FIELD_RE.findall(line):
        number = float(value)
        if unit:
            number *= _TIME_UNITS_MS[unit]
        out.setdefault(key, number)
    return out


def _time(values: dict[str, float], *keys: str) -> float | None:
    return next((values[k] for k in keys if k in values), None)


def parse_line(line: str) -> LogEvent | None:
    """Return the event one log line describes, or None for any other line."""
    params = _MODEL_PARAMS_RE.match(line)
    if params:
        return ModelParams(int(params.group(1)))
    serialized = _SERIALIZED_RE.match(line)
    if serialized:
        return SerializedModel(serialized.group(1) or "", int(serialized.group(2)))
    size = _SIZE_RE.search(line)
    if size:
        return SubmissionSize(label=size.group(1).strip(), bytes_total=int(size.group(2)))
    total_eval = _TOTAL_EVAL_RE.match(line)
    if total_eval:
        return TotalEvalTime(float(total_eval.group(1)) * (0.001 if total_eval.group(2) == "ms" else 1.0))
    values = _fields(line)
    if _STOP_RE.match(line):
        step = _STEP_ANYWHERE_RE.search(line)
        return TrainStop(int(step.group(1)) if step else None, _time(values, "train_time"))
    step = _STEP_RE.match(line)
    if step:
        number = int(step.group(1))
        total = int(step.group(2)) if step.group(2) else None
        if "val_bpb" in values and "val_loss" in values:
            return ValStep(number, total, values["val_loss"], values["val_bpb"], _time(values, "train_time"))
        if "train_loss" in values:
            return TrainStep(number, total, values["train_loss"], _time(values, "train_time"))
        return None
    evaluation = _EVAL_RE.match(line)
    if evaluation:
        label = evaluation.group(1)
        if label == "step" or label.startswith("step:"):
            return None
        full_label = label + evaluation.group(2)
        return FinalScore(label, float(evaluation.group(3)), float(evaluation.group(4)),
                          _time(values, "eval_time", "time"), bool(_DIAGNOSTIC_RE.search(full_label)))
    step = _STEP_ANYWHERE_RE.search(line)  # e.g. `step:5 val_bpb:1.5 val_loss:2.5`
    if step and "val_bpb" in values and "val_loss" in values:
        return ValStep(int(step.group(1)), int(step.group(2)) if step.group(2) else None,
                       values["val_loss"], values["val_bpb"], _time(values, "train_time"))
    return None


@dataclass
class LogSummary:
    """Everything read from a whole log; `score_line` is a space's SCORE_LINE (a regex), if any."""

    train_steps: list[TrainStep] = field(default_factory=list)
    val_steps: list[ValStep] = field(default_factory=list)
    finals: list[FinalScore] = field(default_factory=list)
    sizes: list[SubmissionSize] = field(default_factory=list)
    stops: list[TrainStop] = field(default_factory=list)
    total_eval_seconds: float | None = None
    score_line: str | None = None
    model_params: list[int] = field(default_factory=list)
    serialized: list[SerializedModel] = field(default_factory=list)

    def add(self, event: LogEvent | None) -> None:
        if isinstance(event, TrainStep):
            self.train_steps.append(event)
        elif isinstance(event, ValStep):
            self.val_steps.append(event)
        elif isinstance(event, FinalScore):
            self.finals.append(event)
        elif isinstance(event, SubmissionSize):
            self.sizes.append(event)
        elif isinstance(event, TrainStop):
            self.stops.append(event)
        elif isinstance(event, TotalEvalTime):
            self.total_eval_seconds = event.seconds
        elif isinstance(event, ModelParams):
            self.model_params.append(event.count)
        elif isinstance(event, SerializedModel):
            self.serialized.append(event)

    @property
    def artifacts(self) -> list[SerializedModel]:
        """The compressed models the log's runs wrote (lines with a format), in order."""
        return [s for s in self.serialized if s.format]

    @property
    def final(self) -> FinalScore | None:
        """The score, by the rule in this module's docstring (or the SCORE_LINE given)."""
        if self.score_line is not None:
            pattern = re.compile(self.score_line)
            chosen = [f for f in self.finals if pattern.fullmatch(f.label)]
        else:
            chosen = [f for f in self.finals if not f.diagnostic]
        return chosen[-1] if chosen else None

    @property
    def bytes_total(self) -> int | None:
        return self.sizes[-1].bytes_total if self.sizes else None

    @property
    def last_step(self) -> int:
        steps = [s.step for s in self.train_steps] + [s.step for s in self.val_steps]
        steps += [s.step for s in self.stops if s.step is not None]
        return max(steps, default=0)

    @property
    def train_seconds(self) -> float | None:
        times = [s.train_time_ms for s in [*self.train_steps, *self.val_steps, *self.stops]
                 if s.train_time_ms is not None and math.isfinite(s.train_time_ms)]
        return max(times) / 1000.0 if times else None

    @property
    def eval_seconds(self) -> float | None:
        if self.total_eval_seconds is not None:
            return self.total_eval_seconds
        score = self.final
        if score is None:
            return None
        if score.eval_time_ms is not None:
            return score.eval_time_ms / 1000.0
        twin = score.label.removesuffix("_exact")
        for line in reversed(self.finals[: self.finals.index(score)]):
            if line.label == twin and line.eval_time_ms is not None:
                return line.eval_time_ms / 1000.0
        return None

    @property
    def has_nan(self) -> bool:
        """True when any train or validation loss is NaN or infinite."""
        losses = [s.train_loss for s in self.train_steps] + [s.val_loss for s in self.val_steps]
        return any(not math.isfinite(x) for x in losses)


def parse_lines(lines: Iterable[str], score_line: str | None = None) -> LogSummary:
    summary = LogSummary(score_line=score_line)
    for line in lines:
        summary.add(parse_line(line))
    return summary


def parse_log(path: str | Path, score_line: str | None = None) -> LogSummary:
    """Parse a log file; unreadable bytes are replaced, never fatal."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return parse_lines(text.splitlines(), score_line)
