"""A record folder's logs against its `submission.json`, and its per-seed scores.

`python -m pgolf.logs check RECORD_DIR...`: do a record folder's logs say what its submission says?

For each folder (a `submission.json` and its training logs, `*.log`/`*.txt` in the folder or a
`logs/` subfolder): the score each log prints (by `pgolf.logs`' score rule), their mean, the
submission's `val_bpb` (or `mean_val_bpb`) and the per-seed results it lists, and a verdict.

Which logs are averaged: every log with a score, a log whose bytes repeat another's counted once
(records often ship `train.log` beside the same run as `train_seed<N>.log`). When the submission
lists per-seed scores and every one of them is printed by some log, those logs are the ones
averaged (a folder may also hold reruns or side experiments the submission does not count).
When the mean of all logs misses but exactly one log prints the submission's value as its score,
the submission states that one run (e.g. `train.log`, with further seeds added as evidence), and
that log is the one compared.

A match is a mean within the rounding of the submission's value: half a unit in the last decimal
it states. A folder whose `submission.json` has no `val_bpb` is listed and not counted; so is a
folder that ships no log at all (there is nothing to read). The last line reads
`records: N, matching: M (P %)`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pgolf.logs.parse import parse_log

LOG_SUFFIXES = (".log", ".txt")


@dataclass
class RecordCheck:
    """What one record folder's check found."""

    folder: Path
    claimed: float | None = None          # submission.json val_bpb
    decimals: int = 0
    listed: dict[str, float] = field(default_factory=dict)   # per-seed results in submission.json
    scores: dict[str, float] = field(default_factory=dict)   # log file name -> score
    used: list[str] = field(default_factory=list)            # the logs averaged
    has_logs: bool = False                                   # the folder ships any log at all
    note: str = ""

    @property
    def mean(self) -> float | None:
        values = [self.scores[name] for name in self.used]
        return sum(values) / len(values) if values else None

    @property
    def counted(self) -> bool:
        return self.claimed is not None and self.has_logs

    @property
    def matching(self) -> bool:
        mean = self.mean
        return self.counted and mean is not None and abs(mean - self.claimed) <= _tolerance(self.decimals)


def _tolerance(decimals: int) -> float:
    return 0.5 * 10.0 ** -decimals + 1e-12


def _decimals(value: float) -> int:
    text = repr(float(value))
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def _literal(value: Any) -> Any:
    """submission.json fields sometimes hold a Python dict's repr as a string."""
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return None
    return value


def listed_seeds(submission: dict[str, Any]) -> dict[str, float]:
    """Per-seed val_bpb a submission lists: `seed_results`/`seeds` as {seed: {val_bpb}}, or
    `seed_scores` beside a `seeds` list."""
    for key in ("seed_results", "seeds"):
        value = _literal(submission.get(key))
        if isinstance(value, dict):
            out = {str(seed): float(r["val_bpb"]) for seed, r in value.items()
                   if isinstance(r, dict) and isinstance(r.get("val_bpb"), (int, float))}
            if out:
                return out
    seeds, scores = submission.get("seeds"), submission.get("seed_scores")
    if isinstance(seeds, list) and isinstance(scores, list) and len(seeds) == len(scores):
        return {str(s): float(v) for s, v in zip(seeds, scores) if isinstance(v, (int, float))}
    return {}


def find_logs(folder: Path) -> list[Path]:
    places = [folder, folder / "logs"]
    return sorted(p for place in places if place.is_dir() for p in place.iterdir()
                  if p.is_file() and p.suffix in LOG_SUFFIXES)


def check_record(folder: Path) -> RecordCheck:
    check = RecordCheck(folder=folder)
    try:
        submission = json.loads((folder / "submission.json").read_text())
    except (OSError, ValueError) as exc:
        check.note = f"no readable submission.json ({type(exc).__name__})"
        submission = {}
    claimed = submission.get("val_bpb", submission.get("mean_val_bpb"))
    if isinstance(claimed, (int, float)) and not isinstance(claimed, bool) and math.isfinite(claimed):
        check.claimed, check.decimals = float(claimed), _decimals(claimed)
    elif not check.note:
        check.note = "submission.json states no val_bpb"
    check.listed = listed_seeds(submission)
    seen: set[str] = set()
    logs = find_logs(folder)
    check.has_logs = bool(logs)
    for log in logs:
        digest = hashlib.sha256(log.read_bytes()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        score = parse_log(log).final
        if score is not None and math.isfinite(score.val_bpb):
            check.scores[str(log.relative_to(folder))] = score.val_bpb
    if check.claimed is not None and not logs:
        check.note = "no logs in the folder"
    elif check.claimed is not None and not check.scores:
        check.note = "no score read"
    check.used = _logs_of_listed_seeds(check) or sorted(check.scores)
    if check.claimed is not None and not check.matching:
        tol = _tolerance(check.decimals)
        single = [name for name, score in check.scores.items() if abs(score - check.claimed) <= tol]
        if len(single) == 1:
            check.used, check.note = single, "the submission states one run's score"
    return check


def _logs_of_listed_seeds(check: RecordCheck) -> list[str]:
    """The logs that print the submission's listed per-seed scores, one per seed; [] unless all are found."""
    used: list[str] = []
    for value in check.listed.values():
        tol = _tolerance(_decimals(value))
        match = next((name for name, score in sorted(check.scores.items())
                      if abs(score - value) <= tol and name not in used), None)
        if match is None:
            return []
        used.append(match)
    return used


def render(check: RecordCheck) -> list[str]:
    lines = [f"{check.folder.name}"]
    for name, score in sorted(check.scores.items()):
        mark = "" if name in check.used else "   (not averaged: the submission states other runs)"
        lines.append(f"  {name}: {score:.8f}{mark}")
    if check.listed:
        lines.append("  submission per seed: " + ", ".join(f"{s} {v}" for s, v in check.listed.items()))
    claimed = "-" if check.claimed is None else f"{check.claimed}"
    mean = "-" if check.mean is None else f"{check.mean:.8f}"
    if not check.counted:
        verdict = f"not counted: {check.note}"
    elif check.matching:
        verdict = f"MATCH{' (' + check.note + ')' if check.note else ''}"
    else:
        verdict = f"MISS{': ' + check.note if check.note else ''}"
    lines.append(f"  mean of {len(check.used)} log(s) {mean}, submission {claimed}: {verdict}")
    return lines


def record_folders(paths: Sequence[Path]) -> list[Path]:
    """The folders holding a submission.json at or below each path."""
    found: list[Path] = []
    for path in paths:
        if (path / "submission.json").is_file():
            found.append(path)
        else:
            found.extend(sorted(p.parent for p in path.rglob("submission.json")))
    return found


class ScoresError(ValueError):
    """A record folder without per-seed scores to test (the message names the fix)."""


@dataclass(frozen=True)
class SeedScores:
    """Per-seed val_bpb (and val_loss where known) of one record, and where they were read."""

    val_bpb: dict[str, float]
    val_loss: dict[str, float]
    source: str

    @property
    def mean(self) -> float:
        return statistics.fmean(self.val_bpb.values())


def record_scores(folder: Path) -> SeedScores:
    """The per-seed scores of a record folder (submission.json's list, else its logs)."""
    if not folder.is_dir():
        raise ScoresError(f"{folder} is not a folder; pass a record folder (its submission.json and logs)")
    try:
        submission = json.loads((folder / "submission.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        submission = {}
    bpb = listed_seeds(submission)
    losses = {}
    for key in ("seeds", "seed_results"):
        value = submission.get(key)
        if isinstance(value, dict):
            losses.update({str(s): float(r["val_loss"]) for s, r in value.items()
                           if isinstance(r, dict) and isinstance(r.get("val_loss"), (int, float))})
    if len(bpb) >= 2:
        return SeedScores(bpb, {s: v for s, v in losses.items() if s in bpb}, "submission.json")
    logs = {}
    for log in find_logs(folder):
        final = parse_log(log).final
        if final is not None and math.isfinite(final.val_bpb):
            logs[log.name] = final
    if len(logs) < 2:
        raise ScoresError(f"{folder} lists fewer than 2 per-seed scores in submission.json and has fewer than "
                          f"2 training logs with a score; a test needs at least 2 seeds")
    return SeedScores({n: f.val_bpb for n, f in logs.items()}, {n: f.val_loss for n, f in logs.items()},
                      f"{len(logs)} logs")
