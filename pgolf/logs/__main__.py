"""`python -m pgolf.logs LOG...`: what was read from each training log;
`python -m pgolf.logs check RECORD_DIR...`: record folders' logs against their `submission.json`."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Sequence

from pgolf.logs.parse import LogSummary, parse_log
from pgolf.logs.records import check_record, record_folders, render


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def describe(path: Path, summary: LogSummary) -> str:
    """One line: what was read from one log."""
    score = summary.final
    if score is None:
        return f"{path}: no score line (steps {summary.last_step})"
    return (f"{path}: {score.label} val_loss {_fmt(score.val_loss, '.8f')} val_bpb {_fmt(score.val_bpb, '.8f')} "
            f"bytes {_fmt(summary.bytes_total, 'd')} train {_fmt(summary.train_seconds, '.1f')} s "
            f"eval {_fmt(summary.eval_seconds, '.1f')} s steps {summary.last_step}")


USAGE = ("usage: python -m pgolf.logs [--score-line REGEX] LOG...   (what each log says)\n"
         "       python -m pgolf.logs check RECORD_DIR...          (logs against submission.json)")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if args and args[0] == "check":
        return check_main(args[1:])
    score_line = None
    if args[:1] == ["--score-line"]:
        if len(args) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        score_line, args = args[1], args[2:]
        try:
            re.compile(score_line)
        except re.error as exc:
            print(f"error: --score-line {score_line!r} is not a regular expression: {exc} (give a line name "
                  "such as final_int6_sliding_window_exact)", file=sys.stderr)
            return 2
    if not args or any(a.startswith("-") for a in args):
        print(USAGE, file=sys.stderr)
        return 2
    missing = [a for a in args if not Path(a).is_file()]
    if missing:
        print(f"error: {missing[0]} is not a file (give training logs, e.g. records/.../train_seed42.log)",
              file=sys.stderr)
        return 2
    for arg in args:
        print(describe(Path(arg), parse_log(arg, score_line)))
    return 0


def check_main(argv: Sequence[str]) -> int:
    paths = [Path(a) for a in argv]
    if not paths or any(a.startswith("-") for a in argv):
        print("usage: python -m pgolf.logs check RECORD_DIR...  (record folders, or folders above them)",
              file=sys.stderr)
        return 2
    missing = [p for p in paths if not p.is_dir()]
    if missing:
        print(f"error: {missing[0]} is not a folder (give record folders, e.g. records/track_10min_16mb)",
              file=sys.stderr)
        return 2
    checks = [check_record(folder) for folder in record_folders(paths)]
    for check in checks:
        print("\n".join(render(check)))
    counted = [c for c in checks if c.counted]
    matching = sum(c.matching for c in counted)
    percent = 100.0 * matching / len(counted) if counted else 0.0
    print(f"records: {len(counted)}, matching: {matching} ({percent:.0f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
