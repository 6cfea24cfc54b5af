"""The benchmark grid on a two-rung fidelity ladder: 20 steps, then 100 for the best third.

spaces/bench_grid.py's knobs, baseline and budget, with the two step counts its two
tables were trained at (bench/grid_table.csv, bench/grid_table_long.csv). Replay a
ladder search on them through Ray and Optuna, one table per rung:

    python -m search.run spaces/bench_grid_ladder.py --smoke --replay bench/grid_table.csv bench/grid_table_long.csv

(without --replay it trains them: tiny CPU trainings). bench/search_efficiency.py
compares the ladder with single-fidelity searches on the same tables.
"""

import importlib.util as _importlib_util
from pathlib import Path as _Path

_spec = _importlib_util.spec_from_file_location("_bench_grid", _Path(__file__).with_name("bench_grid.py"))
_grid = _importlib_util.module_from_spec(_spec)
_spec.loader.exec_module(_grid)

SCRIPT = _grid.SCRIPT
GPUS_PER_TRIAL = _grid.GPUS_PER_TRIAL
CPUS_PER_TRIAL = _grid.CPUS_PER_TRIAL
GRID = _grid.GRID
SMOKE_ENV = _grid.SMOKE_ENV
FIXED_ENV = _grid.FIXED_ENV
BUDGET_BYTES = _grid.BUDGET_BYTES
SMOKE_BUDGET_BYTES = _grid.SMOKE_BUDGET_BYTES
POINTS_TO_EVALUATE = _grid.POINTS_TO_EVALUATE
SMOKE_POINTS_TO_EVALUATE = _grid.SMOKE_POINTS_TO_EVALUATE
# The environments bench/grid.py trained the two tables with (--set ITERATIONS=100 --set WARMDOWN_ITERS=30).
FIDELITIES = SMOKE_FIDELITIES = [
    {"ITERATIONS": 20, "WARMDOWN_ITERS": 6},
    {"ITERATIONS": 100, "WARMDOWN_ITERS": 30},
]
PROMOTE_FRACTION = 1 / 3

space = _grid.space
smoke_space = _grid.smoke_space
