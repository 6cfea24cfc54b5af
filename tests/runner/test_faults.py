"""Faults a long search meets: a results disk that fills up, and a training that diverges.

The full disk is a real one: a small tmpfs mounted as the results folder (needs root, as on the
CI machine; skipped with the reason elsewhere), filled while trainings run.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from search.runner.trainable import TrainingFailed, run_training

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "scripts" / "fake_train.py"


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 16 MiB tmpfs mounted at tmp_path/results, unmounted afterwards."""
    mount = tmp_path / "results"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs as a full disk needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(path: Path) -> None:
    """Write zeros to path until the disk refuses."""
    chunk = b"\0" * (1 << 16)
    with path.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


@pytest.mark.slow
def test_a_full_disk_stops_with_one_line_and_resume_continues(small_disk: Path, tmp_path: Path,
                                                              experiment_intact) -> None:
    log = tmp_path / "launches.txt"  # off the small disk
    space = tmp_path / "space.py"
    space.write_text(
        f"SCRIPT = {str(FAKE)!r}\nBUDGET_BYTES = 100_000\nGPUS_PER_TRIAL = 0\n"
        f"FIXED_ENV = {{'FAKE_LAUNCH_LOG': {str(log)!r}, 'FAKE_STEPS': 8, 'FAKE_SLEEP': 0.5}}\n"
        "def PREDICT_BYTES(env):\n    return int(5000 + 1000 * float(env['X']))\n"
        "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 5.0)}\n")
    folder = small_disk / "exp"
    cmd = [sys.executable, "-m", "search.run", str(space), "--results-dir", str(small_disk), "--name", "exp",
           "--num-samples", "5", "--max-concurrent", "2", "--num-cpus", "2", "--seed", "2"]
    driver = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    filler = small_disk / "filler"
    try:
        deadline = time.time() + 240
        while len(list(folder.glob("trials/*/metrics.json"))) < 1 or not any(
                d for d in folder.glob("trials/*") if not (d / "metrics.json").exists()):
            assert time.time() < deadline and driver.poll() is None, "the search ended before the disk filled"
            time.sleep(0.3)
        fill(filler)
        out, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    lines = [line for line in err.splitlines() if line.strip()]
    assert driver.returncode == 1, err[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: no space left on the disk of"), err[-3000:]
    assert "--resume" in lines[-1]
    finished = {d.name for d in folder.glob("trials/*") if (d / "metrics.json").is_file()}

    filler.unlink()
    proc = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = experiment_intact(folder)  # every finished training COMPLETE with its own numbers
    assert finished <= {str(t.number) for t in trials if t.state == TrialState.COMPLETE}
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5
    lines = log.read_text().split()
    assert len(lines) == len(set(lines))  # no trial folder trained twice


@pytest.mark.slow
def test_a_diverged_training_is_nan_loss_with_our_trainer(prepared_512, tmp_path: Path) -> None:
    """The trainer stops at the first non-finite train loss (exit 3, `error: non-finite train loss`),
    before any NaN reaches a log line: the runner still calls it nan_loss."""
    env = {**prepared_512.env(), "ITERATIONS": "20", "NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "2",
           "NUM_KV_HEADS": "1", "TRAIN_BATCH_TOKENS": "8192", "TRAIN_SEQ_LEN": "128", "VAL_MAX_TOKENS": "4096",
           "VAL_BATCH_SIZE": "4096", "TORCH_COMPILE": "0", "TIED_EMBED_LR": "1e30", "SCALAR_LR": "1e30"}
    with pytest.raises(TrainingFailed) as info:
        run_training(env, ROOT / "pgolf" / "train_gpt.py", tmp_path / "trial")
    assert info.value.reason == "nan_loss", info.value
    assert "non-finite train loss" in info.value.message
    assert "nan" not in (tmp_path / "trial" / "stdout.log").read_text().lower().replace("non-finite", "")
