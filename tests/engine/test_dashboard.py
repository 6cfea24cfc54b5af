"""optuna-dashboard sees the byte budget: every trial's constraints reach its serializer (it reads only the
older `constraints` list attribute; Optuna 5's `set_constraint` alone writes `constraints:<name>`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

serializer = pytest.importorskip("optuna_dashboard._serializer",
                                 reason="optuna-dashboard is not installed (pip install -e '.[dev]')")

ROOT = Path(__file__).resolve().parents[2]


def _serialized(study: optuna.Study) -> list[dict]:
    frozen = study._storage.get_all_trials(study._study_id)
    system = study._storage.get_study_system_attrs(study._study_id)
    return [serializer.serialize_frozen_trial(study._study_id, t, system) for t in frozen]


def test_set_constraint_alone_is_invisible_to_the_dashboard() -> None:
    """The failure this guards against, on Optuna's own API: the dashboard sees no constraint."""
    study = optuna.create_study(directions=["minimize", "minimize"])
    trial = study.ask()
    trial.set_constraint("bytes_over_budget", 1234.0)
    study.tell(trial, [3.0, 1.0])
    assert study.trials[0].constraints == {"bytes_over_budget": 1234.0}
    assert _serialized(study)[0]["constraints"] == []


@pytest.mark.slow
def test_a_search_study_shows_each_trials_constraint_in_the_dashboard(tmp_path: Path, ray_address: str) -> None:
    space = tmp_path / "space.py"
    space.write_text(
        f"SCRIPT = {str(ROOT / 'tests' / 'scripts' / 'fake_train.py')!r}\nBUDGET_BYTES = 7_500\nGPUS_PER_TRIAL = 0\n"
        "SAMPLER = 'tpe'\n"  # it proposes over budget, so the dashboard has pruned trials to show
        "FIXED_ENV = {'FAKE_STEPS': 2}\n"
        "LIMITS = {'bytes_total': 7_500, 'train_seconds': 3600}\n"
        "def PREDICT_BYTES(env):\n    return 5000 if float(env['X']) < 4.5 else 10_000\n"
        "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 5.0)}\n")
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--results-dir", str(tmp_path / "r"),
                           "--name", "dash", "--num-samples", "12", "--seed", "1", "--address", ray_address], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = optuna.load_study(study_name="dash", storage=f"sqlite:///{tmp_path / 'r' / 'dash' / 'study.db'}")
    by_number = {t.number: t for t in study.trials}
    shown = _serialized(study)
    infeasible = 0
    for s in shown:
        t = by_number[s["number"]]
        named = {k: v for k, v in t.constraints.items() if not k.isdigit()}
        assert named, f"trial {t.number} has no constraint"
        assert s["constraints"] == [named[k] for k in sorted(named)]  # the budget and the time limit, in order
        assert s["constraints"][0] == named["bytes_over_budget"]
        infeasible += t.state.name == "COMPLETE" and named["bytes_over_budget"] > 0
    assert infeasible >= 1, "the predictor misses, so some trainings are measured over the budget"
    assert any(t.state.name == "PRUNED" and t.constraints["bytes_over_budget"] > 0 for t in study.trials)


@pytest.mark.slow
def test_a_smoke_study_shows_its_budget_in_the_dashboard(tmp_path: Path, ray_address: str) -> None:
    """A --smoke search of the bench grid (trainings replayed from its table of real ones): every trial the
    dashboard serializes carries the constraint the study holds, pruned ones over the budget included."""
    grid = ROOT / "spaces" / "bench_grid.py"
    space = tmp_path / "grid_tpe.py"  # TPE proposes over budget: pruned trials for the dashboard to show
    space.write_text(f"exec(compile(open({str(grid)!r}).read(), {str(grid)!r}, 'exec'))\nSAMPLER = 'tpe'\n")
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--smoke", "--replay",
                           "bench/grid_table.csv", "--results-dir", str(tmp_path), "--name", "smoke",
                           "--num-samples", "12", "--seed", "1", "--address", ray_address], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{tmp_path / 'smoke' / 'study.db'}")
    by_number = {t.number: t for t in study.trials}
    shown = _serialized(study)
    assert len(shown) == len(by_number) >= 12
    for s in shown:
        assert s["constraints"] == [by_number[s["number"]].constraints["bytes_over_budget"]]
    assert any(s["constraints"][0] > 0 for s in shown) and any(s["constraints"][0] <= 0 for s in shown)
