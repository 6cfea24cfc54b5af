"""Replay: run a search against a table of past results instead of training.

A results table is any CSV with one row per configuration, its parameters in
`param_<NAME>` columns and at least `val_bpb` and `bytes_total` (the
benchmark grid bench/grid_table.csv, or a past experiment's trials.csv: users
replay their own history to compare strategies without a GPU). `replay_trial`
is a Ray Tune function trainable with `search.runner.train_trial`'s config
contract (docs/design.md) plus `replay_table`; it looks the trial's
environment up in the table and reports what the training reported: one
intermediate `{val_bpb, val_loss, step}` and then every metric of the row with
`training_done: True`. It writes `env.json` and `metrics.json` to the trial
folder as the runner does, so `--resume` and `search.pareto` work unchanged.

Pre-launch pruning in a replay uses the same predictor as the real search
(`search.engine.predictors.make_predictor`: the space's `PREDICT_BYTES`, else a
`pgolf.size.SizeLearner`), never the table's measured bytes unless the space
asks for them (`PREDICT_BYTES = table_predictor(...)`): a replay measures the
searcher as it would behave with real trainings.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from search.core.files import write_atomic
from search.core.layout import ENV_FILE, METRICS_FILE
from search.store.trials_csv import PARAM_PREFIX
from search.store.trials_csv import read_trials_csv as read_table  # any CSV results table, not only trials.csv

REQUIRED_COLUMNS = ("val_bpb", "bytes_total")
# Columns reported as numbers when present (anything else that parses as a number is too).
_INT_COLUMNS = ("bytes_total", "bytes_code", "bytes_model", "steps", "params_total")


class ReplayError(ValueError):
    """A replay table problem or a configuration the table lacks (one line)."""


def normalize(value: Any) -> str:
    """A parameter value as a comparable key: numbers by value ('2', '2.0' and 2 agree)."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return repr(number) if math.isfinite(number) else text


def _number(text: str) -> Any:
    if text is None or text == "":
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class ReplayTable:
    """A results table indexed by its parameter values."""

    path: Path
    params: tuple[str, ...]                      # parameter names (columns without the prefix)
    rows: dict[tuple[str, ...], dict[str, Any]] = field(repr=False)

    @classmethod
    def load(cls, path: str | Path) -> "ReplayTable":
        """Read and check a table; raise ReplayError (one line) on a problem."""
        path = Path(path)
        if not path.is_file():
            raise ReplayError(f"error: replay table {path} not found (pass a CSV such as bench/grid_table.csv "
                              "or a results/<name>/trials.csv)")
        raw = read_table(path)
        columns = list(raw[0]) if raw else []
        params = tuple(c.removeprefix(PARAM_PREFIX) for c in columns if c.startswith(PARAM_PREFIX))
        if not params:
            raise ReplayError(f"error: replay table {path} has no param_<NAME> columns "
                              "(name each parameter column param_<ENV VARIABLE>)")
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ReplayError(f"error: replay table {path} lacks column {missing[0]} "
                              f"(a table needs {', '.join(REQUIRED_COLUMNS)})")
        rows: dict[tuple[str, ...], dict[str, Any]] = {}
        for row in raw:
            if "state" in row and row["state"] != "COMPLETE":
                continue  # a trials.csv: only finished trainings are results
            if any(row.get(c) in (None, "") for c in REQUIRED_COLUMNS):
                continue
            key = tuple(normalize(row[PARAM_PREFIX + p]) for p in params)
            metrics = {k: _number(v) for k, v in row.items() if not k.startswith(PARAM_PREFIX)}
            rows.setdefault(key, metrics)  # a repeated configuration: the first result counts
        if not rows:
            raise ReplayError(f"error: replay table {path} has no finished rows with val_bpb and bytes_total "
                              "(replay a table of completed trainings)")
        return cls(path=path, params=params, rows=rows)

    def key(self, env: Mapping[str, Any]) -> tuple[str, ...]:
        absent = [p for p in self.params if p not in env]
        if absent:
            raise ReplayError(f"error: the trial's environment has no {absent[0]}, a parameter of replay table "
                              f"{self.path} (replay a table made with the same space)")
        return tuple(normalize(env[p]) for p in self.params)

    def lookup(self, env: Mapping[str, Any]) -> dict[str, Any]:
        """The recorded metrics of the configuration `env` describes; ReplayError if absent."""
        found = self.rows.get(self.key(env))
        if found is None:
            shown = ", ".join(f"{p}={env[p]}" for p in self.params)
            raise ReplayError(f"error: replay table {self.path} has no row for {shown} "
                              "(the space proposes configurations the table lacks: replay a table "
                              "made over the same space, e.g. bench/grid.py)")
        return dict(found)

    def __contains__(self, env: Mapping[str, Any]) -> bool:
        return self.key(env) in self.rows

    def __len__(self) -> int:
        return len(self.rows)


@lru_cache(maxsize=8)
def _cached_table(path: str, mtime: float) -> ReplayTable:
    return ReplayTable.load(path)


def load_table(path: str | Path) -> ReplayTable:
    """ReplayTable.load, cached per file version (a Ray worker loads the table once)."""
    p = Path(path)
    return _cached_table(str(p.resolve()), p.stat().st_mtime if p.exists() else 0.0)


def replay_metrics(table: ReplayTable, env: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(intermediate report, final report) of one replayed training.

    The intermediate is the training's last pre-quantization validation (the
    round-trip score when the table has no pre-quantization column), the
    final one every recorded metric plus `training_done: True`.
    """
    row = table.lookup(env)
    final = {k: v for k, v in row.items() if v is not None}
    final.setdefault("train_seconds", 0.0)
    final.setdefault("gpu_seconds", 0.0)
    final["replayed_from"] = str(table.path)
    final["training_done"] = True
    intermediate = {"val_bpb": row.get("val_bpb_prequant") or row["val_bpb"],
                    "val_loss": row.get("val_loss_prequant") or row.get("val_loss"),
                    "step": row.get("steps") or 0}
    return intermediate, final


def replay_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: `train_trial`'s config plus `replay_table` (path).

    Optional `replay_seconds`: sleep that long before the final report (to
    exercise scheduling with a fixed trial time).
    """
    from ray import tune

    started = time.time()
    env = {str(k): str(v) for k, v in config["env"].items()}
    tables = config["replay_table"]
    if isinstance(tables, (list, tuple)):  # a fidelity ladder: the table of the trial's rung
        tables = tables[min(int(config.get("fidelity") or 0), len(tables) - 1)]
    table = load_table(tables)
    intermediate, final = replay_metrics(table, env)
    trial_dir = Path(config["trial_dir"])
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / ENV_FILE).write_text(json.dumps({**env, "OUT_DIR": str(trial_dir)}, indent=1, sort_keys=True))
    tune.report(intermediate)
    if config.get("replay_seconds"):
        time.sleep(float(config["replay_seconds"]))
    metrics = {k: v for k, v in final.items() if k != "training_done"}
    write_atomic(trial_dir / METRICS_FILE, json.dumps(metrics, indent=1))
    # When the trainable ran (wall clock), for bench/overhead.py's idle-time measurement.
    (trial_dir / "replay_timing.json").write_text(json.dumps({"started": started, "ended": time.time()}))
    tune.report(final)


def make_replay_trainable(table_path: str | Path | list, seconds: float = 0.0):
    """A function trainable replaying `table_path` (what `search.run --replay` hands to Tune); a list
    of tables replays a fidelity ladder, one table per rung (the config's `fidelity`)."""
    paths = [str(Path(p).resolve()) for p in (table_path if isinstance(table_path, (list, tuple)) else [table_path])]
    for path in paths:
        load_table(path)  # fail before Ray starts, with one line
    table_path = paths if len(paths) > 1 else paths[0]

    def replay(config: dict[str, Any]) -> None:
        replay_trial({**config, "replay_table": table_path, "replay_seconds": seconds})

    replay.__name__ = "replay_trial"
    return replay


def table_predictor(table_path: str | Path):
    """The table's measured `bytes_total` as a perfect predictor, env -> int.

    For a space's `PREDICT_BYTES` when replaying a table from a script that
    `pgolf.size` cannot model: the replay then shows the search with ideal
    pruning. A configuration the table lacks raises ReplayError (one line).
    """
    table = load_table(table_path)
    return lambda env: int(table.lookup(env)["bytes_total"])
