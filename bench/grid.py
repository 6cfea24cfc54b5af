"""Train every configuration of a discrete space file into a results table (the tabular benchmark).

A search benchmark on real trainings needs the ground truth of the whole space:
this script enumerates the `GRID` of a space file (default spaces/bench_grid.py,
216 configurations), trains each one with the real trainer at the space's
--smoke scale (one plain CPU process, data prepared from the bundled corpus by
`pgolf.data.prepare`), and appends one row per configuration to a CSV.
`search.runner.replay` and bench/search_efficiency.py then replay searches on it.

    .venv/bin/python bench/grid.py [--space spaces/bench_grid.py] [--table bench/grid_table.csv]
                                   [--only N] [--check N] [--set NAME=VALUE ...]

`--set` overrides the space's fixed environment for every configuration: the
second fidelity of the two-fidelity benchmark is the same grid trained longer,
`--set ITERATIONS=100 --set WARMDOWN_ITERS=30 --table bench/grid_table_long.csv`.

Resumable: rows already in the table are skipped. `--check N` retrains row N in
a scratch folder and prints its measured bytes_total / val_bpb next to the
table's (bytes must match exactly; val_bpb within noise). The table's metadata
(command, git commit, machine, date, budget, trainer hash) goes to
`<table>.meta.json` (the `.csv` suffix replaced by `.meta.json`).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime
import hashlib
import importlib.util
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.runner.replay import PARAM_PREFIX, read_table  # noqa: E402
from search.space.load import load_space  # noqa: E402
from search.space.spec import SpaceSpec  # noqa: E402
from search.store.trials_csv import row_params  # noqa: E402

METRIC_COLUMNS = ("val_bpb", "val_loss", "val_bpb_prequant", "val_loss_prequant", "bytes_total",
                  "bytes_code", "bytes_model", "steps", "params_total", "train_seconds", "wall_seconds")


@dataclass(frozen=True)
class Grid:
    """A space file's grid: its spec (smoke profile) and knob -> values."""

    spec: SpaceSpec
    knobs: dict[str, list[Any]]

    def configurations(self) -> Iterator[dict[str, Any]]:
        """Every combination of the knobs' values, in a fixed order."""
        names = list(self.knobs)
        for values in itertools.product(*(self.knobs[n] for n in names)):
            yield dict(zip(names, values))

    def size(self) -> int:
        n = 1
        for values in self.knobs.values():
            n *= len(values)
        return n


def load_grid(space_path: str | Path, overrides: Mapping[str, str] | None = None) -> Grid:
    """The space file's smoke spec (its environment with `overrides` on top) and its module-level
    `GRID` dict (one-line error if missing)."""
    path = Path(space_path)
    spec = load_space(path, smoke=True)
    if overrides:
        spec = dataclasses.replace(spec, smoke_env={**spec.smoke_env, **{k: str(v) for k, v in overrides.items()}})
    module_spec = importlib.util.spec_from_file_location("_pgolf_bench_grid", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # type: ignore[union-attr]
    knobs = getattr(module, "GRID", None)
    if not isinstance(knobs, dict) or not knobs or not all(isinstance(v, list) and v for v in knobs.values()):
        raise SystemExit(f"error: {path}: no GRID dict of knob -> list of values "
                         "(add e.g. GRID = {'NUM_LAYERS': [1, 2, 3]} and use it in space(trial))")
    return Grid(spec=spec, knobs={str(k): list(v) for k, v in knobs.items()})


def proposed_env(grid: Grid, params: Mapping[str, Any]) -> dict[str, Any]:
    """What the space's own space(trial) returns for one grid point (an Optuna trial fixed by enqueue)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.enqueue_trial(dict(params))
    trial = study.ask()
    try:
        return dict(grid.spec.space(trial))
    finally:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def trial_env(grid: Grid, params: Mapping[str, Any]) -> dict[str, str]:
    """The exact environment the search would give this configuration."""
    return grid.spec.trial_env(proposed_env(grid, params))


def param_key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, _norm(v)) for k, v in params.items()))


def _norm(value: Any) -> str:
    try:
        return repr(float(value))
    except (TypeError, ValueError):
        return str(value)


def train_one(grid: Grid, params: Mapping[str, Any], trial_dir: Path) -> dict[str, Any]:
    """Run the real trainer for one configuration; return its metrics."""
    import pgolf.data
    from search.runner.trainable import run_training

    env = trial_env(grid, params)
    prepared = pgolf.data.prepare(int(env["VOCAB_SIZE"]), pgolf.data.default_cache_dir())
    env.setdefault("DATA_PATH", str(prepared.data_path))
    env.setdefault("TOKENIZER_PATH", str(prepared.tokenizer_path))
    return run_training(env, grid.spec.script, trial_dir, nproc=0, cwd=ROOT)


def _git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "pgolf/train_gpt.py"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return commit + (" (trainer modified)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch
    return (f"{platform.node()} {platform.system()} {platform.machine()}, {cpu}, {os.cpu_count()} cores, "
            f"python {platform.python_version()}, torch {torch.__version__}")


def meta_path(table: Path) -> Path:
    return table.with_name(table.name.removesuffix(".csv") + ".meta.json")


def write_meta(grid: Grid, table: Path, rows: int, argv: list[str]) -> None:
    script = grid.spec.script
    meta = {
        "command": " ".join(["python", "bench/grid.py", *argv]),
        "git_commit": _git_commit(),
        "machine": _machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "space": str(grid.spec.path),
        "budget_bytes": grid.spec.budget_bytes,
        "grid": grid.knobs,
        "configurations": grid.size(),
        "rows": rows,
        "fixed_env": grid.spec.smoke_env,
        "trainer_sha256": hashlib.sha256(Path(script).read_bytes()).hexdigest(),
        "note": "one training at a time, nice -n 10, on a 2-core machine shared with other work: "
                "train_seconds/wall_seconds include contention",
    }
    meta_path(table).write_text(json.dumps(meta, indent=1) + "\n")


def update_meta(grid: Grid, table: Path, rows: int) -> None:
    """Refresh budget and row count, keeping how and where the rows were made."""
    path = meta_path(table)
    meta = json.loads(path.read_text()) if path.is_file() else {}
    if meta.get("budget_bytes") != grid.spec.budget_bytes:
        meta["budget_set"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    meta.update({"budget_bytes": grid.spec.budget_bytes, "rows": rows})
    path.write_text(json.dumps(meta, indent=1) + "\n")


def run_grid(grid: Grid, table: Path, work_dir: Path, only: int | None, argv: list[str],
             shard: tuple[int, int] = (0, 1)) -> int:
    """Train the configurations not yet in the table; return how many were trained. `shard` (k, n): only
    configurations whose index is k modulo n, so that n processes can fill one table side by side."""
    done = {param_key(row_params(row)) for row in read_table(table)} if table.is_file() else set()
    env_names = None
    trained = 0
    for index, params in enumerate(grid.configurations()):
        if only is not None and trained >= only:
            break
        if index % shard[1] != shard[0]:
            continue
        env = trial_env(grid, params)
        # Table parameter columns: every variable the space sets (derived ones included).
        env_names = env_names or list(proposed_env(grid, params))
        table_params = {k: env[k] for k in env_names}
        if param_key(table_params) in done:
            continue
        start = time.time()
        metrics = train_one(grid, params, work_dir / str(index))
        row = {"config": index, **{PARAM_PREFIX + k: v for k, v in table_params.items()},
               **{k: metrics.get(k) for k in METRIC_COLUMNS}}
        new = not table.is_file()
        with table.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        done.add(param_key(table_params))
        trained += 1
        print(f"[{len(done)}/{grid.size()}] config {index} {table_params} val_bpb={metrics['val_bpb']:.4f} "
              f"bytes={metrics['bytes_total']} ({time.time() - start:.1f}s)", flush=True)
        write_meta(grid, table, len(done), argv)
    if trained == 0 and table.is_file():
        update_meta(grid, table, len(done))  # e.g. after changing the space's budget
    return trained


def check_row(grid: Grid, table: Path, number: int, work_dir: Path) -> None:
    """Retrain the table's row `number` and print measured vs recorded bytes_total and val_bpb."""
    rows = read_table(table)
    if not 0 <= number < len(rows):
        raise SystemExit(f"error: --check {number}: the table has rows 0..{len(rows) - 1} (pick one of them)")
    row = rows[number]
    params = row_params(row)
    grid_params = {k: next(v for v in grid.knobs[k] if _norm(v) == _norm(params[k])) for k in grid.knobs}
    metrics = train_one(grid, grid_params, work_dir / f"check_{number}")
    print(f"row {number} {params}")
    print(f"  bytes_total table={row['bytes_total']} now={metrics['bytes_total']} "
          f"{'EXACT' if int(row['bytes_total']) == metrics['bytes_total'] else 'DIFFERENT'}")
    print(f"  val_bpb     table={float(row['val_bpb']):.6f} now={metrics['val_bpb']:.6f} "
          f"diff={metrics['val_bpb'] - float(row['val_bpb']):+.2e}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="spaces/bench_grid.py")
    parser.add_argument("--table", default="bench/grid_table.csv")
    parser.add_argument("--work-dir", default="/tmp/pgolf_bench_grid", help="trial folders (scratch)")
    parser.add_argument("--only", type=int, default=None, help="train at most N missing rows, then stop")
    parser.add_argument("--check", type=int, default=None, help="retrain row N and compare with the table")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override one variable of the space's environment (repeatable)")
    parser.add_argument("--shard", default="0/1", metavar="K/N",
                        help="train only configurations K mod N (run N processes to fill one table faster)")
    args = parser.parse_args(argv)
    try:
        shard = tuple(int(x) for x in args.shard.split("/"))
        assert len(shard) == 2 and 0 <= shard[0] < shard[1]
    except (ValueError, AssertionError):
        parser.error(f"--shard {args.shard!r} is not K/N with 0 <= K < N (e.g. --shard 1/2)")
    bad = [item for item in args.set if "=" not in item or not item.split("=", 1)[0]]
    if bad:
        parser.error(f"--set {bad[0]!r} is not NAME=VALUE (e.g. --set ITERATIONS=100)")
    os.chdir(ROOT)
    grid = load_grid(args.space, dict(item.split("=", 1) for item in args.set))
    table, work = Path(args.table), Path(args.work_dir)
    if args.check is not None:
        check_row(grid, table, args.check, work)
        return 0
    trained = run_grid(grid, table, work / f"shard{shard[0]}", args.only, argv, shard)  # type: ignore[arg-type]
    print(f"trained {trained}; table {table} has {len(read_table(table)) if table.is_file() else 0} "
          f"of {grid.size()} configurations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
