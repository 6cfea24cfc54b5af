"""bench/search_efficiency.py on a small sub-table of the committed grid (few seeds, few trainings)."""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import search_efficiency as eff  # noqa: E402
from helpers import small_grid, write_subspace, write_subtable  # noqa: E402


LONG_TABLE = ROOT / "bench" / "grid_table_long.csv"


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """18 configurations at both fidelities: bench/grid_table_long.csv (100 steps) the full one,
    bench/grid_table.csv (20 steps) rung 0."""
    folder = tmp_path_factory.mktemp("eff")
    grid = small_grid()
    rows = write_subtable(folder / "table.csv", grid, LONG_TABLE)
    write_subtable(folder / "low.csv", grid)
    budget = int(statistics.median(int(r["bytes_total"]) for r in rows))
    space = write_subspace(folder / "space.py", grid, budget, predict_from_table=folder / "table.csv")
    return eff.make_problem(space, folder / "table.csv", None, folder / "low.csv")


def test_training_every_feasible_configuration_reaches_ratio_one(problem) -> None:
    feasible = [(float(r["val_bpb"]), int(r["bytes_total"])) for r in problem.table.rows.values()
                if problem.feasible(r["bytes_total"])]
    run = eff.Run("all", 0)
    for point in sorted(feasible, reverse=True):
        run.record(point, 1.0, problem)
    ratios = run.ratios(problem, len(feasible))
    assert ratios[-1] == pytest.approx(1.0)
    assert all(b >= a for a, b in zip(ratios, ratios[1:]))
    assert eff.trainings_to(ratios, 1.0) <= len(feasible)
    assert eff.trainings_to([0.0] * 3, 0.5) == math.inf
    assert run.cost_to(problem, 1.0) == eff.trainings_to(ratios, 1.0)  # every training cost one unit


def test_costs_count_steps_or_the_tables_measured_seconds(problem) -> None:
    env = eff._env_of(problem.spec, problem.spec.points_to_evaluate[0])
    assert problem.cost(env) == 1.0 and problem.cost(env, 0) == pytest.approx(20 / 100)
    with_eval = dataclasses.replace(problem, overhead=0.5)  # e.g. 5 minutes of evaluation after 10 of training
    assert with_eval.cost(env) == 1.0 and with_eval.cost(env, 0) == pytest.approx((0.2 + 0.5) / 1.5)
    full, low = problem.table.lookup(env), problem.low.lookup(env)
    unit = statistics.median(float(r["wall_seconds"]) for r in problem.table.rows.values())
    walled = dataclasses.replace(problem, cost_column="wall_seconds", unit_seconds=unit)
    assert walled.cost(env) == pytest.approx(full["wall_seconds"] / unit)
    assert walled.cost(env, 0) == pytest.approx(low["wall_seconds"] / unit)
    ladder = problem.ladder()
    assert ladder.rungs == ({"ITERATIONS": "20", "WARMDOWN_ITERS": "6"}, {"ITERATIONS": "100", "WARMDOWN_ITERS": "30"})


@pytest.mark.slow
@pytest.mark.parametrize("method", eff.METHODS)
def test_each_method_runs_and_is_reproducible(problem, method) -> None:
    if method in eff.PEERS:
        import peers

        if peers.missing(method):
            pytest.skip(f"{method}: {peers.missing(method)}")
    choices = eff._grid_choices(problem.spec)
    n = 8 if method == "ax" else 12  # Ax proposes in seconds each (Sobol for 5, then BoTorch)
    a = eff.run_method(method, problem, 1, n, choices)
    b = eff.run_method(method, problem, 1, n, choices)
    assert a.trainings == b.trainings and a.log == b.log
    # each run stops once it has spent its budget, or when it has nothing left to propose (ours on this
    # 18-configuration table: every feasible configuration trained)
    assert n <= a.spent() < n + 3 or len(a.log) < n or "the space is exhausted" in a.stopped
    assert all(0.0 <= r <= 1.0 + 1e-9 for r in a.cost_curve(problem)[1])
    baseline = problem.measure(eff._env_of(problem.spec, problem.spec.points_to_evaluate[0]))
    if method not in eff.MULTI_FIDELITY and (problem.feasible(baseline[1]) or method != "ours"):
        assert a.trainings[0] == baseline  # everyone starts from the baseline (a ladder trains it at rung 0 first)
    if method.startswith("ours"):  # exact predictor here: pre-launch pruning leaves no infeasible training
        # (a ladder's predictor is the full table's: bytes drift with training length, so a rung-0 training
        # may measure over the budget; it is then never promoted)
        assert sum(1 for _, result, bad in a.log if bad and result is not None) == 0
        if method not in eff.MULTI_FIDELITY:
            assert a.infeasible(len(a.log), problem) == 0
    if method in eff.MULTI_FIDELITY:  # some trainings at the cheap rung, which are not results
        assert len(a.trainings) < len(a.log)
    assert a.searcher_seconds > 0 or method == "greedy"  # greedy is a loop of a few lines: not timed


def test_ladder_promotes_only_feasible_rung0_trainings(problem) -> None:
    run = eff.run_method("ours-ladder", problem, 3, 12, {})
    low_points = {(float(r["val_bpb"]), int(r["bytes_total"])) for r in problem.low.rows.values()}
    cheap = [p for _, p, _ in run.log if p is None]
    assert cheap and len(run.trainings) >= 1  # it trained at both rungs
    assert all(point not in low_points for point in run.trainings)  # results come from the full table


def test_main_writes_markdown_and_plot(problem, tmp_path: Path, capsys) -> None:
    methods = "ours,ours-ladder,random,greedy,syne-moasha"
    argv = ["--table", str(problem.table.path), "--low-table", str(problem.low.path), "--space",
            str(problem.spec.path), "--seeds", "2", "--trainings", "8", "--methods", methods, "--out", str(tmp_path)]
    assert eff.main(argv) == 0
    printed = capsys.readouterr().out
    md = (tmp_path / "search_efficiency.md").read_text()
    import peers

    for method in methods.split(","):
        if method in eff.PEERS and peers.missing(method):
            assert f"{method} (not installed" in printed
            continue
        assert f"| {method} |" in printed and f"| {method} |" in md
    assert "| ours-ladder | two rungs |" in md and "cost to 0.9" in md
    assert (tmp_path / "search_efficiency.png").stat().st_size > 0


def test_single_fidelity_skips_the_ladder_methods(problem, tmp_path: Path, capsys) -> None:
    argv = ["--table", str(problem.table.path), "--low-table", "none", "--space", str(problem.spec.path),
            "--seeds", "1", "--trainings", "4", "--methods", "ours,ours-ladder", "--out", str(tmp_path)]
    assert eff.main(argv) == 0
    printed = capsys.readouterr().out
    assert "skipped: ours-ladder (needs --low-table)" in printed and "| ours | full |" in printed
