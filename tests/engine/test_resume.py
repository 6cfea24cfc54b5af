"""--resume after the driver is SIGKILLed: nothing completed is lost or run twice."""

from __future__ import annotations

import pytest
import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from search.core.layout import storage_url
from search.store.trials_csv import read_trials_csv
from search.engine.study import count_trainings, open_study, settle_running_trials
from helpers import kill_search_when

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "scripts" / "fake_train.py"


def _complete_rows(folder: Path) -> list[dict[str, str]]:
    try:
        return [r for r in read_trials_csv(folder) if r["state"] == "COMPLETE"]
    except (OSError, KeyError):
        return []


@pytest.mark.slow
def test_sigkill_then_resume_loses_nothing_and_runs_nothing_twice(tmp_path: Path, fake_trainings_alive) -> None:
    log = tmp_path / "launches.txt"
    space = tmp_path / "slow.py"
    space.write_text(
        f"SCRIPT = {str(FAKE)!r}\nBUDGET_BYTES = 100_000\nGPUS_PER_TRIAL = 0\n"
        f"FIXED_ENV = {{'FAKE_LAUNCH_LOG': {str(log)!r}, 'FAKE_STEPS': 6, 'FAKE_SLEEP': 0.5}}\n"
        "def PREDICT_BYTES(env):\n    return int(5000 + 1000 * float(env['X']))\n"
        "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 5.0)}\n")
    results = tmp_path / "results"
    folder = results / "slow"
    cmd = [sys.executable, "-m", "search.run", str(space), "--results-dir", str(results), "--name", "slow",
           "--num-samples", "5", "--max-concurrent", "2", "--num-cpus", "2", "--seed", "7"]
    kill_search_when(cmd, ROOT, lambda: len(_complete_rows(folder)) >= 2, timeout_s=240)
    before = {r["number"]: r for r in _complete_rows(folder)}
    assert len(before) >= 2

    # The trainings die with their Ray workers: no orphan keeps running.
    for _ in range(40):
        if not fake_trainings_alive(str(tmp_path)):
            break
        time.sleep(0.5)
    assert not fake_trainings_alive(str(tmp_path))

    study = optuna.load_study(study_name="slow", storage=storage_url(folder))
    complete_before = {t.number: t.values for t in study.get_trials(states=(TrialState.COMPLETE,))}
    running_before = [t.number for t in study.get_trials(states=(TrialState.RUNNING,))]

    proc = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]

    study = optuna.load_study(study_name="slow", storage=storage_url(folder))
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    after = {r["number"]: r for r in _complete_rows(folder)}
    assert set(before) <= set(after)  # nothing completed was lost
    for number, row in before.items():
        assert after[number]["val_bpb"] == row["val_bpb"]
    assert len(after) == 5 == count_trainings(study)  # the requested number of trainings, in total
    lines = log.read_text().split()
    assert len(lines) == len(set(lines))  # no trial folder trained twice
    completed_dirs = {str(Path(r["trial_dir"])) for r in after.values()}
    assert completed_dirs <= set(lines)
    for number, values in complete_before.items():  # the study lost nothing either
        assert trials[number].state == TrialState.COMPLETE and trials[number].values == values
    # a trial caught running was either finished (recovered from its folder) or re-run with its
    # parameters; one caught before its launch (the driver died while proposing it) is not re-run
    rerun = {t.user_attrs.get("requeued_from"): t for t in trials if "requeued_from" in t.user_attrs}
    for number in running_before:
        t = trials[number]
        if t.state == TrialState.FAIL:
            assert t.user_attrs["reason"] == "interrupted"
            if t.user_attrs.get("launched"):
                assert rerun[number].params == t.params
            else:
                assert number not in rerun
        else:
            assert t.state == TrialState.COMPLETE
    assert not [t for t in trials if t.user_attrs.get("reason") == "interrupted" and t.number not in running_before]


def test_settle_recovers_finished_training_without_rerun(tmp_path: Path) -> None:
    """A training that finished while its driver died is told COMPLETE from its folder."""
    folder = tmp_path / "exp"
    folder.mkdir()
    study = open_study("exp", storage_url(folder), seed=0, create=True)
    env = {"X": "1.5"}
    finished, lost = study.ask(), study.ask()
    for trial in (finished, lost):
        trial.suggest_float("X", 0, 5)
        trial_dir = folder / "trials" / str(trial.number)
        trial_dir.mkdir(parents=True)
        trial.set_user_attr("trial_dir", str(trial_dir))
        trial.set_user_attr("env", env)
        trial.set_user_attr("launched", True)
    proposing = study.ask()  # the driver died while the space function drew its values
    proposing.suggest_float("X", 0, 5)
    done_dir = folder / "trials" / str(finished.number)
    (done_dir / "env.json").write_text(json.dumps({**env, "OUT_DIR": str(done_dir)}))
    (done_dir / "metrics.json").write_text(json.dumps({"val_bpb": 1.25, "val_loss": 0.9, "bytes_total": 900,
                                                       "bytes_code": 100, "bytes_model": 800, "steps": 4}))
    recovered, requeued = settle_running_trials(study, limits=1000)
    assert recovered == [finished.number] and requeued == [lost.number]
    got = study.trials[finished.number]
    assert got.state == TrialState.COMPLETE and got.values == [1.25, 900.0]
    assert got.constraints == {"bytes_over_budget": -100.0, "0": -100.0}  # named, and the list the dashboard reads
    assert study.trials[lost.number].state == TrialState.FAIL
    assert study.trials[proposing.number].state == TrialState.FAIL  # never launched: not queued again
    assert study.trials[proposing.number].user_attrs["reason"] == "interrupted"
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [study.trials[lost.number].params]  # rerun
    assert count_trainings(study) == 1
