"""The search with pgolf.size.SizeLearner: pruning on prediction + margin, learning from completed
trials, the learner file across --resume. Real Optuna storage, real Ray (replaying rows of
bench/grid_table.csv, real tiny trainings), the real calibrated predictor."""

from __future__ import annotations

import io
import json
from pathlib import Path


import optuna
import pytest
from ray import cloudpickle
from optuna.trial import TrialState

from pgolf.size import PRIOR_MARGIN_FRACTION, SizeLearner
from search.core.layout import storage_url
from search.core.limits import BUDGET_CONSTRAINT
from search.store.trials_csv import read_trials_csv
from search.core.layout import LEARNER_FILE
from search.engine.driver import run_search
from search.engine.options import RunOptions
from search.engine.searcher import BudgetedOptunaSearcher
from search.runner.launch import TrialLaunch
from search.engine.study import open_study
from search.space.load import load_space
from search.space.spec import SpaceError
from helpers import FAKE, small_grid, write_subspace, write_subtable


@pytest.fixture(scope="module")
def grid_sub(tmp_path_factory):
    """A sub-grid of the committed table, its rows, and a budget that about half of them fit."""
    folder = tmp_path_factory.mktemp("size_learning")
    grid = small_grid()
    rows = write_subtable(folder / "table.csv", grid)
    sizes = sorted(int(r["bytes_total"]) for r in rows)
    return folder, grid, rows, sizes[len(sizes) // 2]


def _fixed_space(path: Path, grid: dict, budget: int) -> Path:
    """A space whose every proposal is the grid's first point (the learner predicts it)."""
    write_subspace(path, {k: v[:1] for k, v in grid.items()}, budget)
    return path


def _searcher(tmp_path: Path, space: Path, learner: SizeLearner) -> BudgetedOptunaSearcher:
    spec = load_space(space, smoke=True)
    study = open_study("s", storage_url(tmp_path), seed=0, create=True)
    launch = TrialLaunch(folder=tmp_path, script=spec.script, nproc=0, prepare_data=False)
    return BudgetedOptunaSearcher(spec, study, launch, learner, max_over_budget_in_a_row=1,
                                  learner_path=tmp_path / LEARNER_FILE)


def test_prunes_on_prediction_plus_margin(grid_sub, tmp_path: Path) -> None:
    folder, grid, _, _ = grid_sub
    learner = SizeLearner(script=load_space(_fixed_space(tmp_path / "probe.py", grid, 1), smoke=True).script)
    env = load_space(tmp_path / "probe.py", smoke=True).trial_env({k: v[0] for k, v in grid.items()} |
                                                                   {"ATTN_BITS": grid["MLP_BITS"][0],
                                                                    "EMBED_BITS": grid["MLP_BITS"][0]})
    predicted = learner.predict_bytes(env)
    margin = learner.margin_bytes(predicted)
    assert margin > 0

    # under budget by less than the margin: pruned, with the margin stored and in the violation
    tight = tmp_path / "tight"
    tight.mkdir()
    searcher = _searcher(tight, _fixed_space(tight / "space.py", grid, predicted + margin // 2), learner)
    assert searcher.suggest("t0") is not None and searcher.aborted  # the only proposal was pruned
    (trial,) = searcher.study.get_trials()
    assert trial.state == TrialState.PRUNED and trial.user_attrs["reason"] == "over_budget_predicted"
    assert trial.user_attrs["predicted_bytes"] == predicted < predicted + margin // 2
    assert trial.user_attrs["margin_bytes"] == margin
    assert trial.constraints[BUDGET_CONSTRAINT] == predicted + margin - (predicted + margin // 2) > 0

    # room for the margin: launched
    roomy = tmp_path / "roomy"
    roomy.mkdir()
    searcher = _searcher(roomy, _fixed_space(roomy / "space.py", grid, predicted + margin), learner)
    config = searcher.suggest("t0")
    assert config["env"] == env and not searcher.aborted
    (trial,) = searcher.study.get_trials()
    assert trial.state == TrialState.RUNNING and trial.user_attrs["margin_bytes"] == margin

    # Tune checkpoints its search algorithm with the experiment: the searcher and its learner pickle
    again = cloudpickle.loads(cloudpickle.dumps(searcher))
    assert again.predictor.predict_bytes(env) == predicted


def test_space_param_count_and_predict_bytes_exclusive(tmp_path: Path) -> None:
    body = "def space(trial):\n    return {'X': trial.suggest_int('X', 1, 3)}\n"
    ok = tmp_path / "ok.py"
    ok.write_text("def PARAM_COUNT(env):\n    return {'a': 10 * int(env['X'])}\n" + body)
    assert load_space(ok).param_count({"X": "2"}) == {"a": 20}
    both = tmp_path / "both.py"
    both.write_text("PREDICT_BYTES = len\nPARAM_COUNT = len\n" + body)
    with pytest.raises(SpaceError, match="both PREDICT_BYTES and PARAM_COUNT"):
        load_space(both)
    bad = tmp_path / "bad.py"
    bad.write_text("PARAM_COUNT = 3\n" + body)
    with pytest.raises(SpaceError, match="PARAM_COUNT is not callable"):
        load_space(bad)


@pytest.mark.slow
def test_replay_search_learns_saves_and_resumes(grid_sub, tmp_path: Path, local_ray) -> None:
    """The real search (no PREDICT_BYTES): every completed trial is observed, the learner file is
    written, --resume reloads it, and no launched trial exceeds the budget by more than its margin."""
    folder, grid, rows, budget = grid_sub
    space = write_subspace(tmp_path / "space.py", grid, budget)
    results = tmp_path / "results"
    out = io.StringIO()
    first = run_search(RunOptions(space=space, smoke=True, name="learn", num_samples=3, seed=1,
                                  results_dir=results, replay=folder / "table.csv"), out=out)
    assert f"size margin: {PRIOR_MARGIN_FRACTION:.1%}" in out.getvalue()  # before any trial
    saved = json.loads((first.folder / LEARNER_FILE).read_text())
    complete = [r for r in read_trials_csv(first.folder) if r["state"] == "COMPLETE" and not r["duplicate_of"]]
    assert len(saved["observations"]) == len(complete) == 3
    assert sorted(o["measured"] for o in saved["observations"]) == sorted(int(float(r["bytes_total"])) for r in complete)

    second = run_search(RunOptions(space=space, smoke=True, name="learn", num_samples=5, resume=True,
                                   results_dir=results, replay=folder / "table.csv"))
    saved = json.loads((second.folder / LEARNER_FILE).read_text())
    trials = read_trials_csv(second.folder)
    complete = [r for r in trials if r["state"] == "COMPLETE" and not r["duplicate_of"]]  # trained, not told
    assert len(complete) == 5 == len(saved["observations"])  # the first run's observations were reloaded
    assert second.margin_fraction == pytest.approx(SizeLearner.load(second.folder / LEARNER_FILE).margin_fraction)
    for r in trials:
        if r["predicted_bytes"]:
            assert r["margin_bytes"] != ""
    study = optuna.load_study(study_name="learn", storage=storage_url(second.folder))
    seed_points = {str(t.number) for t in study.get_trials() if t.user_attrs.get("seed_point")}
    for r in complete:
        if r["number"] in seed_points:
            continue  # POINTS_TO_EVALUATE run even when predicted over budget (with a warning)
        assert int(float(r["bytes_total"])) - budget <= int(r["margin_bytes"])
        assert int(r["predicted_bytes"]) + int(r["margin_bytes"]) <= budget
    for t in study.get_trials(states=(TrialState.PRUNED,)):
        assert t.user_attrs["predicted_bytes"] + t.user_attrs["margin_bytes"] > budget


@pytest.mark.slow
def test_external_script_param_count_fit_prunes_after_two_trials(tmp_path: Path, local_ray) -> None:
    """A space with PARAM_COUNT for a script pgolf.size cannot build (the fake trainer, whose
    artifact is 5000 + 1000 X bytes): no pruning until two trials completed, then the fit prunes."""
    fake = FAKE
    space = tmp_path / "external.py"
    space.write_text(
        f"SCRIPT = {str(fake)!r}\nBUDGET_BYTES = 7000\nGPUS_PER_TRIAL = 0\n"
        "SAMPLER = 'tpe'\n"  # it proposes over budget once the fit can tell (the GP would not propose those)
        "FIXED_ENV = {'FAKE_STEPS': 2}\n"
        "POINTS_TO_EVALUATE = [{'X': 0.5}, {'X': 1.5}]\n"
        "def PARAM_COUNT(env):\n    return {'body': int(1000 * float(env['X']))}\n"
        "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 4.0)}\n")
    summary = run_search(RunOptions(space=space, name="ext", num_samples=6, max_concurrent=1, seed=0,
                                    results_dir=tmp_path / "results"), out=io.StringIO())
    saved = json.loads((summary.folder / LEARNER_FILE).read_text())
    assert saved["external"] and len(saved["observations"]) == 6
    study = optuna.load_study(study_name="ext", storage=storage_url(summary.folder))
    launched = sorted((t for t in study.get_trials() if t.user_attrs.get("launched")), key=lambda t: t.number)
    assert [t.user_attrs["predicted_bytes"] for t in launched[:2]] == [None, None]  # no fit yet: no pruning
    for t in launched[2:]:
        assert abs(t.user_attrs["predicted_bytes"] - t.values[1]) <= 1  # the fit is exact for this script
        assert t.values[1] <= 7000
    pruned = [t for t in study.get_trials() if t.user_attrs.get("reason") == "over_budget_predicted"]
    assert pruned and all(t.user_attrs["predicted_bytes"] + t.user_attrs["margin_bytes"] > 7000 for t in pruned)
