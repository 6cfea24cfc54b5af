"""A finished training's metrics: read back from its folder (the one proof a training finished) or,
for an upstream script that writes no metrics.json, from its log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from pgolf.logs import LogSummary
from search.core.layout import ENV_FILE, METRICS_FILE

# Keys the runner adds to env.json on top of a trial's environment; not part of a trial's identity.
RUNNER_KEYS = ("OUT_DIR", "CUDA_VISIBLE_DEVICES")


def trial_identity(env: Mapping[str, str]) -> dict[str, str]:
    """A recorded environment without the runner's own keys: what makes two trainings the same."""
    return {k: v for k, v in env.items() if k not in RUNNER_KEYS}


def load_finished_metrics(trial_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """metrics.json of a finished training in trial_dir (for env, when given), else None."""
    metrics_path, env_path = trial_dir / METRICS_FILE, trial_dir / ENV_FILE
    if not metrics_path.is_file():
        return None
    try:
        metrics = json.loads(metrics_path.read_text())
        if env is not None:
            # Same configuration: every variable the trial asked for, as recorded (the runner may
            # have added its own, e.g. DATA_PATH prepared for --smoke).
            recorded = json.loads(env_path.read_text())
            if any(recorded.get(k) != str(v) for k, v in trial_identity(env).items()):
                return None
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or "val_bpb" not in metrics or "bytes_total" not in metrics:
        return None
    return metrics


def metrics_from_log(summary: LogSummary, script: Path) -> dict[str, Any] | None:
    """Metrics of an upstream script that writes no metrics.json, from its log (pgolf.logs' rule)."""
    final, total = summary.final, summary.bytes_total
    if final is None or total is None:
        return None
    code = len(script.read_bytes())
    metrics = {"val_loss": final.val_loss, "val_bpb": final.val_bpb, "bytes_total": total,
               "bytes_code": code, "bytes_model": total - code, "steps": summary.last_step,
               "scheme": final.label, "source": "log"}
    if summary.train_seconds is not None:
        metrics["train_time_ms"] = summary.train_seconds * 1000.0
    return metrics  # run_training adds eval_seconds and score_label from the same summary
