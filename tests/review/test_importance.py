"""search.pareto's parameter importance on a real study: the parameter that drives both objectives comes
first, one the trainer's score ignores comes last; too few trials give the reason instead."""

from __future__ import annotations

import pytest
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _search(tmp_path: Path, samples: int, address: str) -> Path:
    space = tmp_path / "space.py"
    space.write_text(  # the fake trainer's val_bpb and bytes follow X; FAKE_SLEEP only changes its speed
        f"SCRIPT = {str(ROOT / 'tests' / 'scripts' / 'fake_train.py')!r}\nBUDGET_BYTES = 20_000\nGPUS_PER_TRIAL = 0\n"
        "FIXED_ENV = {'FAKE_STEPS': 2}\n"
        "def PREDICT_BYTES(env):\n    return 5000\n"
        "def space(trial):\n"
        "    return {'X': trial.suggest_float('X', 0.0, 5.0),\n"
        "            'FAKE_SLEEP': trial.suggest_categorical('FAKE_SLEEP', [0.0, 0.01, 0.02])}\n")
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--results-dir", str(tmp_path / "r"),
                           "--name", "imp", "--num-samples", str(samples), "--seed", "2", "--address", address],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return tmp_path / "r" / "imp"


@pytest.mark.slow
def test_importance_ranks_the_parameter_that_matters_first(tmp_path: Path, ray_address: str) -> None:
    folder = _search(tmp_path, 16, ray_address)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "search.pareto", str(folder), "--no-plots"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert "parameter importance (PED-ANOVA" in out and "16 complete trials" in out
    assert "optuna.importance" in _imported(proc.stderr)
    data = json.loads(subprocess.run([sys.executable, "-m", "search.pareto", str(folder), "--format", "json"],
                                     cwd=ROOT, capture_output=True, text=True, timeout=120).stdout)
    imp = data["importance"]["imp"]
    for objective in ("val_bpb", "bytes_total"):
        scores = imp["by_objective"][objective]
        assert set(scores) == {"X", "FAKE_SLEEP"}
        assert scores["X"] > 0.8 > scores["FAKE_SLEEP"], scores
        assert f"  {objective}: X " in out
    assert "Parameter importance, imp" in (folder / "pareto.html").read_text()


@pytest.mark.slow
def test_too_few_trials_say_so(tmp_path: Path, ray_address: str) -> None:
    folder = _search(tmp_path, 4, ray_address)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "search.pareto", str(folder), "--no-plots"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "parameter importance: needs at least 10 complete trials, has 4" in proc.stdout
    # nor imported: optuna.importance brings scikit-learn where it is installed, ~1 CPU-s of a 2 s report
    assert not {"optuna.importance", "sklearn"} & _imported(proc.stderr)


def _imported(importtime: str) -> set[str]:
    """The modules a `python -X importtime` run imported, from what it wrote to stderr."""
    return {line.rsplit("|", 1)[1].strip() for line in importtime.splitlines() if line.startswith("import time:")}
