"""What one search is asked to do (`RunOptions`) and what it reports (`RunSummary`), and the one-line
error it stops with (`RunError`): shared by the command line, the driver and Python callers."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from search.core.cost import Cost
from search.core.errors import OneLineError
from search.space.spec import SpaceSpec

DEFAULT_RESULTS = Path("results")
MAX_NODE_LOSSES = 10  # a spot node lost now and then costs a rerun; ten in one run is a cluster problem
DEFAULT_NUM_SAMPLES = 20
SMOKE_NUM_SAMPLES = 8


class RunError(OneLineError, RuntimeError):
    """A one-line problem; `code` is the exit code (2: the input is wrong, 1: the search could not go on)."""

    code = 1


@dataclass
class RunOptions:
    """Command-line settings of one search (also usable from Python and tests)."""

    space: Path
    smoke: bool = False
    name: str | None = None
    num_samples: int | None = None
    max_concurrent: int | None = None
    address: str | None = None
    resume: bool = False
    force_space: bool = False         # --resume with a changed space file, deliberately (recorded)
    seed: int | None = None
    results_dir: Path = DEFAULT_RESULTS
    num_cpus: int | None = None       # embedded cluster only
    num_gpus: int | None = None       # embedded cluster only (logical GPUs are fine)
    object_store_memory: int | None = None
    max_over_budget_in_a_row: int = 200  # stop when the space is almost entirely over budget
    replay: Path | list[Path] | None = None  # look results up in this table (one per rung) instead of training
    gpu_hour_price: float | None = None  # dollars per GPU-hour (per CPU-hour with no GPUs), to show money
    warm_start: list[Path] = dataclasses.field(default_factory=list)  # earlier experiments to import trials from
    max_node_losses: int = MAX_NODE_LOSSES  # stop after this many trials lost with their node (0: never)
    sync_also: list[str] = dataclasses.field(default_factory=list)  # large trial files to bring back too


@dataclass
class RunSummary:
    """What a finished search reports."""

    folder: Path
    counts: dict[str, int]
    best_bpb: float | None
    best_number: int | None
    front_size: int
    pruned_before_launch: int
    launched: int
    num_samples: int
    margin_fraction: float = 0.0   # the size predictor's safety margin at the end
    cost: Cost | None = None       # device hours used and saved by pruning
    ladder: object = None          # the space's fidelity ladder (search.space.ladder.Ladder), if any
    rung_trainings: str = ""       # trainings finished per rung, e.g. "9+3"
    duplicates: int = 0            # proposals this run that repeated a training: told its result, not trained
    exhausted: str | None = None   # why the search stopped short: nothing left in a finite space to launch


def replay_tables(opts: RunOptions) -> list[Path]:
    """--replay's tables: one, or one per rung of a fidelity ladder."""
    return [opts.replay] if isinstance(opts.replay, Path) else list(opts.replay or [])


def default_name(spec: SpaceSpec) -> str:
    return spec.path.stem + ("-smoke" if spec.smoke else "")


def check_address(address: str | None) -> None:
    """A malformed --address is bad input (exit 2), found before anything starts."""
    from pgolf.cluster import ClusterError, split_address

    if address is not None:
        try:
            split_address(address)
        except ClusterError as exc:
            raise RunError(f"error: {exc}", code=2) from None


def check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise RunError(f"error: --name {name!r} is not a plain folder name (use letters, digits, - and _)", code=2)
