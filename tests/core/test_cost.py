"""Cost on every screen: device hours used and saved (search.core.cost), in a real --smoke search's progress and
summary, and hypervolume against cumulative hours in search.pareto."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from search.core.cost import Device, hours_text, trials_cost
from search.store.trials_csv import read_trials_csv

ROOT = Path(__file__).resolve().parents[2]


def _trial(state: TrialState, **attrs) -> optuna.trial.FrozenTrial:
    values = [3.0, 100.0] if state == TrialState.COMPLETE else None
    return create_trial(state=state, values=values, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                        user_attrs=attrs)


def test_hours_used_and_saved_on_gpus_and_cpus() -> None:
    trials = [
        _trial(TrialState.COMPLETE, gpu_seconds=8 * 600.0, wall_seconds=600.0),
        _trial(TrialState.COMPLETE, gpu_seconds=8 * 900.0, wall_seconds=900.0),
        _trial(TrialState.COMPLETE, gpu_seconds=8 * 1500.0, wall_seconds=1500.0),
        _trial(TrialState.FAIL, reason="nan_loss"),  # no time known: not counted
        _trial(TrialState.PRUNED, reason="over_budget_predicted"),
        _trial(TrialState.PRUNED, reason="over_budget_predicted"),
        _trial(TrialState.PRUNED, reason="early_stopped", gpu_seconds=8 * 300.0),  # ran, then stopped: counted
    ]
    gpu = trials_cost(trials, Device(gpus=8, cpus=8), price=3.0)
    assert gpu.used_hours == pytest.approx(8 * (600 + 900 + 1500 + 300) / 3600)
    assert gpu.median_hours == pytest.approx(8 * 900 / 3600) and gpu.pruned_before_launch == 2
    assert gpu.saved_hours == pytest.approx(2 * 8 * 900 / 3600)
    assert gpu.trainings == 4
    assert gpu.short() == "7.33 GPU-h used ($22.00), 4.00 GPU-h saved ($12.00)"
    assert "GPU-hours used" in gpu.line() and "by pruning 2 proposal(s) before launch at $3 per GPU-hour" in gpu.line()

    cpu = trials_cost(trials, Device(gpus=0, cpus=2))  # a smoke run: wall time x CPUs
    assert cpu.used_hours == pytest.approx(2 * (600 + 900 + 1500) / 3600)
    assert cpu.line().startswith("cost: 1.67 CPU-hours (no GPUs")
    assert [hours_text(h) for h in (1234.5, 12.345, 0.15, 0.00853)] == ["1,234", "12.35", "0.15", "0.00853"]


@pytest.mark.slow
def test_a_smoke_search_shows_cost_and_pareto_hypervolume_against_cost(smoke_search, tmp_path: Path) -> None:
    """The session's real --smoke search (at $3 per CPU-hour): its progress, its summary, then search.pareto on
    a copy of its folder (the report writes pareto.html and .png there)."""
    progress = [line for line in smoke_search.stdout.splitlines() if line.startswith("[")]
    assert progress and all(re.search(r"\| \S+ CPU-h used \(\$\S+\), \S+ CPU-h saved", p) for p in progress)
    summary = next(line for line in smoke_search.stdout.splitlines() if line.startswith("cost: "))
    assert "CPU-hours (no GPUs: a --smoke or CPU run) used" in summary
    results = tmp_path / "results"
    shutil.copytree(smoke_search.folder, results / "smoke")

    rows = read_trials_csv(results / "smoke")
    walls = [float(r["wall_seconds"]) for r in rows if r["state"] == "COMPLETE"]
    pruned = sum(r["reason"] == "over_budget_predicted" for r in rows)
    used, median = sum(walls) / 3600, statistics.median(walls) / 3600
    assert f"cost: {hours_text(used)} CPU-hours" in summary
    assert f"median {hours_text(median)} h each; {hours_text(pruned * median)} saved" in summary
    assert f"by pruning {pruned} proposal(s) before launch at $3 per CPU-hour" in summary

    report = subprocess.run([sys.executable, "-m", "search.pareto", str(results / "smoke"), "--format", "csv"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    table = list(csv.DictReader(io.StringIO(report.stdout)))
    by_number = sorted(table, key=lambda r: int(r["trial"]))
    cumulative = [float(r["cumulative_hours"]) for r in by_number]
    assert cumulative == sorted(cumulative) and cumulative[-1] == pytest.approx(used)
    text = subprocess.run([sys.executable, "-m", "search.pareto", str(results / "smoke")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120).stdout
    assert f"cost: {hours_text(used)} CPU-h over {len(walls)} training(s); 90 % of the final hypervolume after" in text
    data = json.loads(subprocess.run([sys.executable, "-m", "search.pareto", str(results / "smoke"), "--format",
                                      "json"], cwd=ROOT, capture_output=True, text=True, timeout=120).stdout)
    assert data["cost_unit"] == "CPU-h" and data["hours"] == pytest.approx(used)
    assert [h["cumulative_hours"] for h in data["history"]] == pytest.approx(cumulative)
    html = (results / "smoke" / "pareto.html").read_text()
    assert "Hypervolume against cost" in html and (results / "smoke" / "pareto.png").stat().st_size > 0
