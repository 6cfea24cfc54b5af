"""Why a launched trial ended without a result.

Three different things look alike to Ray Tune (a trial in ERROR), and the
search must treat them differently:

- the training failed (`crashed`, `nan_loss`, `timeout`): the runner wrote
  `failure.json` in the trial folder; the trial is FAIL and counts as done;
- the Ray worker or its node died under a healthy training (`node_lost`): Ray
  reports a `RayActorError` and no `failure.json` exists; the trial is FAIL
  and its parameters run again, it does not count;
- the results disk is full (`disk_full`): nothing can be recorded; the search
  stops with one line and `--resume` continues once there is room.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.core import attrs
from search.core.errors import is_disk_full
from search.core.layout import FAILURE_FILE, STDOUT_LOG

LOG_TAIL_CHARS = 4000
MAX_LOST = 3  # a configuration whose worker died this many times in a row is a crash, not bad luck


@dataclass(frozen=True)
class Failure:
    reason: str   # crashed | nan_loss | timeout | node_lost | disk_full
    message: str
    tail: str


def tune_trial_error(tune_trial: Any) -> BaseException | None:
    """The exception Ray Tune recorded for a trial in ERROR (its pickled error file), else None."""
    path = getattr(tune_trial, "pickled_error_file", None) if tune_trial is not None else None
    if not path:
        return None
    try:
        import cloudpickle

        with open(path, "rb") as handle:
            error = cloudpickle.load(handle)
        return error if isinstance(error, BaseException) else None
    except Exception:  # noqa: BLE001 - an unreadable record is no record
        return None


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "cause", None) or error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:300]


def classify(trial_dir: Path, error: BaseException | None) -> Failure:
    """The reason, message and log tail of a trial that ended in error."""
    from ray.exceptions import RayActorError

    recorded = None
    try:
        failure = json.loads((trial_dir / FAILURE_FILE).read_text())
        recorded = Failure(str(failure.get("reason") or attrs.CRASHED), str(failure.get("message") or ""),
                           str(failure.get("log_tail", ""))[-LOG_TAIL_CHARS:])
    except (OSError, ValueError):
        pass
    try:
        text = (trial_dir / STDOUT_LOG).read_text(errors="replace")
    except OSError:
        text = ""
    tail = text[-LOG_TAIL_CHARS:]
    if is_disk_full(error) or (recorded and "No space left on device" in recorded.message):
        return Failure(attrs.DISK_FULL, "no space left on device", tail)
    if recorded is not None:
        return recorded
    if isinstance(error, RayActorError) or error is None:
        # the runner records every failure of its own; none here means its process died under it
        what = _first_line(error) if error is not None else "no failure recorded"
        return Failure(attrs.NODE_LOST, f"the Ray worker or its node died ({what})", tail)
    return Failure(attrs.CRASHED, root_cause(text.splitlines()) or _first_line(error), tail)


_RANK_PREFIX = re.compile(r"^\[(?:default)?(?:rank)?(\d+)\]:\s?")
# The line that ends a traceback: `module.ExceptionType: message` (or a bare `SomethingError`).
# Ranks without torchrun's prefixes print their tracebacks into one pipe, interleaved even inside
# lines, so the first line of that shape is taken, not merely the first unindented one.
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(:(?: .*)?)?$")
_EXCEPTION_ENDINGS = ("Error", "Exception", "Interrupt", "Exit")


def root_cause(lines: list[str]) -> str | None:
    """The script's own reason for failing, from its output: its last `error:` line, else the
    first exception line after the first traceback starts (of the rank that printed it, when
    torchrun's `[rankN]:` prefixes tell ranks apart), so a user reads the cause, not torchrun's summary."""
    errors = [_RANK_PREFIX.sub("", line).strip() for line in lines]
    errors = [line for line in errors if line.startswith("error:")]
    if errors:
        return errors[-1][:500]
    tb_rank: str | None = None
    inside = False
    for line in lines:
        prefix = _RANK_PREFIX.match(line)
        rank = prefix.group(1) if prefix else ""
        text = line[prefix.end():] if prefix else line
        if not inside:
            if text.startswith("Traceback (most recent call last)"):
                inside, tb_rank = True, rank
            continue
        if rank != tb_rank:
            continue  # another rank's lines, interleaved
        exception = _EXCEPTION_LINE.match(text.rstrip())
        if exception and (exception.group(2) is not None or exception.group(1).endswith(_EXCEPTION_ENDINGS)):
            return text.strip()[:500]
    return None


# A script's own words for a diverged training, whatever its exit path (our trainer exits 3 with
# "error: non-finite train loss at step N" before any NaN line reaches the log).
_DIVERGED = re.compile(r"(?i)diverg|(\bnan\b|\binf\b|non-finite|not finite).*\b(loss|grad\w*)\b"
                       r"|\b(loss|grad\w*)\b.*(\bnan\b|\binf\b|non-finite|not finite)")


def diverged(cause: str | None) -> bool:
    """Whether a failed script's root cause says its loss (or gradients) went non-finite."""
    return bool(cause and _DIVERGED.search(cause))
