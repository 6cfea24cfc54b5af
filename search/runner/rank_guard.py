"""Run a training script as one torchrun rank that dies with its torchrun.

    python search/runner/rank_guard.py SCRIPT [ARGS...]      (torchrun's entry point, per rank)

Why: torchrun starts every rank in a session of its own and without a parent-death signal, so
when the Ray worker running a trial dies (the driver is killed, a trial is cancelled), torchrun
dies with it (the runner arranges that) but its ranks would go on training, holding the GPUs.
This guard asks the kernel to SIGKILL the rank when torchrun dies, then runs SCRIPT exactly as
`python SCRIPT ARGS...` would (`__main__`, `__file__`, `sys.argv`, `sys.path[0]`).
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

_PR_SET_PDEATHSIG = 1


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python search/runner/rank_guard.py SCRIPT [ARGS...]")
    parent = os.getppid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: no guard, the runner's process-tree kill still applies
    if os.getppid() != parent:  # torchrun died before the guard was set
        sys.exit(1)
    script = os.path.abspath(sys.argv[1])
    sys.argv = sys.argv[1:]
    sys.path[0] = os.path.dirname(script)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
