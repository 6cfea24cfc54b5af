"""One-line errors: a problem the user can fix, said in one line that names the fix, with an exit code.

Every command of the search catches `OneLineError`, prints its message and exits with its `code`:
2 when the input is wrong (nothing was written), 1 when the search could not go on (nothing lost;
`--resume` continues)."""

from __future__ import annotations

import errno
from pathlib import Path

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class OneLineError(Exception):
    """A one-line problem; `code` is the exit code (2: the input is wrong, 1: the search could not go on)."""

    code = 2

    def __init__(self, message: str, code: int | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


def line(path: str | Path, problem: str, fix: str) -> str:
    """`error: <path>: <problem> (<fix>)`."""
    return f"error: {path}: {problem} ({fix})"


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether an exception (or one it was raised from) says the disk or quota is full."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in DISK_FULL:
            return True
        if "database or disk is full" in str(exc) or "No space left on device" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def disk_full_line(folder: Path) -> str:
    return (f"error: no space left on the disk of {folder} (free some space, then run the same command "
            "with --resume: finished trainings are kept)")
