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

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

from search.core.errors import DISK_FULL, disk_full_line, is_disk_full
from search.core.layout import LOCK_FILE, STUDY_FILE, storage_url
from search.space.spec import SpaceSpec
from search.store.lock import DriverLock, ExperimentError
from search.store.settings import ExperimentSettings, read_experiment, write_experiment
from search.store.trials_csv import write_trials_csv


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
        self.ladder = None  # the space's fidelity ladder (search.space.ladder), set by start()

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
        self.write(lambda: write_experiment(self.folder, self.settings))
        return self.settings

    @property
    def storage(self) -> str:
        """The Optuna storage URL of the experiment's study."""
        return storage_url(self.folder)

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

