"""Writing and reading an experiment's `experiment.json` and `trials.csv`.

The schema is a contract (docs/design.md): `search.pareto` and
`search.promote` read these files, so the column names never change here
without changing the design document too. The Optuna study is the source of
truth; `trials.csv` is a flat view of it, rewritten whenever a trial ends.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna

from search.trial_files import write_atomic

FIXED_COLUMNS = [
    "number", "state", "feasible", "reason", "message", "val_bpb", "val_loss", "bytes_total",
    "bytes_code", "bytes_model", "predicted_bytes", "margin_bytes", "constraint", "steps", "train_seconds",
    "eval_seconds", "wall_seconds", "gpu_seconds", "prep_seconds", "log_path", "trial_dir", "imported_from",
    "fidelity", "promoted_from", "rejudged_bytes", "rejudged_margin_bytes", "forgiven", "node", "requeued_from",
    "requeued_because", "duplicate_of",
]
PARAM_PREFIX = "param_"
OBJECTIVES = ["val_bpb", "bytes_total"]
BUDGET_CONSTRAINT = "bytes_over_budget"
# study attribute: every proposal pruned before launch judged again by the predictor as it is now,
# {trial number: [predicted bytes, margin bytes, violation]} (search.study.rejudge_pruned)
REJUDGED_ATTR = "rejudged_pruned"
DUPLICATE_OF_ATTR = "duplicate_of"  # trial attribute: the training whose result a repeated proposal was told


@dataclass
class ExperimentSettings:
    """What `experiment.json` holds: how an experiment was set up (`search.experiment` owns the folder)."""

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


def time_limits(meta: dict[str, Any]) -> dict[str, float]:
    """An experiment's limits other than the byte budget (`train_seconds`, `eval_seconds`), from
    experiment.json; the budget is judged apart, as `budget_bytes` or a --budget override."""
    return {k: float(v) for k, v in dict(meta.get("limits") or {}).items() if k != "bytes_total"}


def broken_limits(row: dict[str, Any], limits: dict[str, float]) -> list[str]:
    """The limits a measured trials.csv row is over (`bytes_total`, `eval_seconds`, ...)."""
    broken = []
    for metric, limit in limits.items():
        try:
            value = float(row.get(metric) or "nan")
        except ValueError:
            continue
        if math.isfinite(value) and value > limit:
            broken.append(metric)
    return broken


def top_rung(meta: ExperimentSettings | dict[str, Any]) -> int | None:
    """The top rung of an experiment's ladder (its trials are the results), None without one."""
    rungs = meta.fidelities if isinstance(meta, ExperimentSettings) else (meta.get("fidelities") or [])
    return len(rungs) - 1 if rungs else None


def storage_url(folder: str | Path) -> str:
    """The Optuna RDB storage URL of an experiment folder (`study.db`)."""
    return f"sqlite:///{Path(folder).resolve() / 'study.db'}"


def write_experiment(folder: str | Path, experiment: ExperimentSettings) -> Path:
    path = Path(folder) / "experiment.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(asdict(experiment), indent=1, sort_keys=True) + "\n")
    return path


def read_experiment(folder: str | Path) -> ExperimentSettings:
    """Load experiment.json; raise ValueError with one line when missing or broken."""
    path = Path(folder) / "experiment.json"
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


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return "" if value is None else value


def trial_row(trial: optuna.trial.FrozenTrial, budget_bytes: int,
              rejudged: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """One trials.csv row from one Optuna trial (`rejudged`: the study's REJUDGED_ATTR)."""
    judged = (rejudged or {}).get(str(trial.number))
    attrs = trial.user_attrs
    values = trial.values if trial.state == optuna.trial.TrialState.COMPLETE and trial.values else None
    val_bpb = values[0] if values else attrs.get("val_bpb")
    bytes_total = values[1] if values else attrs.get("bytes_total")
    predicted = attrs.get("predicted_bytes")
    constraint_value = trial.constraints.get(BUDGET_CONSTRAINT)
    measured = bytes_total if bytes_total not in (None, "") else predicted
    feasible = "" if measured in (None, "") else str(int(measured) <= budget_bytes).lower()
    if trial.state == optuna.trial.TrialState.COMPLETE and trial.constraints:
        feasible = str(all(v <= 0 for v in trial.constraints.values())).lower()
    row = {
        "number": trial.number,
        "state": trial.state.name,
        "feasible": feasible,
        "reason": attrs.get("reason", ""),
        "message": attrs.get("message", ""),
        "val_bpb": val_bpb,
        "val_loss": attrs.get("val_loss"),
        "bytes_total": int(bytes_total) if isinstance(bytes_total, (int, float)) and math.isfinite(bytes_total) else "",
        "bytes_code": attrs.get("bytes_code"),
        "bytes_model": attrs.get("bytes_model"),
        "predicted_bytes": predicted,
        "margin_bytes": attrs.get("margin_bytes"),
        "constraint": constraint_value,
        "steps": attrs.get("steps"),
        "train_seconds": attrs.get("train_seconds"),
        "eval_seconds": attrs.get("eval_seconds"),
        "wall_seconds": attrs.get("wall_seconds"),
        "gpu_seconds": attrs.get("gpu_seconds"),
        "prep_seconds": attrs.get("prep_seconds"),
        "log_path": attrs.get("log_path", ""),
        "trial_dir": attrs.get("trial_dir", ""),
        "imported_from": attrs.get("imported_from", ""),  # --warm-start: `<experiment>#<number>` it came from
        "fidelity": attrs.get("fidelity"),                # the ladder's rung (FIDELITIES), empty without one
        "promoted_from": attrs.get("promoted_from"),      # the trial of the rung below it was promoted from
        # pruned before launch with predicted_bytes + margin_bytes; the predictor as it is now says:
        "rejudged_bytes": judged[0] if judged else None,
        "rejudged_margin_bytes": judged[1] if judged else None,
        "forgiven": "" if not judged else str(judged[2] <= 0).lower(),  # now within budget: open to the sampler
        "node": attrs.get("node", ""),                    # the Ray node that ran it (IP/node id)
        "requeued_from": attrs.get("requeued_from"),      # a run again of that trial (interrupted, node lost)
        "requeued_because": attrs.get("requeued_because", ""),
        "duplicate_of": attrs.get(DUPLICATE_OF_ATTR),     # a repeated proposal told that training's result
    }
    row = {k: _number(v) for k, v in row.items()}
    for name, value in trial.params.items():
        row[PARAM_PREFIX + name] = value
    return row


def write_trials_csv(study: optuna.Study, folder: str | Path, budget_bytes: int) -> Path:
    """Rewrite `trials.csv` from the study (atomically: readers never see half a file)."""
    # WAITING trials (enqueued, not asked yet) are not trials of the search yet.
    rejudged = dict(study.user_attrs.get(REJUDGED_ATTR) or {})
    rows = [trial_row(t, budget_bytes, rejudged) for t in study.get_trials(deepcopy=False)
            if t.state != optuna.trial.TrialState.WAITING]
    params = sorted({k for row in rows for k in row if k.startswith(PARAM_PREFIX)})
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=FIXED_COLUMNS + params, restval="")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(folder) / "trials.csv"
    write_atomic(path, text.getvalue())
    return path


def row_params(row: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a trials.csv / table row, without their `param_` prefix."""
    return {k[len(PARAM_PREFIX):]: v for k, v in row.items() if k.startswith(PARAM_PREFIX)}


def read_trials_csv(folder_or_file: str | Path) -> list[dict[str, str]]:
    """Rows of trials.csv as dicts of strings (parameters keep their `param_` prefix)."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / "trials.csv"
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


