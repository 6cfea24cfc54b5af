"""bench/search_efficiency.py on a small sub-table of the committed grid (few seeds, few trainings)."""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

import search_efficiency as eff  # noqa: E402
from test_replay import small_grid, write_subspace, write_subtable  # noqa: E402


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eff")
    grid = small_grid()
    rows = write_subtable(folder / "table.csv", grid)
    budget = int(statistics.median(int(r["bytes_total"]) for r in rows))
    space = write_subspace(folder / "space.py", grid, budget, predict_from_table=folder / "table.csv")
    return eff.make_problem(space, folder / "table.csv", None)


def test_training_every_feasible_configuration_reaches_ratio_one(problem) -> None:
    feasible = [(float(r["val_bpb"]), int(r["bytes_total"])) for r in problem.table.rows.values()
                if problem.feasible(r["bytes_total"])]
    run = eff.Run("all", 0, trainings=sorted(feasible, reverse=True))
    ratios = run.ratios(problem, len(feasible))
    assert ratios[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(ratios, ratios[1:]))
    assert eff.trainings_to(ratios, 1.0) <= len(feasible)
    assert eff.trainings_to([0.0] * 3, 0.5) == math.inf


@pytest.mark.parametrize("method", eff.METHODS)
def test_each_method_runs_and_is_reproducible(problem, method) -> None:
    choices = eff._grid_choices(problem.spec)
    n = 12
    a = eff.run_method(method, problem, 1, n, choices)
    b = eff.run_method(method, problem, 1, n, choices)
    assert a.trainings == b.trainings
    assert 1 <= len(a.trainings) <= n
    assert all(0.0 <= r <= 1.0 + 1e-9 for r in a.ratios(problem, n))
    baseline = problem.measure(eff._env_of(problem.spec, problem.spec.points_to_evaluate[0]))
    if problem.feasible(baseline[1]) or method != "ours":
        assert a.trainings[0] == baseline  # everyone starts from the baseline
    if method.startswith("ours"):  # exact predictor here: pre-launch pruning leaves no infeasible training
        assert a.infeasible(n, problem) == 0


def test_main_writes_markdown_and_plot(problem, tmp_path: Path, capsys) -> None:
    argv = ["--table", str(problem.table.path), "--space", str(problem.spec.path), "--seeds", "2",
            "--trainings", "8", "--out", str(tmp_path)]
    assert eff.main(argv) == 0
    printed = capsys.readouterr().out
    md = (tmp_path / "search_efficiency.md").read_text()
    for method in eff.METHODS:
        assert f"| {method} |" in printed and f"| {method} |" in md
    assert (tmp_path / "search_efficiency.png").stat().st_size > 0
