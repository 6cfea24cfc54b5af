"""`driver.lock`: one driver per experiment folder, and who it is.

An exclusive `flock` held while the driver runs, with the holder (host, PID, start time) written in
the file: a second driver is refused in one line naming the holder; a lock left by a driver that died
on this host is taken over; one recorded by another host is reported with how to clear it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from search.core.errors import OneLineError
from search.core.layout import LOCK_FILE


class ExperimentError(OneLineError, RuntimeError):
    """A one-line problem with an experiment folder; `code` is the exit code (1 busy, 2 bad input)."""


def _start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (tells a reused PID apart), None if gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(holder: dict[str, Any]) -> bool:
    pid = int(holder.get("pid") or 0)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    ticks = _start_ticks(pid)
    return ticks is None or holder.get("start_ticks") in (None, ticks)


def _describe(holder: dict[str, Any]) -> str:
    return (f"host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
            f"since {holder.get('since', '?')}")


class DriverLock:
    """`driver.lock`: an exclusive flock held while the driver runs, with the holder written in it.

    The file stays; its content is emptied on release, so a non-empty file whose flock is free was
    left by a driver that died (SIGKILL, lost machine)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / LOCK_FILE
        self.fd: int | None = None

    def _holder(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text() or "{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> str | None:
        """Take the lock; return a note when a dead driver's lock was taken over; raise ExperimentError."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ExperimentError(f"error: {self.folder} is in use by another driver "
                                      f"({_describe(self._holder())}): wait for it to finish or stop it (Ctrl-C); "
                                      "one driver per experiment", code=1)
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break  # locked the file that is there now, not one a releasing driver just removed
            except FileNotFoundError:
                pass
            os.close(fd)
        holder, note = self._holder(), None
        if holder:
            here = socket.gethostname()
            if holder.get("host") != here or _alive(holder):
                os.close(fd)
                where = "another host" if holder.get("host") != here else "this host"
                raise ExperimentError(f"error: {self.folder} is held by a driver on {where} ({_describe(holder)}): "
                                      f"if that driver is no longer running, delete {self.path} and run again",
                                      code=1)
            note = f"note: took over {self.path} from a driver that is gone ({_describe(holder)})"
        me = {"host": socket.gethostname(), "pid": os.getpid(), "start_ticks": _start_ticks(os.getpid()),
              "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return note

    def release(self, remove: bool = False) -> None:
        """Empty the file (or remove it: a folder that holds no experiment keeps no lock) and unlock."""
        if self.fd is None:
            return
        try:
            if remove:
                self.path.unlink(missing_ok=True)
            else:
                os.ftruncate(self.fd, 0)
        except OSError:
            pass  # a full disk may refuse even this; the free flock tells the next driver
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None
