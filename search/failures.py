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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.experiment import is_disk_full
from search.runner import root_cause

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
        failure = json.loads((trial_dir / "failure.json").read_text())
        recorded = Failure(str(failure.get("reason") or "crashed"), str(failure.get("message") or ""),
                           str(failure.get("log_tail", ""))[-LOG_TAIL_CHARS:])
    except (OSError, ValueError):
        pass
    try:
        text = (trial_dir / "stdout.log").read_text(errors="replace")
    except OSError:
        text = ""
    tail = text[-LOG_TAIL_CHARS:]
    if is_disk_full(error) or (recorded and "No space left on device" in recorded.message):
        return Failure("disk_full", "no space left on device", tail)
    if recorded is not None:
        return recorded
    if isinstance(error, RayActorError) or error is None:
        # the runner records every failure of its own; none here means its process died under it
        what = _first_line(error) if error is not None else "no failure recorded"
        return Failure("node_lost", f"the Ray worker or its node died ({what})", tail)
    return Failure("crashed", root_cause(text.splitlines()) or _first_line(error), tail)
