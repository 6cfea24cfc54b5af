"""bench/grid.py and its committed table: real tiny trainings, exact bytes on regeneration."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import grid as bench_grid  # noqa: E402

from search.runner.replay import read_table  # noqa: E402
from search.store.trials_csv import row_params  # noqa: E402

TABLE = ROOT / "bench" / "grid_table.csv"


def test_committed_table_covers_the_grid_with_a_third_to_a_half_infeasible() -> None:
    grid = bench_grid.load_grid(ROOT / "spaces" / "bench_grid.py")
    meta = json.loads(bench_grid.meta_path(TABLE).read_text())
    rows = read_table(TABLE)
    assert grid.size() >= 200
    assert meta["configurations"] == grid.size() and meta["rows"] == len(rows) == grid.size()
    assert meta["budget_bytes"] == grid.spec.budget_bytes
    assert {"command", "git_commit", "machine", "date", "trainer_sha256"} <= set(meta)
    keys = {bench_grid.param_key(row_params(r)) for r in rows}
    assert len(keys) == len(rows)  # every configuration once
    infeasible = sum(1 for r in rows if int(r["bytes_total"]) > grid.spec.budget_bytes)
    assert len(rows) / 3 <= infeasible <= len(rows) / 2


def _one_row_space(tmp_path: Path) -> Path:
    """spaces/bench_grid.py reduced to its first configuration (a one-row grid), as tmp_path/one.py."""
    first = next(bench_grid.load_grid(ROOT / "spaces" / "bench_grid.py").configurations())
    space = tmp_path / "one.py"
    source = (ROOT / "spaces" / "bench_grid.py").read_text()
    space.write_text(source.replace('SCRIPT = "pgolf/train_gpt.py"', f"SCRIPT = {str(ROOT / 'pgolf/train_gpt.py')!r}")
                     + f"\nGRID = {({k: [v] for k, v in first.items()})!r}\n")
    return space


# Compressed bytes of trained weights depend on the CPU's kernels: on the machine that made the tables,
# ATEN_CPU_CAPABILITY=default/avx2/avx512 gave 84,169/84,168/84,170 bytes for the first row (committed: 84,170),
# a fresh Intel machine 84,167. Code bytes are exact everywhere; model bytes agree within this fraction.
KERNEL_SPREAD = 0.001


def _same_row(row: dict, committed: dict) -> None:
    assert int(row["bytes_code"]) == int(committed["bytes_code"])
    assert int(row["bytes_model"]) == pytest.approx(int(committed["bytes_model"]), rel=KERNEL_SPREAD)
    assert int(row["bytes_total"]) == int(row["bytes_code"]) + int(row["bytes_model"])
    assert float(row["val_bpb"]) == pytest.approx(float(committed["val_bpb"]), abs=0.01)


@pytest.mark.slow
def test_regenerating_a_row_reproduces_its_bytes(tmp_path: Path) -> None:
    """Train one configuration of a one-row sub-grid with the real trainer: resumable, and the committed
    row's bytes (code bytes exactly, model bytes within the CPU kernels' spread, on any machine)."""
    space = _one_row_space(tmp_path)
    table = tmp_path / "t.csv"
    argv = ["--space", str(space), "--table", str(table), "--work-dir", str(tmp_path / "work")]
    assert bench_grid.main(argv) == 0
    assert bench_grid.main(argv) == 0  # resumable: nothing left to train
    rows = read_table(table)
    assert len(rows) == 1
    assert json.loads(bench_grid.meta_path(table).read_text())["rows"] == 1
    # The committed table's row for the same configuration: the same bytes, val_bpb within noise.
    committed = {bench_grid.param_key(row_params(r)): r for r in read_table(TABLE)}
    _same_row(rows[0], committed[bench_grid.param_key(row_params(rows[0]))])


def test_grid_without_grid_dict_is_a_one_line_error(tmp_path: Path) -> None:
    space = tmp_path / "nogrid.py"
    space.write_text(f"SCRIPT = {str(ROOT / 'pgolf/train_gpt.py')!r}\n"
                     "def space(trial):\n    return {'NUM_LAYERS': trial.suggest_categorical('NUM_LAYERS', [1])}\n")
    with pytest.raises(SystemExit, match="no GRID dict"):
        bench_grid.load_grid(space)


LONG_TABLE = ROOT / "bench" / "grid_table_long.csv"


@pytest.mark.slow
def test_second_fidelity_table_is_the_same_grid_trained_longer(tmp_path: Path) -> None:
    """bench/grid_table_long.csv: the same 216 configurations at 100 steps; `--set` reproduces a row's bytes,
    `--shard` splits the grid between processes."""
    meta = json.loads(bench_grid.meta_path(LONG_TABLE).read_text())
    assert meta["fixed_env"]["ITERATIONS"] == "100" and meta["fixed_env"]["WARMDOWN_ITERS"] == "30"
    short = {bench_grid.param_key(row_params(r)) for r in read_table(TABLE)}
    long_rows = read_table(LONG_TABLE)
    assert {bench_grid.param_key(row_params(r)) for r in long_rows} == short and len(long_rows) == len(short)
    assert all(int(r["steps"]) == 100 for r in long_rows)

    space = _one_row_space(tmp_path)
    table = tmp_path / "long.csv"
    argv = ["--space", str(space), "--table", str(table), "--work-dir", str(tmp_path / "work"),
            "--set", "ITERATIONS=100", "--set", "WARMDOWN_ITERS=30"]
    assert bench_grid.main(argv + ["--shard", "1/2"]) == 0 and not table.exists()  # configuration 0 is shard 0's
    assert bench_grid.main(argv) == 0
    (row,) = read_table(table)
    committed = {bench_grid.param_key(row_params(r)): r for r in long_rows}[bench_grid.param_key(row_params(row))]
    assert int(row["steps"]) == 100
    _same_row(row, committed)
    with pytest.raises(SystemExit):
        bench_grid.main(argv + ["--shard", "2/2"])
