"""One experiment folder (`results/<name>/`) and the one driver that owns it.

The driver opens an `Experiment` before Ray starts and closes it on every exit
path. While it is open:

- `driver.lock` says who holds the folder (host, PID, start time) under an
  exclusive `flock`: a second driver, `--resume` or not, is refused in one line
  naming the holder. A lock left by a driver that died on this host is taken
  over; one recorded by another host is reported with how to clear it.
- nothing is written before every check passes: the folder's state against
  `--resume`, `study.db` integrity, `experiment.json`, and the identity of the
  space (its file's hash, budget, limits, smoke) against the stored one
  (`--force-space` continues with a changed space and records the change).
- the folder is self-contained: a copied or renamed folder resumes (the study
  is found in its own `study.db`, whatever name it was created under).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from search.results import ExperimentSettings, read_experiment, storage_url, write_experiment, write_trials_csv
from search.space import SAMPLERS, SpaceSpec

LOCK_FILE = "driver.lock"
STUDY_FILE = "study.db"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class ExperimentError(RuntimeError):
    """A one-line problem with an experiment folder; `code` is the exit code (1 busy, 2 bad input)."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


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


# ----------------------------------------------------------------------------- the lock

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


# ----------------------------------------------------------------------------- identity and files

def space_identity(spec: SpaceSpec) -> dict[str, Any]:
    """What must not change under a resumed experiment: the space file, its budget, limits, smoke."""
    return {"space_sha256": hashlib.sha256(spec.path.read_bytes()).hexdigest(),
            "budget_bytes": spec.budget_bytes, "limits": dict(spec.limits), "smoke": spec.smoke}


def _identity_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    parts = [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in new if k != "space_sha256" and old.get(k) != new[k]]
    if old.get("space_sha256") != new["space_sha256"]:
        parts.insert(0, f"space file sha256 {str(old.get('space_sha256'))[:12]} -> {new['space_sha256'][:12]}")
    return "; ".join(parts)


def study_names(db: Path) -> list[str]:
    """The study names in an Optuna sqlite file, read-only; ExperimentError when it is damaged."""
    fix = (f"restore it from a backup, or start again under another --name; the finished trainings in "
           f"{db.parent / 'trials'} are intact")
    if db.stat().st_size == 0:
        raise ExperimentError(f"error: {db} is empty ({fix})")
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(check)
            names = [row[0] for row in conn.execute("SELECT study_name FROM studies")]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ExperimentError(f"error: {db} is damaged ({exc}; {fix})") from None
    if not names:
        raise ExperimentError(f"error: {db} holds no study ({fix})")
    return names


class Experiment:
    """The open experiment folder: its lock, settings, study and trials.csv (see module docstring)."""

    def __init__(self, folder: Path, resume: bool):
        self.folder = folder
        self.resume = resume
        self.lock = DriverLock(folder)
        self.created_folder = False
        self.stored: ExperimentSettings | None = None
        self.stored_error = ""
        self.study_name: str | None = None
        self.study = None
        self.settings: ExperimentSettings | None = None
        self.ladder = None  # the space's fidelity ladder (search.ladder), set by start()
        self.sampler = SAMPLERS[0]  # the space's SAMPLER, set by start()

    # -- opening: lock, then checks, nothing written
    @classmethod
    def claim(cls, results_dir: Path, name: str, resume: bool, out=None) -> "Experiment":
        """Lock `results_dir/name` for this driver and check its state against `resume`."""
        if results_dir.exists() and not results_dir.is_dir():
            raise ExperimentError(f"error: --results-dir {results_dir} is a file, not a folder (pass a folder)")
        folder = results_dir / name
        exp = cls(folder, resume)
        try:
            exp.created_folder = not folder.exists()
            folder.mkdir(parents=True, exist_ok=True)
            note = exp.lock.acquire()
        except OSError as exc:
            exp._drop_if_created()
            if exc.errno in DISK_FULL:
                raise ExperimentError(disk_full_line(folder), code=1) from None
            raise ExperimentError(f"error: cannot write in {folder} ({exc.strerror or exc}): pass a --results-dir "
                                  "you can write to") from None
        if note and out is not None:
            print(note, file=out, flush=True)
        try:
            exp._check_state()
        except BaseException:
            exp.close()
            raise
        return exp

    def _check_state(self) -> None:
        db = self.folder / STUDY_FILE
        others = [p.name for p in self.folder.iterdir() if p.name != LOCK_FILE]
        if not db.is_file():
            if others:
                raise ExperimentError(f"error: {self.folder} is not empty but holds no {STUDY_FILE} (not an "
                                      "experiment, or one whose first start failed): remove it or pass another --name")
            if self.resume:
                raise ExperimentError(f"error: {self.folder} holds no experiment to resume (drop --resume to start it)")
            return
        if not self.resume:
            raise ExperimentError(f"error: {self.folder} already exists (pass --resume to continue it, "
                                  "or another --name)")
        names = study_names(db)
        try:
            self.stored = read_experiment(self.folder)
        except ValueError as exc:
            self.stored = None
            self.stored_error = str(exc)
        wanted = self.stored.study_name if self.stored and self.stored.study_name else None
        wanted = wanted or (self.stored.name if self.stored else None)
        if len(names) == 1:
            self.study_name = names[0]
        elif wanted in names:
            self.study_name = wanted
        else:
            raise ExperimentError(f"error: {db} holds {len(names)} studies ({', '.join(names)}) and "
                                  "experiment.json names none of them (keep one experiment per folder)")

    def check_space(self, spec: SpaceSpec, force_space: bool) -> None:
        """On --resume: the space must be the one the experiment was started with (or --force-space)."""
        if not self.resume:
            return
        if self.stored is None:
            if not force_space:
                raise ExperimentError(f"{self.stored_error.rstrip(')')}; or pass --force-space to rewrite it "
                                      f"from {spec.path}; study.db and trials/ are untouched)")
            return
        if self.stored.smoke != spec.smoke:
            raise ExperimentError(f"error: {self.folder} was run {'with' if self.stored.smoke else 'without'} "
                                  "--smoke (resume it the same way)")
        new = space_identity(spec)
        old = self.stored.identity
        if old and old != new and not force_space:
            raise ExperimentError(f"error: {spec.path} is not the space {self.folder} was started with "
                                  f"({_identity_change(old, new)}): resume with the same space file "
                                  f"({self.stored.space}), or pass --force-space to continue with this one "
                                  "(the change is recorded in experiment.json)")

    # -- starting: the first writes
    def start(self, spec: SpaceSpec, name: str, num_samples: int | None, seed: int | None,
              default_num_samples: int) -> ExperimentSettings:
        """Write experiment.json (recording a forced space change) and remember the settings."""
        stored = self.stored
        identity = space_identity(spec)
        changes = list(stored.space_changes) if stored else []
        if stored and stored.identity and stored.identity != identity:
            changes.append({"at": time.strftime("%Y-%m-%d %H:%M:%S"), "space": str(spec.path),
                            "from": stored.identity, "to": identity})
        if stored is None and self.resume:
            changes.append({"at": time.strftime("%Y-%m-%d %H:%M:%S"), "space": str(spec.path),
                            "from": None, "to": identity, "note": "experiment.json rewritten (--force-space)"})
        num = num_samples or (stored.num_samples if stored else 0) or default_num_samples
        self.settings = ExperimentSettings(
            name=name, space=str(spec.path), script=str(spec.script), budget_bytes=spec.budget_bytes,
            gpus_per_trial=spec.gpus_per_trial, smoke=spec.smoke,
            fixed_env={**spec.fixed_env, **spec.smoke_env},
            defaults=dict(spec.points_to_evaluate[0]) if spec.points_to_evaluate else {},
            num_samples=num, seed=seed if seed is not None or stored is None else stored.seed,
            limits=dict(spec.limits), score_line=spec.score_line, identity=identity,
            study_name=self.study_name or name, space_changes=changes,
            fidelities=[dict(r) for r in spec.ladder.rungs] if spec.ladder is not None else [],
            resources=dict(spec.resources))
        self.ladder = spec.ladder
        self.sampler = spec.sampler
        self.write(lambda: write_experiment(self.folder, self.settings))
        return self.settings

    def open_study(self, create: bool):
        """The experiment's Optuna study: created under the settings' study name, or loaded from study.db."""
        from search.study import open_study

        assert self.settings is not None
        self.study = self.write(lambda: open_study(self.settings.study_name, storage_url(self.folder),
                                                    self.settings.seed, create=create, ladder=self.ladder,
                                                    sampler=self.sampler, limits=self.settings.limits))
        return self.study

    def write_csv(self) -> None:
        assert self.settings is not None and self.study is not None
        self.write(lambda: write_trials_csv(self.study, self.folder, self.settings.budget_bytes))

    @property
    def top_rung(self) -> int | None:
        """The ladder's top rung (whose trials are the results), None without a ladder."""
        return None if self.ladder is None else self.ladder.top

    def write(self, action):
        """Run one write to the folder; a full disk becomes one line (ExperimentError, exit 1)."""
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - a full disk is one line, anything else is a bug to see
            if is_disk_full(exc):
                raise ExperimentError(disk_full_line(self.folder), code=1) from None
            raise

    # -- closing
    def close(self) -> None:
        """Release the lock; remove the folder again when this driver made it and wrote nothing in it."""
        self.lock.release(remove=not (self.folder / STUDY_FILE).exists())
        self._drop_if_created()

    def _drop_if_created(self) -> None:
        if not self.created_folder or not self.folder.is_dir():
            return
        if all(p.name == LOCK_FILE for p in self.folder.iterdir()):
            (self.folder / LOCK_FILE).unlink(missing_ok=True)
            try:
                self.folder.rmdir()
            except OSError:
                pass

    def __enter__(self) -> "Experiment":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

