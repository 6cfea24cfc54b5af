"""The processes of a training: how one is launched, and how it and everything under it is stopped.

A training runs as `torchrun --standalone` (one rank per GPU, each under `rank_guard.py` so it dies
with torchrun) or as a plain `python script`; it dies with its Ray worker (PR_SET_PDEATHSIG), and a
driver that leaves stops the trainings it owns on its host (`stop_training`), so nothing is orphaned.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from search.core.layout import TRAINING_PID

_PR_SET_PDEATHSIG = 1
RANK_GUARD = Path(__file__).with_name("rank_guard.py")


def die_with_parent() -> None:
    """preexec_fn: have the kernel SIGKILL the child when its parent thread dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: cleanup in train_trial's finally still applies


def _stat(pid: int | str) -> list[str]:
    """/proc/PID/stat's fields after the command name: [state, ppid, …] (OSError when gone)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> list[int]:
    """Every process under `pid` (Linux /proc; [] elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                ppid = int(_stat(entry)[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_training(trial_dir: Path, wait_s: float = 15.0) -> None:
    """Kill the training still running for `trial_dir` on this host (its process must carry OUT_DIR=trial_dir,
    so a reused PID is never touched) and wait for it to end: its folder is then final, and a trial settled
    from it cannot gain a metrics.json afterwards."""
    try:
        info = json.loads((trial_dir / TRAINING_PID).read_text())
        pid = int(info["pid"])
        if info.get("host") != socket.gethostname():
            return
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return
    if f"\0OUT_DIR={trial_dir}\0".encode() not in b"\0" + environ + b"\0":
        return
    kill_tree(pid)
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            if _stat(pid)[0] == "Z":
                return  # dead, not yet reaped
        except (OSError, IndexError):
            return
        time.sleep(0.05)


def kill_tree(pid: int) -> None:
    """SIGKILL a launched training and everything under it. torchrun starts each rank in a session
    of its own, so killing the launcher's process group alone would leave the ranks running."""
    for victim in [pid, *descendants(pid)]:
        for kill in (os.killpg, os.kill):
            try:
                kill(victim, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def launch_command(script: Path, nproc: int) -> list[str]:
    """`torchrun --standalone --nproc_per_node=N rank_guard.py script` for N > 0 (each rank runs the
    script under `search/runner/rank_guard.py`, so it dies with torchrun), else `python script`."""
    if nproc > 0:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}", str(RANK_GUARD), str(script)]
    return [sys.executable, str(script)]
