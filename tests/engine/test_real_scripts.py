"""Competition-style scripts as trials (tests/scripts/upstream_style.py: no metrics.json, writes its
model file into its working directory), on a real local Ray cluster: isolation, limits, failures."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search.review.analysis import analyse, load_experiment
from search.core.layout import storage_url
from search.store.trials_csv import read_trials_csv
from search.engine.cli import main
from search.engine.driver import run_search
from search.engine.options import RunError, RunOptions

ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / "tests" / "scripts" / "upstream_style.py"
pytestmark = pytest.mark.xdist_group("real_scripts")  # one xdist worker, so the module's cluster starts once


@pytest.fixture(scope="module")
def cluster(start_cluster):
    with start_cluster(num_cpus=3, num_gpus=4):
        yield


def space_file(path: Path, body: str = "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 5.0)}\n",
               **settings) -> Path:
    lines = [f"SCRIPT = {str(UPSTREAM)!r}", "GPUS_PER_TRIAL = 0", "PREDICT_BYTES = lambda env: 9009"]
    lines += [f"{k} = {v!r}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n" + body)
    return path


def study_of(folder: Path) -> optuna.Study:
    return optuna.load_study(study_name=folder.name, storage=storage_url(folder))


@pytest.mark.slow
def test_concurrent_trials_each_score_their_own_model(cluster, tmp_path: Path) -> None:
    """Three trials at once, each writing final_model.int8.ptz where it runs and reading it back after
    a pause: with a shared working directory they would read each other's files."""
    points = [{"X": 1.0}, {"X": 2.0}, {"X": 2.5}]
    space = space_file(tmp_path / "iso.py", POINTS_TO_EVALUATE=points, FIXED_ENV={"ROUNDTRIP_PAUSE": 5.0})
    summary = run_search(RunOptions(space=space, name="iso", num_samples=3, max_concurrent=3,
                                    results_dir=tmp_path / "results"))
    trials = study_of(summary.folder).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for t in trials:
        assert t.values[0] == pytest.approx((t.params["X"] - 3.0) ** 2 + 1.0)  # its own model's score
        trial_dir = Path(t.user_attrs["trial_dir"])
        assert (trial_dir / "final_model.int8.ptz").is_file()  # the script's files stay with the trial
        assert list((trial_dir / "logs").glob("*.txt"))
    assert not (Path.cwd() / "final_model.int8.ptz").exists()
    stops = [json.loads((Path(t.user_attrs["trial_dir"]) / "metrics.json").read_text()) for t in trials]
    assert all(m["source"] == "log" and m["eval_seconds"] == 1.0 for m in stops)


def test_relative_paths_mean_the_launch_folder(cluster, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "data" / "datasets" / "fineweb10B_sp1024").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    space = space_file(tmp_path / "rel.py", POINTS_TO_EVALUATE=[{"X": 1.0}],
                       FIXED_ENV={"DATA_PATH": "./data/datasets/fineweb10B_sp1024", "REQUIRE_DATA": 1})
    summary = run_search(RunOptions(space=space, name="rel", num_samples=1, results_dir=Path("results")))
    (trial,) = study_of(summary.folder).get_trials()
    assert trial.state == TrialState.COMPLETE  # the script, running in its trial folder, found ./data
    env = json.loads((Path(trial.user_attrs["trial_dir"]) / "env.json").read_text())
    assert env["DATA_PATH"] == str(tmp_path / "data" / "datasets" / "fineweb10B_sp1024")


def test_over_eval_limit_is_infeasible_and_off_the_front(cluster, tmp_path: Path) -> None:
    body = ("def space(trial):\n    x = trial.suggest_float('X', 0.0, 5.0)\n"
            "    return {'X': x, 'EVAL_MS': 9000 if x == 3.0 else 1000}\n")
    space = space_file(tmp_path / "lim.py", body, POINTS_TO_EVALUATE=[{"X": 3.0}, {"X": 1.0}],
                       LIMITS={"bytes_total": 100_000, "train_seconds": 600, "eval_seconds": 5})
    summary = run_search(RunOptions(space=space, name="lim", num_samples=2, results_dir=tmp_path / "results"))
    best, ok = study_of(summary.folder).get_trials()
    assert best.state == TrialState.COMPLETE and best.values[0] == 1.0  # the best score, but 9 s to evaluate
    assert best.user_attrs["reason"] == "over_eval_seconds"
    assert best.constraints["eval_seconds_over_limit"] == pytest.approx(4.0)
    assert best.constraints["train_seconds_over_limit"] < 0
    rows = {r["number"]: r for r in read_trials_csv(summary.folder)}
    assert rows["0"]["feasible"] == "false" and rows["0"]["eval_seconds"] == "9.0"
    assert rows["1"]["feasible"] == "true" and rows["1"]["reason"] == ""
    report = analyse([load_experiment(summary.folder)])
    assert [t.number for t in report.front] == [1]
    assert {t.number: t.status for t in report.trials}[0] == "infeasible"


@pytest.mark.slow
def test_two_rank_failure_root_cause_reaches_trials_csv(cluster, tmp_path: Path) -> None:
    space = space_file(tmp_path / "boom.py", GPUS_PER_TRIAL=2, POINTS_TO_EVALUATE=[{"X": 1.0}],
                       FIXED_ENV={"FAIL_WITH": "CUDA out of memory in rank code"}, MAX_SAME_FAILURES=0)
    summary = run_search(RunOptions(space=space, name="boom", num_samples=1, results_dir=tmp_path / "results"))
    (row,) = read_trials_csv(summary.folder)
    assert row["state"] == "FAIL" and row["reason"] == "crashed"
    assert row["message"].startswith("RuntimeError: CUDA out of memory in rank code")
    failure = json.loads((Path(row["trial_dir"]) / "failure.json").read_text())
    assert failure["message"] == row["message"]
    assert "ChildFailedError" in (Path(row["trial_dir"]) / "stdout.log").read_text()  # torchrun's summary was there


@pytest.mark.slow
def test_missing_data_fails_before_launch_and_same_failures_stop(cluster, tmp_path: Path, capsys) -> None:
    space = space_file(tmp_path / "nodata.py", body=(
        "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 5.0), 'VOCAB_SIZE': 4096}\n"),
        FIXED_ENV={"DATA_PATH": str(tmp_path / "data/datasets/fineweb10B_sp{VOCAB_SIZE}")})
    with pytest.raises(RunError) as info:
        run_search(RunOptions(space=space, name="nodata", num_samples=4, results_dir=tmp_path / "results"))
    message = str(info.value)
    assert "\n" not in message and message.startswith("error: search stopped: 3 trials in a row")
    assert "python -m pgolf.data prepare --vocab 4096" in message and "--resume" in message
    folder = tmp_path / "results" / "nodata"
    trials = study_of(folder).get_trials()
    assert len(trials) == 3 and all(t.state == TrialState.FAIL for t in trials)
    assert all(t.user_attrs["reason"] == "missing_data" and not t.user_attrs.get("launched") for t in trials)
    assert not (folder / "trials").exists()  # nothing was launched: no GPU time spent
    # once the data is there, --resume goes on and runs the trainings asked for
    (tmp_path / "data/datasets/fineweb10B_sp4096").mkdir(parents=True)
    summary = run_search(RunOptions(space=space, name="nodata", num_samples=2, resume=True,
                                    results_dir=tmp_path / "results"))
    assert summary.counts["complete"] == 2


@pytest.mark.slow
def test_identical_crashes_stop_the_search(cluster, tmp_path: Path) -> None:
    space = space_file(tmp_path / "crash.py", FIXED_ENV={"FAIL_WITH": "bad config"})
    with pytest.raises(RunError, match=r"3 trials in a row \(0, 1, 2\) failed with: RuntimeError: bad config"):
        run_search(RunOptions(space=space, name="crash", num_samples=6, max_concurrent=1,
                              results_dir=tmp_path / "results"))
    assert len(study_of(tmp_path / "results" / "crash").get_trials()) == 3


def test_a_failed_start_leaves_nothing(cluster, tmp_path: Path, capsys) -> None:
    space = space_file(tmp_path / "big.py", CPUS_PER_TRIAL=64)
    results = tmp_path / "results"
    code = main([str(space), "--name", "big", "--results-dir", str(results)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "CPUS_PER_TRIAL" in err
    assert not (results / "big").exists()
