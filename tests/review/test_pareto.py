"""search.front and python -m search.pareto against brute-force references.

The experiments here are synthetic trials.csv files (random points plus
infeasible, pruned and failed rows) in the documented schema; the front and
hypervolume are checked against O(n^2) / grid computations written
independently of search.core.front.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from search import pareto
from search.core import front
from search.review.analysis import analyse, load_experiment

BUDGET = 16_000_000
COLUMNS = [
    "number", "state", "feasible", "reason", "val_bpb", "val_loss", "bytes_total", "bytes_code",
    "bytes_model", "predicted_bytes", "constraint", "steps", "train_seconds", "gpu_seconds",
    "log_path", "trial_dir", "param_NUM_LAYERS", "param_MODEL_DIM", "param_MATRIX_LR",
]
DEFAULTS = {"NUM_LAYERS": 9, "MODEL_DIM": 512, "MATRIX_LR": 0.04}


def _write_experiment(folder: Path, name: str, seed: int, n: int = 60, budget: int = BUDGET) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for number in range(n):
        layers, dim, lr = rng.choice([7, 9, 11]), rng.choice([384, 512, 640]), rng.choice([0.02, 0.04, 0.06])
        kind = rng.random()
        row = {c: "" for c in COLUMNS}
        row.update(number=number, param_NUM_LAYERS=layers, param_MODEL_DIM=dim, param_MATRIX_LR=lr,
                   trial_dir=f"trials/{number}")
        bpb = round(rng.uniform(1.1, 1.6), 3)  # rounded so that ties and duplicates occur
        size = rng.choice([rng.randint(5, 20) * 1_000_000, rng.randint(5_000_000, 20_000_000)])
        if kind < 0.12:
            row.update(state="PRUNED", feasible="false", reason="over_budget_predicted", predicted_bytes=budget + 1000)
        elif kind < 0.2:
            row.update(state="PRUNED", feasible="true", reason="early_stopped", val_bpb=bpb + 0.2, bytes_total=size)
        elif kind < 0.27:
            row.update(state="FAIL", reason="crashed")
        else:
            row.update(state="COMPLETE", feasible=str(size <= budget).lower(), val_bpb=bpb,
                       val_loss=round(bpb * 1.7, 4), bytes_total=size)
        rows.append(row)
    folder.mkdir(parents=True)
    with (folder / "trials.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    meta = {"name": name, "space": "spaces/x.py", "script": "pgolf/train_gpt.py", "budget_bytes": budget,
            "gpus_per_trial": 0, "smoke": True, "fixed_env": {}, "defaults": DEFAULTS,
            "objectives": ["val_bpb", "bytes_total"]}
    (folder / "experiment.json").write_text(json.dumps(meta))
    return rows


def _brute_front(rows: list[tuple[str, dict]], budget: int) -> set[str]:
    """Labels of complete, feasible rows that no other such row dominates (O(n^2))."""
    pts = [(label, float(r["val_bpb"]), int(r["bytes_total"])) for label, r in rows
           if r["state"] == "COMPLETE" and int(r["bytes_total"]) <= budget]
    out = set()
    for label, b, s in pts:
        if not any((b2 <= b and s2 <= s and (b2 < b or s2 < s)) for _, b2, s2 in pts):
            out.add(label)
    return out


def _grid_hypervolume(points: list[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Exact dominated area by summing grid cells between all distinct coordinates."""
    xs = sorted({p[0] for p in points if p[0] < ref[0]} | {ref[0]})
    ys = sorted({p[1] for p in points if p[1] < ref[1]} | {ref[1]})
    area = 0.0
    for i in range(len(xs) - 1):
        for j in range(len(ys) - 1):
            if any(p[0] <= xs[i] and p[1] <= ys[j] for p in points):
                area += (xs[i + 1] - xs[i]) * (ys[j + 1] - ys[j])
    return area


def _printed_front(text: str) -> list[tuple[int, str, float, int]]:
    """(rank, trial, val_bpb, bytes) parsed from the text table's rows."""
    rows = []
    for line in text.splitlines()[2:]:
        if not line.strip():
            break
        parts = line.split()
        rows.append((int(parts[0]), parts[1], float(parts[2]), int(parts[3].replace(",", ""))))
    return rows


@pytest.fixture(scope="module")
def experiments(tmp_path_factory) -> dict[str, tuple[Path, list[dict]]]:
    base = tmp_path_factory.mktemp("results")
    return {name: (base / name, _write_experiment(base / name, name, seed))
            for name, seed in (("alpha", 1), ("beta", 2), ("gamma", 3))}


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = pareto.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("name", ["alpha", "beta", "gamma"])
def test_printed_front_equals_brute_force(capsys, experiments, name):
    folder, rows = experiments[name]
    code, out, _ = _run(capsys, str(folder), "--no-plots")
    assert code == 0
    printed = _printed_front(out)
    expected = _brute_front([(f"#{r['number']}", r) for r in rows], BUDGET)
    assert {label for _, label, _, _ in printed} == expected
    assert [rank for rank, *_ in printed] == list(range(1, len(printed) + 1))
    assert [bpb for _, _, bpb, _ in printed] == sorted(bpb for _, _, bpb, _ in printed)
    assert all(size <= BUDGET for *_, size in printed)
    infeasible = [r for r in rows if r["state"] == "COMPLETE" and int(r["bytes_total"]) > BUDGET]
    assert infeasible, "the synthetic data must contain infeasible trials"
    assert f"infeasible {len(infeasible)}" in out


def test_counts_and_hypervolume_match_references(experiments):
    folder, rows = experiments["alpha"]
    report = analyse([load_experiment(folder)])
    states = [r["state"] for r in rows]
    assert report.counts["pruned"] == states.count("PRUNED")
    assert report.counts["failed"] == states.count("FAIL")
    assert report.counts["complete"] == states.count("COMPLETE")
    assert report.counts["front"] + report.counts["dominated"] + report.counts["infeasible"] == report.counts["complete"]
    feasible = [(float(r["val_bpb"]), int(r["bytes_total"]) / 1e6) for r in rows
                if r["state"] == "COMPLETE" and int(r["bytes_total"]) <= BUDGET]
    ref = (max(p[0] for p in feasible), BUDGET / 1e6)
    assert report.reference == (ref[0], float(BUDGET))
    assert report.hypervolume == pytest.approx(_grid_hypervolume(feasible, ref), rel=1e-9)
    history = [t.hypervolume_after for t in report.trials]
    assert history == sorted(history), "hypervolume never shrinks as trials are added"
    assert [t.number for t in report.trials] == sorted(int(r["number"]) for r in rows)


def test_merged_experiments_form_one_front(capsys, experiments, tmp_path):
    (a, rows_a), (b, rows_b) = experiments["alpha"], experiments["beta"]
    code, out, _ = _run(capsys, str(a), str(b), "--format", "json", "--out", str(tmp_path / "merged"))
    assert code == 0
    data = json.loads(out)
    labelled = [(f"alpha#{r['number']}", r) for r in rows_a] + [(f"beta#{r['number']}", r) for r in rows_b]
    assert {t["label"] for t in data["front"]} == _brute_front(labelled, BUDGET)
    assert data["counts"]["trials"] == len(rows_a) + len(rows_b)
    assert len(data["history"]) == len(rows_a) + len(rows_b)
    assert data["history"][-1]["hypervolume"] == pytest.approx(data["hypervolume"])
    assert (tmp_path / "merged" / "pareto.png").stat().st_size > 0
    assert "Plotly" in (tmp_path / "merged" / "pareto.html").read_text()[:5_000_000]


def test_budget_override_and_formats_agree(capsys, experiments):
    folder, rows = experiments["gamma"]
    full = analyse([load_experiment(folder)]).front
    budget = max(t.bytes_total for t in full) - 1  # drops at least the largest point on the full front
    fronts = {}
    for fmt in ("text", "csv", "json", "markdown"):
        code, out, _ = _run(capsys, str(folder), "--budget", str(budget), "--format", fmt, "--no-plots")
        assert code == 0
        if fmt == "text":
            fronts[fmt] = {label for _, label, _, _ in _printed_front(out)}
        elif fmt == "csv":
            fronts[fmt] = {f"#{r['trial']}" for r in csv.DictReader(out.splitlines()) if r["status"] == "front"}
        elif fmt == "json":
            fronts[fmt] = {t["label"] for t in json.loads(out)["front"]}
        else:
            fronts[fmt] = {line.split("|")[2].strip() for line in out.splitlines() if line.startswith("| ") and "#" in line}
    expected = _brute_front([(f"#{r['number']}", r) for r in rows], budget)
    assert all(f == expected for f in fronts.values()), fronts
    assert expected != _brute_front([(f"#{r['number']}", r) for r in rows], BUDGET)


def test_changed_parameters_are_those_off_the_defaults(experiments):
    folder, rows = experiments["beta"]
    report = analyse([load_experiment(folder)])
    by_number = {int(r["number"]): r for r in rows}
    for t in report.front:
        row = by_number[t.number]
        expected = {k for k, v in DEFAULTS.items() if float(row[f"param_{k}"]) != float(v)}
        assert set(t.changed) == expected


def test_front_functions_on_ties_and_duplicates():
    pts = [(1.0, 5.0), (1.0, 5.0), (2.0, 4.0), (2.0, 6.0), (3.0, 1.0), (1.0, 7.0), (float("nan"), 0.0)]
    assert front.non_dominated(pts) == [0, 1, 2, 4]
    assert front.hypervolume(pts[:6], (4.0, 8.0)) == pytest.approx(_grid_hypervolume(pts[:6], (4.0, 8.0)))
    assert front.hypervolume([(5.0, 1.0)], (4.0, 8.0)) == 0.0
    assert front.hypervolume_history([None, (3.0, 1.0), None, (1.0, 5.0)], (4.0, 8.0)) == [0.0, 7.0, 7.0, 13.0]


def test_bad_input_is_one_line_naming_the_fix(capsys, tmp_path):
    code, out, err = _run(capsys, str(tmp_path / "nope"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "nope" in err and "experiment folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, str(tmp_path / "empty"))
    assert code == 2 and "trials.csv" in err and "search.run" in err


@pytest.mark.slow
def test_cli_writes_plots(experiments, tmp_path):
    folder, _ = experiments["alpha"]
    proc = subprocess.run([sys.executable, "-m", "search.pareto", str(folder), "--out", str(tmp_path),
                           "--format", "markdown"], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("**Pareto front**")
    png, html = tmp_path / "pareto.png", tmp_path / "pareto.html"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = html.read_text()
    report = analyse([load_experiment(folder)])
    assert all(t.label in text for t in report.front)
    assert "NUM_LAYERS" in text, "hover text lists each point's parameters"


def test_no_feasible_trial_gives_an_empty_front_and_strict_json(capsys, experiments):
    folder, rows = experiments["alpha"]
    smallest = min(int(r["bytes_total"]) for r in rows if r["state"] == "COMPLETE")
    code, out, _ = _run(capsys, str(folder), "--budget", str(smallest - 1), "--format", "json", "--no-plots")
    assert code == 0
    data = json.loads(out, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))
    assert data["front"] == [] and data["hypervolume"] == 0.0 and data["reference"]["val_bpb"] is None
    assert data["counts"]["infeasible"] == sum(r["state"] == "COMPLETE" for r in rows)
