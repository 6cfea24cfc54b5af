"""search.runner.replay: table lookups of real trained rows, and a replay search through real Ray + Optuna.

The tables here are rows of bench/grid_table.csv (real tiny trainings of
spaces/bench_grid.py), restricted to a small sub-grid so that the searches
are quick.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from helpers import grid_module, small_grid, write_subspace, write_subtable
from search.runner.replay import PARAM_PREFIX, ReplayError, ReplayTable, make_replay_trainable, replay_metrics, table_predictor
from search.store.trials_csv import row_params
from search.space.load import load_space

ROOT = Path(__file__).resolve().parents[2]
@pytest.fixture(scope="module")
def sub(tmp_path_factory):
    folder = tmp_path_factory.mktemp("replay")
    grid = small_grid()
    rows = write_subtable(folder / "table.csv", grid)
    assert len(rows) == len(list(_product(grid))), "bench/grid_table.csv lacks rows of the sub-grid"
    budget = int(statistics.median(int(r["bytes_total"]) for r in rows))
    return folder, grid, rows, budget


def _product(grid):
    import itertools
    return itertools.product(*grid.values())


def _env(spec, params):
    import optuna
    study = optuna.create_study()
    study.enqueue_trial(params)
    trial = study.ask()
    return spec.trial_env(spec.space(trial))


def test_lookup_returns_each_rows_recorded_metrics(sub) -> None:
    folder, grid, rows, budget = sub
    spec = load_space(write_subspace(folder / "space.py", grid, budget), smoke=True)
    table = ReplayTable.load(folder / "table.csv")
    assert len(table) == len(rows)
    for row in rows:
        params = {k: type(grid[k][0])(float(row[PARAM_PREFIX + k])) for k in grid}
        intermediate, final = replay_metrics(table, _env(spec, params))
        assert final["training_done"] is True
        assert final["bytes_total"] == int(row["bytes_total"])
        assert final["val_bpb"] == pytest.approx(float(row["val_bpb"]), rel=0, abs=0)
        assert intermediate["val_bpb"] == float(row["val_bpb_prequant"])
        assert intermediate["step"] == int(row["steps"])


def test_missing_configuration_and_bad_tables_are_one_line_errors(sub, tmp_path: Path) -> None:
    folder, grid, rows, budget = sub
    table = ReplayTable.load(folder / "table.csv")
    env = row_params(rows[0])
    absent = dict(env, NUM_LAYERS=str(max(grid_module().GRID["NUM_LAYERS"]) + 7))
    with pytest.raises(ReplayError, match="has no row for") as err:
        table.lookup(absent)
    assert "\n" not in str(err.value)
    with pytest.raises(ReplayError, match="has no NUM_LAYERS"):
        table.lookup({k: v for k, v in env.items() if k != "NUM_LAYERS"})
    with pytest.raises(ReplayError, match="not found"):
        ReplayTable.load(tmp_path / "nope.csv")
    (tmp_path / "noparams.csv").write_text("val_bpb,bytes_total\n3.1,1000\n")
    with pytest.raises(ReplayError, match="no param_<NAME> columns"):
        ReplayTable.load(tmp_path / "noparams.csv")
    (tmp_path / "nobytes.csv").write_text("param_X,val_bpb\n1,3.1\n")
    with pytest.raises(ReplayError, match="lacks column bytes_total"):
        ReplayTable.load(tmp_path / "nobytes.csv")
    with pytest.raises(ReplayError):
        make_replay_trainable(tmp_path / "nope.csv")


def test_table_predictor_is_the_tables_bytes(sub) -> None:
    folder, grid, rows, budget = sub
    predict = table_predictor(folder / "table.csv")
    for row in rows[:3]:
        env = row_params(row)
        assert predict(env) == int(row["bytes_total"])


@pytest.mark.slow
def test_replay_search_through_ray_and_optuna_writes_the_tables_values(sub, tmp_path: Path, local_ray) -> None:
    """search.run --replay: real Ray Tune + Optuna study, the trainable looks rows up."""
    from search.store.trials_csv import read_trials_csv
    from search.engine.driver import run_search
    from search.engine.options import RunOptions

    folder, grid, rows, budget = sub
    space = write_subspace(tmp_path / "space.py", grid, budget, predict_from_table=folder / "table.csv")
    summary = run_search(RunOptions(space=space, smoke=True, name="replay", num_samples=5, seed=0,
                                    results_dir=tmp_path / "results", replay=folder / "table.csv"))
    assert summary.launched == 5
    by_params = {tuple(float(r[PARAM_PREFIX + k]) for k in grid): r for r in rows}
    trials = read_trials_csv(summary.folder)
    complete = [t for t in trials if t["state"] == "COMPLETE" and not t["duplicate_of"]]  # trained, not told
    assert len(complete) == 5
    for t in complete:
        row = by_params[tuple(float(t[PARAM_PREFIX + k]) for k in grid)]
        assert float(t["val_bpb"]) == float(row["val_bpb"])
        assert int(float(t["bytes_total"])) == int(row["bytes_total"])
        assert json.loads((Path(t["trial_dir"]) / "metrics.json").read_text())["bytes_total"] == \
            int(row["bytes_total"])
    # Pre-launch pruning ran on the table's bytes: nothing over budget was replayed.
    assert all(int(float(t["bytes_total"])) <= budget for t in complete)
    pruned = [t for t in trials if t["state"] == "PRUNED"]
    assert all(t["reason"] == "over_budget_predicted" for t in pruned)
