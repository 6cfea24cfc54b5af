"""`trials.csv`: one row per trial of the study, rewritten whenever a trial ends.

The study is the source of truth; `trials.csv` is its flat view, which the review, promotion and
people read. The columns are a contract (docs/design.md): they never change here without the design
document changing too.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import optuna

from search.core import attrs
from search.core.files import write_atomic
from search.core.layout import TRIALS_CSV
from search.core.limits import BUDGET_CONSTRAINT, is_feasible, named_constraints

FIXED_COLUMNS = [
    "number", "state", "feasible", "reason", "message", "val_bpb", "val_loss", "bytes_total",
    "bytes_code", "bytes_model", "predicted_bytes", "margin_bytes", "constraint", "steps", "train_seconds",
    "eval_seconds", "wall_seconds", "gpu_seconds", "prep_seconds", "log_path", "trial_dir", "imported_from",
    "fidelity", "promoted_from", "rejudged_bytes", "rejudged_margin_bytes", "forgiven", "node", "requeued_from",
    "requeued_because", "duplicate_of",
]
PARAM_PREFIX = "param_"


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return "" if value is None else value


def trial_row(trial: optuna.trial.FrozenTrial, budget_bytes: int,
              rejudged: dict[str, list[float]] | None = None) -> dict[str, Any]:
    """One trials.csv row from one Optuna trial (`rejudged`: the study's REJUDGED attribute)."""
    judged = (rejudged or {}).get(str(trial.number))
    found = trial.user_attrs
    values = trial.values if trial.state == optuna.trial.TrialState.COMPLETE and trial.values else None
    val_bpb = values[0] if values else found.get("val_bpb")
    bytes_total = values[1] if values else found.get("bytes_total")
    predicted = found.get(attrs.PREDICTED_BYTES)
    measured = bytes_total if bytes_total not in (None, "") else predicted
    feasible = "" if measured in (None, "") else str(int(measured) <= budget_bytes).lower()
    if trial.state == optuna.trial.TrialState.COMPLETE and named_constraints(trial):
        feasible = str(is_feasible(trial)).lower()
    row = {
        "number": trial.number,
        "state": trial.state.name,
        "feasible": feasible,
        "reason": found.get(attrs.REASON, ""),
        "message": found.get(attrs.MESSAGE, ""),
        "val_bpb": val_bpb,
        "val_loss": found.get("val_loss"),
        "bytes_total": int(bytes_total) if isinstance(bytes_total, (int, float)) and math.isfinite(bytes_total) else "",
        "bytes_code": found.get("bytes_code"),
        "bytes_model": found.get("bytes_model"),
        "predicted_bytes": predicted,
        "margin_bytes": found.get(attrs.MARGIN_BYTES),
        "constraint": trial.constraints.get(BUDGET_CONSTRAINT),
        "steps": found.get("steps"),
        "train_seconds": found.get("train_seconds"),
        "eval_seconds": found.get("eval_seconds"),
        "wall_seconds": found.get("wall_seconds"),
        "gpu_seconds": found.get("gpu_seconds"),
        "prep_seconds": found.get("prep_seconds"),
        "log_path": found.get("log_path", ""),
        "trial_dir": found.get(attrs.TRIAL_DIR, ""),
        "imported_from": found.get(attrs.IMPORTED_FROM, ""),  # --warm-start: `<experiment>#<number>` it came from
        "fidelity": found.get(attrs.FIDELITY),                # the ladder's rung (FIDELITIES), empty without one
        "promoted_from": found.get(attrs.PROMOTED_FROM),      # the trial of the rung below it was promoted from
        # pruned before launch with predicted_bytes + margin_bytes; the predictor as it is now says:
        "rejudged_bytes": judged[0] if judged else None,
        "rejudged_margin_bytes": judged[1] if judged else None,
        "forgiven": "" if not judged else str(judged[2] <= 0).lower(),  # now within budget: open to the sampler
        "node": found.get(attrs.NODE, ""),                    # the Ray node that ran it (IP/node id)
        "requeued_from": found.get(attrs.REQUEUED_FROM),      # a run again of that trial (interrupted, node lost)
        "requeued_because": found.get(attrs.REQUEUED_BECAUSE, ""),
        "duplicate_of": found.get(attrs.DUPLICATE_OF),        # a repeated proposal told that training's result
    }
    row = {k: _number(v) for k, v in row.items()}
    for name, value in trial.params.items():
        row[PARAM_PREFIX + name] = value
    return row


def write_trials_csv(study: optuna.Study, folder: str | Path, budget_bytes: int) -> Path:
    """Rewrite `trials.csv` from the study (atomically: readers never see half a file)."""
    # WAITING trials (enqueued, not asked yet) are not trials of the search yet.
    rejudged = dict(study.user_attrs.get(attrs.REJUDGED) or {})
    rows = [trial_row(t, budget_bytes, rejudged) for t in study.get_trials(deepcopy=False)
            if t.state != optuna.trial.TrialState.WAITING]
    params = sorted({k for row in rows for k in row if k.startswith(PARAM_PREFIX)})
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=FIXED_COLUMNS + params, restval="")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(folder) / TRIALS_CSV
    write_atomic(path, text.getvalue())
    return path


def row_params(row: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a trials.csv / table row, without their `param_` prefix."""
    return {k[len(PARAM_PREFIX):]: v for k, v in row.items() if k.startswith(PARAM_PREFIX)}


def read_trials_csv(folder_or_file: str | Path) -> list[dict[str, str]]:
    """Rows of trials.csv (or of any results table) as dicts of strings; parameters keep their `param_`."""
    path = Path(folder_or_file)
    if path.is_dir():
        path = path / TRIALS_CSV
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def lower_rung(folder: Path, number: int, top: int | None) -> str | None:
    """Why trial `number` of an experiment is no result (it trained at a lower rung, with that rung's
    cheaper environment), naming its top-rung training when there is one; None when it is a result."""
    if top is None or not (folder / TRIALS_CSV).is_file():
        return None
    rows = {r["number"]: r for r in read_trials_csv(folder)}
    row = rows.get(str(number)) or {}
    rung = str(row.get("fidelity") or "")
    if not rung or int(rung) == top:
        return None
    same = [n for n, r in rows.items() if r.get("fidelity") == str(top) and r.get("state") == "COMPLETE"
            and row_params(r) == row_params(row)]
    hint = f"trial {same[0]} is its top-rung training" if same else "it was not promoted to the top rung"
    return f"trial {number} of {folder} trained at rung {rung} of the fidelity ladder, not the top rung {top} ({hint})"
