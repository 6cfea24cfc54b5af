"""`experiment.json`: how an experiment was set up, written when it starts and read by every command
after (the review, promotion, warm starts, --resume). Its fields are a contract (docs/design.md)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from search.core.files import write_atomic
from search.core.layout import EXPERIMENT_FILE

OBJECTIVES = ["val_bpb", "bytes_total"]


@dataclass
class ExperimentSettings:
    """What `experiment.json` holds: how an experiment was set up (`search.store.experiment` owns the folder)."""

    name: str
    space: str
    script: str
    budget_bytes: int
    gpus_per_trial: int
    smoke: bool
    fixed_env: dict[str, str]
    defaults: dict[str, Any]
    objectives: list[str] = field(default_factory=lambda: list(OBJECTIVES))
    num_samples: int = 0
    seed: int | None = None
    limits: dict[str, float] = field(default_factory=dict)  # every limit, the byte budget included
    score_line: str | None = None                           # the space's SCORE_LINE, if any
    identity: dict[str, Any] = field(default_factory=dict)  # space hash, budget, limits, smoke (resume checks)
    study_name: str | None = None                           # the study's name in study.db (kept on a rename)
    space_changes: list[dict[str, Any]] = field(default_factory=list)  # --force-space changes, in order
    fidelities: list[dict[str, str]] = field(default_factory=list)     # the ladder's rungs (FIDELITIES), if any
    resources: dict[str, float] = field(default_factory=dict)          # RESOURCES_PER_TRIAL (promote's seeds too)


def top_rung(meta: ExperimentSettings | dict[str, Any]) -> int | None:
    """The top rung of an experiment's ladder (its trials are the results), None without one."""
    rungs = meta.fidelities if isinstance(meta, ExperimentSettings) else (meta.get("fidelities") or [])
    return len(rungs) - 1 if rungs else None


def write_experiment(folder: str | Path, experiment: ExperimentSettings) -> Path:
    path = Path(folder) / EXPERIMENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(asdict(experiment), indent=1, sort_keys=True) + "\n")
    return path


def read_experiment(folder: str | Path) -> ExperimentSettings:
    """Load experiment.json; raise ValueError with one line when missing or broken."""
    path = Path(folder) / EXPERIMENT_FILE
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return ExperimentSettings(**data)
    except FileNotFoundError:
        raise ValueError(f"error: {path} does not exist (start the experiment without --resume first)") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"error: {path} is not a valid experiment file: {str(exc).splitlines()[0]} (restore it "
                         "from a backup; study.db and trials/ are untouched)") from None
