"""--warm-start: a new search imports an earlier experiment's finished trials, does not train them again,
does not count them, and marks them in trials.csv (replayed trainings of the real bench grid table)."""

from __future__ import annotations

import pytest
import json
import subprocess
import sys
from pathlib import Path

from search.store.trials_csv import read_trials_csv

ROOT = Path(__file__).resolve().parents[2]


def _run(results: Path, name: str, samples: int, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.run", "spaces/bench_grid.py", "--smoke", "--replay",
                           "bench/grid_table.csv", "--results-dir", str(results), "--name", name, "--num-samples",
                           str(samples), "--seed", "0", *extra], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_warm_started_search_imports_and_does_not_retrain(tmp_path: Path, experiment_intact,
                                                            ray_address: str) -> None:
    results = tmp_path / "results"
    old = _run(results, "old", 10, "--address", ray_address)
    assert old.returncode == 0, old.stderr[-2000:]
    old_rows = [r for r in read_trials_csv(results / "old") if r["state"] == "COMPLETE"]
    old_points = {tuple(sorted((k, v) for k, v in r.items() if k.startswith("param_"))) for r in old_rows}

    # the same seed: TPE would repeat them
    new = _run(results, "new", 5, "--warm-start", str(results / "old"), "--address", ray_address)
    assert new.returncode == 0, new.stderr[-2000:]
    assert f"warm start: {len(old_rows)} finished trial(s) imported from {results / 'old'}" in new.stdout
    assert "5 trainings in total" in new.stdout

    rows = read_trials_csv(results / "new")
    imported = [r for r in rows if r["imported_from"]]
    assert sorted(r["imported_from"] for r in imported) == sorted(f"old#{r['number']}" for r in old_rows)
    assert all(r["state"] == "COMPLETE" and r["val_bpb"] for r in imported)
    launched = [r for r in rows if not r["imported_from"] and r["state"] == "COMPLETE"]
    assert len(launched) == 5
    for r in launched:  # none of the first 5 trainings is a point already measured
        assert tuple(sorted((k, v) for k, v in r.items() if k.startswith("param_"))) not in old_points
    skipped = [r for r in rows if r["reason"] == "duplicate_of_imported"]
    assert skipped and all(r["state"] == "PRUNED" for r in skipped)

    by_number = {t.number: t for t in experiment_intact(results / "new")}
    for r in imported:  # values and the budget constraint came along, against this space's budget
        t = by_number[int(r["number"])]
        assert t.values[1] == float(r["bytes_total"]) and t.constraints["bytes_over_budget"] == float(r["constraint"])
    learner = json.loads((results / "new" / "size_learner.json").read_text())
    assert len(learner["observations"]) == len(imported) + 5  # the imported bytes taught the size learner too
    pareto = subprocess.run([sys.executable, "-m", "search.pareto", str(results / "new"), "--no-plots"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120).stdout
    assert f"note: {len(old_rows)} trial(s) imported by --warm-start are not shown" in pareto
    assert "trials " + str(len(rows) - len(imported)) + ":" in pareto


def test_warm_start_from_a_folder_that_is_no_experiment_is_one_line(tmp_path: Path) -> None:
    proc = _run(tmp_path / "results", "new", 2, "--warm-start", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no readable experiment.json" in proc.stderr
    assert not (tmp_path / "results" / "new").exists()


@pytest.mark.slow
def test_a_record_folder_is_one_point_at_the_scripts_defaults(tmp_path: Path, ray_address: str) -> None:
    """A record (submission.json and its seed logs) warm-starts a space over the script it ran: one finished
    point at the script's defaults (fake_train.py reads X with default 1.0), its seeds' mean val_bpb."""
    record = tmp_path / "2026-04-01_MyRecord"
    record.mkdir()
    (record / "submission.json").write_text(json.dumps({
        "val_bpb": 1.2, "bytes_total": 15_900_000,
        "seed_results": {"1": {"val_bpb": 1.19}, "2": {"val_bpb": 1.21}, "3": {"val_bpb": 1.20}}}))
    space = tmp_path / "space.py"
    space.write_text(
        f"SCRIPT = {str(ROOT / 'tests' / 'scripts' / 'fake_train.py')!r}\nGPUS_PER_TRIAL = 0\n"
        "FIXED_ENV = {'FAKE_STEPS': 2, 'FAKE_BYTES': 15_000_000}\n"
        "def PREDICT_BYTES(env):\n    return 15_000_000\n"
        "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 5.0)}\n")
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--results-dir", str(tmp_path / "r"),
                           "--name", "rec", "--num-samples", "2", "--seed", "0", "--warm-start", str(record),
                           "--address", ray_address],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warm start: 1 finished trial(s) imported" in proc.stdout and "2 trainings in total" in proc.stdout
    rows = read_trials_csv(tmp_path / "r" / "rec")
    (point,) = [r for r in rows if r["imported_from"]]
    assert point["imported_from"] == "record 2026-04-01_MyRecord (3 seeds)"
    assert float(point["param_X"]) == 1.0 and float(point["val_bpb"]) == 1.2 and int(point["bytes_total"]) == 15_900_000
    assert point["feasible"] == "true"

    narrow = tmp_path / "narrow.py"  # the record's configuration (X=1.0) outside the space: one line, exit 2
    narrow.write_text(space.read_text().replace("suggest_float('X', 0.0, 5.0)", "suggest_float('X', 2.0, 5.0)"))
    proc = subprocess.run([sys.executable, "-m", "search.run", str(narrow), "--results-dir", str(tmp_path / "r"),
                           "--name", "narrow", "--num-samples", "1", "--warm-start", str(record)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "default of X ('1.0') is not in the space's range" in proc.stderr
