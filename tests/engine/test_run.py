"""search.run on a real local Ray cluster (logical GPUs) with a fast fake training script.

One module-scoped cluster (2 CPUs, 16 logical GPUs) serves every test here;
each test runs `run_search` in-process against it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.core.layout import storage_url
from search.core.limits import BUDGET_CONSTRAINT
from search.store.trials_csv import read_trials_csv
from search.engine.driver import run_search
from search.engine.options import RunError, RunOptions
from search.engine.tuning import reuse_workers
from search.space.load import load_space
from search.space.spec import SpaceError

ROOT = Path(__file__).resolve().parents[2]
# one xdist worker runs this module (its module fixture starts a Ray cluster,
# once per worker that runs any of its tests)
pytestmark = pytest.mark.xdist_group("run")
FAKE = ROOT / "tests" / "scripts" / "fake_train.py"


@pytest.fixture(scope="module")
def ray_cluster(start_cluster):
    with start_cluster(num_cpus=2, num_gpus=16):
        yield


def write_space(path: Path, body: str, **settings) -> Path:
    head = [f"SCRIPT = {str(FAKE)!r}"]
    head += [f"{key} = {value!r}" for key, value in settings.items()]
    head.append("def PREDICT_BYTES(env):\n    return int(5000 + 1000 * float(env['X']))")
    path.write_text("\n".join(head) + "\n" + body)
    return path


def load(folder: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage_url(folder))


def launches(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.slow
def test_over_budget_never_reaches_ray(ray_cluster, tmp_path: Path) -> None:
    log = tmp_path / "launches.txt"
    space = write_space(
        tmp_path / "budget.py",
        "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 5.0)}\n",
        BUDGET_BYTES=7000, GPUS_PER_TRIAL=0, FIXED_ENV={"FAKE_LAUNCH_LOG": str(log), "FAKE_STEPS": 2},
        POINTS_TO_EVALUATE=[{"X": 4.5}, {"X": 1.0}],
        SAMPLER="tpe")  # a sampler that proposes over budget (the GP proposes only what the predictor accepts)
    summary = run_search(RunOptions(space=space, name="budget", num_samples=3, seed=3,
                                    results_dir=tmp_path / "results"))
    folder = summary.folder
    study = load(folder, "budget")
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING]

    # a seed point predicted over budget still runs (the user asked for it), with a warning
    seed_big = trials[0]
    assert seed_big.params["X"] == 4.5 and seed_big.user_attrs["launched"]
    assert seed_big.user_attrs["predicted_bytes"] > 7000 and "over budget" in seed_big.user_attrs["warning"]
    assert seed_big.state == TrialState.COMPLETE and seed_big.constraints[BUDGET_CONSTRAINT] > 0

    pruned = [t for t in trials if t.user_attrs.get("reason") == "over_budget_predicted"]
    assert pruned, "the sampler proposed nothing over budget: pick another seed"
    for t in pruned:
        predicted = t.user_attrs["predicted_bytes"]
        assert t.state == TrialState.PRUNED and not t.user_attrs.get("seed_point")
        assert predicted > 7000
        assert t.constraints[BUDGET_CONSTRAINT] == predicted - 7000  # the violation Optuna learns from
        assert "trial_dir" not in t.user_attrs
        assert not (folder / "trials" / str(t.number)).exists()  # never launched

    launched = [t for t in trials if t.user_attrs.get("launched")]
    assert len(launched) == 3 == len(launches(log)) == summary.launched
    for t in launched[1:]:
        assert t.user_attrs["predicted_bytes"] <= 7000
        assert t.state == TrialState.COMPLETE
        assert t.constraints[BUDGET_CONSTRAINT] == t.values[1] - 7000  # measured bytes

    rows = {int(r["number"]): r for r in read_trials_csv(folder)}
    assert set(rows) == {t.number for t in trials}
    for t in pruned:
        assert rows[t.number]["state"] == "PRUNED" and rows[t.number]["feasible"] == "false"
        assert float(rows[t.number]["constraint"]) > 0
    assert rows[seed_big.number]["feasible"] == "false" and rows[seed_big.number]["reason"] == "over_budget"
    for t in launched[1:]:
        row = rows[t.number]
        assert row["state"] == "COMPLETE" and row["feasible"] == "true"
        assert all(math.isfinite(float(row[k])) for k in ("val_bpb", "val_loss", "bytes_total", "train_seconds"))
        assert Path(row["log_path"]).is_file()


@pytest.mark.slow
def test_crash_and_nan_fail_and_search_goes_on(ray_cluster, tmp_path: Path) -> None:
    body = (
        "def space(trial):\n"
        "    mode = trial.suggest_categorical('MODE', ['ok', 'crash', 'nan', 'big', 'hang'])\n"
        "    return {'X': trial.suggest_float('X', 0.0, 2.0), 'FAKE_CRASH': mode == 'crash',\n"
        "            'FAKE_NAN': mode == 'nan', 'FAKE_BYTES': 150_000 if mode == 'big' else 7000,\n"
        "            'FAKE_SLEEP': 60 if mode == 'hang' else 0.05}\n")
    space = write_space(tmp_path / "crashy.py", body, BUDGET_BYTES=100_000, GPUS_PER_TRIAL=0,
                        TRIAL_TIMEOUT_SECONDS=8,
                        POINTS_TO_EVALUATE=[{"MODE": "crash", "X": 1.0}, {"MODE": "nan", "X": 1.0},
                                            {"MODE": "ok", "X": 1.0}, {"MODE": "big", "X": 1.0},
                                            {"MODE": "hang", "X": 1.0}])
    summary = run_search(RunOptions(space=space, name="crashy", num_samples=5, seed=0,
                                    results_dir=tmp_path / "results"))
    study = load(summary.folder, "crashy")
    by_mode = {t.params["MODE"]: t for t in study.get_trials()}
    assert by_mode["crash"].state == TrialState.FAIL
    assert by_mode["crash"].user_attrs["reason"] == "crashed"
    assert "fake crash" in by_mode["crash"].user_attrs["log_tail"]
    assert by_mode["nan"].state == TrialState.FAIL
    assert by_mode["nan"].user_attrs["reason"] == "nan_loss"
    assert "train_loss:nan" in by_mode["nan"].user_attrs["log_tail"]
    assert by_mode["hang"].state == TrialState.FAIL and by_mode["hang"].user_attrs["reason"] == "timeout"
    assert by_mode["ok"].state == TrialState.COMPLETE  # the search went on
    big = by_mode["big"]  # predicted within budget, measured over it: complete but infeasible
    assert big.state == TrialState.COMPLETE and big.values[1] == 150_000
    assert big.constraints["bytes_over_budget"] == 150_000 - 100_000
    assert not study.get_trials(states=(TrialState.RUNNING,))
    rows = {r["param_MODE"]: r for r in read_trials_csv(summary.folder)}
    assert rows["crash"]["reason"] == "crashed" and rows["crash"]["val_bpb"] == ""
    assert rows["nan"]["reason"] == "nan_loss" and rows["hang"]["reason"] == "timeout"
    assert rows["big"]["feasible"] == "false" and rows["ok"]["feasible"] == "true"


@pytest.mark.slow
def test_logical_gpus_two_trials_disjoint_devices(ray_cluster, tmp_path: Path) -> None:
    space = write_space(tmp_path / "gpus.py", "def space(trial):\n    return {'X': trial.suggest_float('X', 0, 2)}\n",
                        BUDGET_BYTES=100_000, GPUS_PER_TRIAL=8, CPUS_PER_TRIAL=1,
                        FIXED_ENV={"FAKE_STEPS": 8, "FAKE_SLEEP": 0.5},
                        POINTS_TO_EVALUATE=[{"X": 1.0}, {"X": 2.0}])
    summary = run_search(RunOptions(space=space, name="gpus", num_samples=2, results_dir=tmp_path / "results"))
    assert summary.counts["complete"] == 2
    devices, spans = [], []
    for trial_dir in sorted((summary.folder / "trials").iterdir()):
        ranks = [json.loads((trial_dir / f"rank{r}.json").read_text()) for r in range(8)]  # torchrun, 8 procs
        visible = {r["CUDA_VISIBLE_DEVICES"] for r in ranks}
        assert len(visible) == 1  # every process of a trial sees the trial's GPUs
        ids = set(visible.pop().split(","))
        assert len(ids) == 8
        devices.append(ids)
        spans.append((ranks[0]["start"], ranks[0]["stop"]))
        assert json.loads((trial_dir / "env.json").read_text())["CUDA_VISIBLE_DEVICES"]
    assert devices[0].isdisjoint(devices[1])
    assert max(s for s, _ in spans) < min(e for _, e in spans)  # both trainings ran at once
    rows = read_trials_csv(summary.folder)
    assert all(float(r["gpu_seconds"]) > 0 for r in rows)


@pytest.mark.slow
def test_early_stopped_trial_is_pruned(ray_cluster, tmp_path: Path) -> None:
    space = write_space(tmp_path / "asha.py", "def space(trial):\n    return {'X': trial.suggest_float('X', 0, 5)}\n",
                        BUDGET_BYTES=100_000, GPUS_PER_TRIAL=0, FIXED_ENV={"FAKE_STEPS": 12, "FAKE_SLEEP": 0.4},
                        EARLY_STOPPING={"grace_period": 1, "reduction_factor": 2},
                        POINTS_TO_EVALUATE=[{"X": 3.0}, {"X": 0.0}])
    # a worker per trial: Tune kills a stopped trial's worker, and its training with it (a reused one would
    # keep training until its next validation line, minutes away on a real training)
    assert reuse_workers(load_space(space)) is False
    assert reuse_workers(load_space(write_space(tmp_path / "plain.py", "def space(trial):\n    return {}\n",
                                                BUDGET_BYTES=100_000, GPUS_PER_TRIAL=0))) is True
    summary = run_search(RunOptions(space=space, name="asha", num_samples=2, max_concurrent=1,
                                    results_dir=tmp_path / "results"))
    study = load(summary.folder, "asha")
    good, bad = sorted(study.get_trials(), key=lambda t: t.number)
    assert good.state == TrialState.COMPLETE
    assert bad.state == TrialState.PRUNED  # never COMPLETE with a partial result
    assert bad.user_attrs["reason"] == "early_stopped"
    assert bad.user_attrs["steps"] < 12
    bad_dir = Path(bad.user_attrs["trial_dir"])
    time.sleep(12 * 0.4)  # long enough for the whole training, had it survived the stop
    assert not (bad_dir / "metrics.json").exists()
    assert not (bad_dir / "rank0.json").exists()  # the training process was killed with its trial
    row = {r["number"]: r for r in read_trials_csv(summary.folder)}[str(bad.number)]
    assert row["state"] == "PRUNED" and row["reason"] == "early_stopped"


@pytest.mark.slow
def test_space_almost_entirely_over_budget_stops_with_one_line(ray_cluster, tmp_path: Path) -> None:
    space = write_space(tmp_path / "huge.py", "def space(trial):\n    return {'X': trial.suggest_float('X', 10, 20)}\n",
                        BUDGET_BYTES=7000, GPUS_PER_TRIAL=0)
    with pytest.raises(RunError) as info:
        run_search(RunOptions(space=space, name="huge", num_samples=2, results_dir=tmp_path / "results",
                              max_over_budget_in_a_row=20))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"error: {space}: ")
    assert "20 proposals in a row" in message and "almost entirely over budget" in message
    study = load(tmp_path / "results" / "huge", "huge")
    assert len(study.trials) == 20 and all(t.state == TrialState.PRUNED for t in study.trials)
    assert not (tmp_path / "results" / "huge" / "trials").exists()


def test_space_function_error_stops_with_one_line(ray_cluster, tmp_path: Path) -> None:
    always = write_space(tmp_path / "always.py", "def space(trial):\n    return {'X': 1 / 0}\n",
                         BUDGET_BYTES=7000, GPUS_PER_TRIAL=0)
    with pytest.raises(SpaceError, match=r"space\(trial\) raised ZeroDivisionError"):  # before Ray: nothing written
        run_search(RunOptions(space=always, name="always", num_samples=1, results_dir=tmp_path / "results"))
    assert not (tmp_path / "results").exists()
    # fine at the low end of its range (the check before launch), failing on real proposals
    space = write_space(tmp_path / "oops.py", "def space(trial):\n    x = trial.suggest_float('X', 0.0, 1.0)\n"
                        "    return {'X': 1 / (x - x) if x > 0 else x}\n", BUDGET_BYTES=7000, GPUS_PER_TRIAL=0)
    with pytest.raises(RunError, match=r"space\(trial\) raised ZeroDivisionError"):
        run_search(RunOptions(space=space, name="oops", num_samples=1, results_dir=tmp_path / "results"))
    study = load(tmp_path / "results" / "oops", "oops")
    assert not study.get_trials(states=(TrialState.RUNNING,))
