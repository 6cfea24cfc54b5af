"""One driver per experiment, resumes that check what they continue, and Ctrl-C.

Real drivers (`python -m search.run` processes) on real local Ray clusters, with the fast fake
training script; after each fault the experiment is checked whole (`check_experiment_intact`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from search.store.lock import DriverLock, ExperimentError
from search.engine.study import count_trainings

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "scripts" / "fake_train.py"


def hold_flag(space: Path) -> Path:
    """The file beside a `slow_space` whose presence pauses every one of its trainings (FAKE_HOLD)."""
    return space.parent / "hold.flag"


def slow_space(path: Path, log: Path, steps: int = 6, sleep: float = 0.5, extra: str = "") -> Path:
    """A space of the fake script whose trainings wait while `hold_flag(path)` exists."""
    path.write_text(
        f"SCRIPT = {str(FAKE)!r}\nBUDGET_BYTES = 100_000\nGPUS_PER_TRIAL = 0\n"
        f"FIXED_ENV = {{'FAKE_LAUNCH_LOG': {str(log)!r}, 'FAKE_STEPS': {steps}, 'FAKE_SLEEP': {sleep}, "
        f"'FAKE_HOLD': {str(hold_flag(path))!r}}}\n"
        "def PREDICT_BYTES(env):\n    return int(5000 + 1000 * float(env['X']))\n"
        "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 5.0)}\n" + extra)
    return path


def command(space: Path, results: Path, name: str, *extra: str, samples: int = 4, address: str | None = None
            ) -> list[str]:
    """A driver of its own 2-CPU cluster, or joining the one at `address`."""
    cluster = ["--address", address] if address else ["--num-cpus", "2"]
    return [sys.executable, "-m", "search.run", str(space), "--results-dir", str(results), "--name", name,
            "--num-samples", str(samples), "--max-concurrent", "2", *cluster, "--seed", "3", *extra]


def wait_for(predicate, timeout: float = 240, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        assert proc is None or proc.poll() is None, "the driver ended too early"
        time.sleep(0.3)


def running_trials(folder: Path) -> int:
    """Trial folders whose training has started and not finished."""
    return sum(1 for d in (folder / "trials").glob("*") if (d / "stdout.log").is_file()
               and not (d / "metrics.json").is_file())


def finished_trials(folder: Path) -> int:
    return len(list((folder / "trials").glob("*/metrics.json")))


def launches(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def driver_mid_search(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path, Path, Path]:
    """A `search.run` driver of 4 slow trainings (experiment `exp`), returned once one training has
    finished and another is running, and held there however slow the machine: its trainings wait until the
    caller removes `hold_flag(space)`. Returns (driver, launch log, space file, results dir, experiment folder)."""
    log = tmp_path / "launches.txt"
    space = slow_space(tmp_path / "slow.py", log)
    results, folder = tmp_path / "results", tmp_path / "results" / "exp"
    driver = subprocess.Popen(command(space, results, "exp"), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: finished_trials(folder) >= 1 and running_trials(folder) >= 1, proc=driver)
    except BaseException:
        driver.kill()
        raise
    hold_flag(space).touch()
    return driver, log, space, results, folder


@pytest.mark.slow
def test_a_second_driver_is_refused_and_the_first_loses_nothing(tmp_path: Path, experiment_intact) -> None:
    first, log, space, results, folder = driver_mid_search(tmp_path)
    try:
        for extra in (["--resume"], []):
            second = subprocess.run(command(space, results, "exp", *extra), cwd=ROOT, capture_output=True,
                                    text=True, timeout=120)
            lines = second.stderr.strip().splitlines()
            assert second.returncode == 1 and len(lines) == 1, second.stderr
            assert "in use by another driver" in lines[0] and f"pid {first.pid}" in lines[0]
            assert socket.gethostname() in lines[0]
        assert first.poll() is None   # still mid-search: the refusals came from the lock, not a finished run
        hold_flag(space).unlink()
        out, err = first.communicate(timeout=300)
    finally:
        hold_flag(space).unlink(missing_ok=True)   # on a failed check too: no training left waiting on it
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err[-2000:]
    trials = experiment_intact(folder)
    assert not [t for t in trials if t.state == TrialState.FAIL]  # no finished training recorded FAIL
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 4
    assert len(launches(log)) == len(set(launches(log))) == 4   # none run twice
    assert json.loads((folder / "driver.lock").read_text() or "{}") == {}  # released


def test_a_dead_drivers_lock_is_taken_over_another_hosts_is_reported(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = DriverLock(tmp_path)
    (tmp_path / "driver.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid,
                                                      "since": "earlier"}))
    note = lock.acquire()
    assert note and f"pid {dead.pid}" in note and "gone" in note
    assert json.loads((tmp_path / "driver.lock").read_text())["pid"] == os.getpid()
    lock.release()

    (tmp_path / "driver.lock").write_text(json.dumps({"host": "gpu-node-7", "pid": 4242, "since": "earlier"}))
    with pytest.raises(ExperimentError) as info:
        DriverLock(tmp_path).acquire()
    message = str(info.value)
    assert info.value.code == 1 and "another host" in message and "gpu-node-7" in message
    assert f"delete {tmp_path / 'driver.lock'}" in message and "\n" not in message

    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # a live process on this host that holds no flock (e.g. another mount of the folder): refused too
        (tmp_path / "driver.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": alive.pid}))
        with pytest.raises(ExperimentError):
            DriverLock(tmp_path).acquire()
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.slow
def test_force_space_and_a_copied_folder_resume(tmp_path: Path, experiment_intact, ray_address: str) -> None:
    log = tmp_path / "launches.txt"
    space = slow_space(tmp_path / "space.py", log, steps=2, sleep=0.05)
    results = tmp_path / "results"
    done = subprocess.run(command(space, results, "first", samples=2, address=ray_address), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    # copied and renamed: resumes under its new name, its study found in its own study.db
    shutil.copytree(results / "first", results / "copy")
    proc = subprocess.run(command(space, results, "copy", "--resume", samples=3, address=ray_address), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = experiment_intact(results / "copy")
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 3
    settings = json.loads((results / "copy" / "experiment.json").read_text())
    assert settings["name"] == "copy" and settings["study_name"] == "first"

    # a changed space, deliberately: continues, and the change is on record
    changed = slow_space(tmp_path / "changed.py", log, steps=2, sleep=0.05, extra="BUDGET_BYTES = 90_000\n")
    proc = subprocess.run(command(changed, results, "copy", "--resume", samples=4), cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--force-space" in proc.stderr
    proc = subprocess.run(command(changed, results, "copy", "--resume", "--force-space", samples=4,
                                  address=ray_address), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    settings = json.loads((results / "copy" / "experiment.json").read_text())
    assert settings["budget_bytes"] == 90_000 and settings["space"] == str(changed)
    [change] = settings["space_changes"]
    assert change["from"]["budget_bytes"] == 100_000 and change["to"]["budget_bytes"] == 90_000
    experiment_intact(results / "copy")
    # the original folder is untouched by what its copy did
    assert sum(t.state == TrialState.COMPLETE for t in experiment_intact(results / "first")) == 2


@pytest.mark.slow
def test_ctrl_c_exits_130_and_resume_finishes(tmp_path: Path, experiment_intact, fake_trainings_alive) -> None:
    driver, _, space, results, folder = driver_mid_search(tmp_path)
    try:
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=120)
    finally:
        hold_flag(space).unlink()   # the resume below trains
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted:") and "--resume" in lines[0], err[-3000:]
    trials = experiment_intact(folder)
    interrupted = [t for t in trials if t.user_attrs.get("reason") == "interrupted"]
    assert interrupted and all(t.state == TrialState.FAIL for t in interrupted)
    assert json.loads((folder / "driver.lock").read_text() or "{}") == {}
    wait_for(lambda: not fake_trainings_alive(str(tmp_path)), timeout=30)

    proc = subprocess.run(command(space, results, "exp", "--resume"), cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = experiment_intact(folder)
    import optuna

    from search.core.layout import storage_url

    study = optuna.load_study(study_name="exp", storage=storage_url(folder))
    assert count_trainings(study) == 4
    requeued = {t.user_attrs["requeued_from"] for t in trials if "requeued_from" in t.user_attrs}
    assert {t.number for t in interrupted if t.user_attrs.get("launched")} <= requeued


def test_a_swallowed_ctrl_c_still_stops_tune_through_the_flag() -> None:
    """search.run's SIGINT handler sets `searcher.interrupted` before raising: where a library swallows the
    KeyboardInterrupt, StopAll still stops every trial and search.run raises it again after fit."""
    from types import SimpleNamespace

    from search.engine.tuning import StopAll

    searcher = SimpleNamespace(urgent=False, interrupted=False)
    stopper = StopAll(searcher)
    assert not stopper.stop_all() and not stopper("t", {})
    searcher.interrupted = True
    assert stopper.stop_all() and stopper("t", {})
