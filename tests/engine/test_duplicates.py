"""No training twice: a proposal repeating a configuration trained (or training) at its rung is told that
training's result, recorded as its duplicate and costs nothing; ALLOW_REPEATS trains it again."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.core.layout import storage_url
from search.store.trials_csv import read_trials_csv
from search.engine.searcher import BudgetedOptunaSearcher
from search.runner.launch import TrialLaunch
from search.space.load import load_space
from search.engine.study import count_trainings, open_study

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "scripts" / "fake_train.py"


def _space(path: Path, log: Path, extra: str = "") -> Path:
    path.write_text(
        f"SCRIPT = {str(FAKE)!r}\nBUDGET_BYTES = 100_000\nGPUS_PER_TRIAL = 0\nSAMPLER = 'tpe'\n"
        f"FIXED_ENV = {{'FAKE_LAUNCH_LOG': {str(log)!r}, 'FAKE_STEPS': 3, 'FAKE_SLEEP': 0.4}}\n"
        "def PREDICT_BYTES(env):\n    return int(5000 + 1000 * float(env['X']))\n"
        # the space proposes X=2 twice and X=1 twice before its sampler draws
        "POINTS_TO_EVALUATE = [{'X': 2.0}, {'X': 2.0}, {'X': 1.0}, {'X': 1.0}]\n"
        "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 5.0)}\n" + extra)
    return path


def _search(space: Path, results: Path, name: str, samples: int, address: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "search.run", str(space), "--results-dir", str(results), "--name", name,
           "--num-samples", str(samples), "--max-concurrent", "2", "--address", address, "--seed", "3"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_repeated_proposal_is_told_the_trained_result_and_costs_nothing(tmp_path: Path, ray_address: str) -> None:
    log = tmp_path / "launches.txt"
    results = tmp_path / "results"
    proc = _search(_space(tmp_path / "rep.py", log), results, "rep", 4, ray_address)
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = results / "rep"
    rows = {int(r["number"]): r for r in read_trials_csv(folder)}
    launched = log.read_text().split()
    assert len(launched) == 4 == len(set(launched))  # four trainings, none twice
    study = optuna.load_study(study_name="rep", storage=storage_url(folder))
    assert count_trainings(study) == 4
    trials = study.get_trials()
    twos = [t for t in trials if t.params.get("X") == 2.0]
    ones = [t for t in trials if t.params.get("X") == 1.0]
    for same in (twos, ones):
        trained = [t for t in same if t.user_attrs.get("launched")]
        repeats = [t for t in same if "duplicate_of" in t.user_attrs]
        assert len(trained) == 1 and len(repeats) == 1  # proposed twice, trained once
        original, repeat = trained[0], repeats[0]
        assert repeat.user_attrs["duplicate_of"] == original.number
        assert repeat.state == TrialState.COMPLETE and repeat.values == original.values
        assert repeat.constraints == original.constraints
        row = rows[repeat.number]
        assert row["duplicate_of"] == str(original.number) and row["trial_dir"] == ""
        assert row["wall_seconds"] == "" and row["gpu_seconds"] == ""  # no cost of its own
        assert not (folder / "trials" / str(repeat.number)).exists()
    # X=2's repeat was asked while X=2 was training (two at once): it waited for that result
    assert "repeats: 2 proposal(s) this run repeated a configuration trained already" in proc.stdout
    assert "4 trainings in total" in proc.stdout and "used by 4 training(s)" in proc.stdout
    report = subprocess.run([sys.executable, "-m", "search.pareto", str(folder), "--no-plots"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    assert "2 proposal(s) repeated a configuration trained already" in report.stdout + report.stderr


@pytest.mark.slow
def test_allow_repeats_trains_a_repeated_configuration_again(tmp_path: Path, ray_address: str) -> None:
    log = tmp_path / "launches.txt"
    results = tmp_path / "results"
    proc = _search(_space(tmp_path / "again.py", log, "ALLOW_REPEATS = True\n"), results, "again", 2, ray_address)
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = optuna.load_study(study_name="again", storage=storage_url(results / "again"))
    trained = [t for t in study.get_trials() if t.user_attrs.get("launched")]
    assert [t.params["X"] for t in trained] == [2.0, 2.0]  # deliberate replicates
    assert len(log.read_text().split()) == 2 and "repeats:" not in proc.stdout


class _Stuck(optuna.samplers.BaseSampler):
    """A sampler that only ever proposes X = 1."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return 1.0


def test_a_sampler_stuck_on_one_configuration_stops_with_one_line(tmp_path: Path) -> None:
    spec = load_space(_space(tmp_path / "stuck.py", tmp_path / "log.txt", "POINTS_TO_EVALUATE = []\n"))
    study = open_study("stuck", None, 0, create=True, sampler="tpe")  # type: ignore[arg-type]
    study.sampler = _Stuck()
    searcher = BudgetedOptunaSearcher(spec, study, TrialLaunch(folder=tmp_path, script=spec.script, nproc=0,
                                                               prepare_data=False), spec.predict_bytes)
    assert isinstance(searcher.suggest("a"), dict)  # X=1 launches
    searcher.on_trial_complete("a", {"training_done": True, "val_bpb": 1.5, "bytes_total": 6000})
    assert searcher.suggest("b") == "FINISHED"
    assert searcher.aborted.startswith(f"error: {spec.path}: 200 proposals in a row were configurations trained")
    assert "ALLOW_REPEATS = True" in searcher.aborted
    repeats = [t for t in study.get_trials() if "duplicate_of" in t.user_attrs]
    assert len(repeats) == 200 and all(t.values == [1.5, 6000.0] for t in repeats)
    assert count_trainings(study) == 1 and searcher.duplicates == 200


@pytest.mark.parametrize("value", ["gpp", 1])
def test_an_unknown_sampler_is_one_line(tmp_path: Path, value) -> None:
    from search.space.spec import SpaceError

    path = tmp_path / "bad.py"
    path.write_text(f"SAMPLER = {value!r}\ndef space(trial):\n    return {{}}\n")
    with pytest.raises(SpaceError, match=r"SAMPLER=.* is not a sampler of this search \(use 'gp' or 'tpe'\)"):
        load_space(path)
