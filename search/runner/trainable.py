"""The Ray Tune trainable that launches one training and streams its log.

This is the one way a training is launched, for `search.run` and
`search.promote` alike (contract in docs/design.md). A trial runs its script in
a child process (`torchrun --standalone` on the GPUs Ray assigned, or a plain
`python script` with 0 processes per trial), streams each intermediate
`val_bpb` line to Tune, and ends with one report of the trial's metrics plus
`training_done: True`. The child dies with its Ray worker (PR_SET_PDEATHSIG),
so a killed driver leaves no orphan training.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Mapping

from pgolf.logs import LogSummary, TrainStep, ValStep, parse_line
from search.core import attrs
from search.core.files import write_atomic
from search.core.layout import ENV_FILE, FAILURE_FILE, METRICS_FILE, STDOUT_LOG, TRAINING_PID, log_path
from search.runner.data import prepare_bundled, prepare_from_docs
from search.runner.failures import diverged, root_cause
from search.runner.metrics import load_finished_metrics, metrics_from_log
from search.runner.process import die_with_parent, kill_tree, launch_command
from search.runner.trial_files import SYNC_KEY, announce, ship

LOG_TAIL_LINES = 40


class TrainingFailed(RuntimeError):
    """A training crashed or produced a NaN loss; carries the reason and log tail."""

    def __init__(self, reason: str, log_tail: str, message: str = ""):
        super().__init__(f"{reason}: {message}\n{log_tail}" if message else f"{reason}\n{log_tail}")
        self.reason = reason
        self.log_tail = log_tail
        self.message = message

    def __reduce__(self):
        # Ray ships a failed trial's exception back to the driver by pickling it.
        return (TrainingFailed, (self.reason, self.log_tail, self.message))


def _fail(trial_dir: Path, reason: str, tail: str, message: str = "") -> TrainingFailed:
    """Record a failed training (its process is dead by now). A metrics.json it wrote before it was
    killed goes: the folder must not say a NaN or timed-out training finished (the driver keeps a
    metrics.json as proof when a worker dies)."""
    (trial_dir / METRICS_FILE).unlink(missing_ok=True)
    try:
        cause = root_cause((trial_dir / STDOUT_LOG).read_text(errors="replace").splitlines())
    except OSError:
        cause = None
    if cause:
        message = f"{cause} ({message})" if message else cause
        if reason == attrs.CRASHED and diverged(cause):
            reason = attrs.NAN_LOSS
    (trial_dir / FAILURE_FILE).write_text(json.dumps({"reason": reason, "message": message,
                                                        "log_tail": tail}, indent=1))
    return TrainingFailed(reason, tail, message)


def run_training(env: Mapping[str, str], script: str | Path, trial_dir: str | Path, nproc: int = 0,
                 cwd: str | Path | None = None, report=None, timeout_s: float | None = None,
                 score_line: str | None = None) -> dict[str, Any]:
    """Run one training to the end; return its metrics (plus timing), raise TrainingFailed.

    The training runs in `cwd`, by default its own trial folder: whatever the script writes next
    to itself (upstream's `final_model.int8.ptz`, `logs/`) stays with its trial, and trials running
    at once never read each other's files. `report(dict)` is called for each intermediate
    validation line. A training still running after `timeout_s` seconds (e.g. a hung collective
    holding its GPUs) is killed: reason `timeout`. `score_line`: the space's SCORE_LINE.
    """
    script, trial_dir = Path(script).resolve(), Path(trial_dir).resolve()
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / FAILURE_FILE).unlink(missing_ok=True)
    child_env = {**os.environ, **env, "OUT_DIR": str(trial_dir)}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    recorded = {**env, "OUT_DIR": str(trial_dir)}
    if visible is not None:
        recorded["CUDA_VISIBLE_DEVICES"] = visible
    (trial_dir / ENV_FILE).write_text(json.dumps(recorded, indent=1, sort_keys=True))
    (trial_dir / METRICS_FILE).unlink(missing_ok=True)

    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    summary = LogSummary(score_line=score_line)
    start = time.time()
    nan_seen = False
    proc = subprocess.Popen(launch_command(script, nproc), env=child_env, cwd=str(cwd or trial_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, errors="replace", bufsize=1, preexec_fn=die_with_parent,
                            start_new_session=True)
    pid_file = trial_dir / TRAINING_PID  # lets a driver that leaves stop this training before settling it
    timed_out = threading.Event()

    def kill_on_timeout() -> None:
        timed_out.set()
        kill_tree(proc.pid)

    watchdog = threading.Timer(timeout_s, kill_on_timeout) if timeout_s else None
    if watchdog is not None:
        watchdog.daemon = True
        watchdog.start()
    try:  # inside: a write that fails (a full disk) still ends in the finally that kills the training
        pid_file.write_text(json.dumps({"host": socket.gethostname(), "pid": proc.pid}))
        with open(trial_dir / STDOUT_LOG, "w") as out:
            for line in proc.stdout:  # type: ignore[union-attr]
                out.write(line)
                out.flush()
                tail.append(line.rstrip("\n"))
                event = parse_line(line)
                summary.add(event)
                loss = event.train_loss if isinstance(event, TrainStep) else (
                    event.val_loss if isinstance(event, ValStep) else 0.0)
                if not math.isfinite(loss):
                    nan_seen = True
                    break
                if isinstance(event, ValStep) and report is not None and math.isfinite(event.val_bpb):
                    report({"val_bpb": event.val_bpb, "val_loss": event.val_loss, "step": event.step})
        if nan_seen:
            kill_tree(proc.pid)
        returncode = proc.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if proc.poll() is None:
            kill_tree(proc.pid)
            proc.wait()
        pid_file.unlink(missing_ok=True)
    wall = time.time() - start
    tail_text = "\n".join(tail)
    if timed_out.is_set():
        raise _fail(trial_dir, attrs.TIMEOUT, tail_text, f"killed after {timeout_s:g} s (TRIAL_TIMEOUT_SECONDS)")
    if nan_seen:
        raise _fail(trial_dir, attrs.NAN_LOSS, tail_text, "a loss became NaN")
    if returncode != 0:
        raise _fail(trial_dir, attrs.CRASHED, tail_text, f"exit code {returncode}")
    metrics = load_finished_metrics(trial_dir)
    if metrics is None:
        metrics = metrics_from_log(summary, script)
        if metrics is None:
            raise _fail(trial_dir, attrs.CRASHED, tail_text, "no metrics.json and no final score line")
    if not all(isinstance(metrics.get(k), (int, float)) and math.isfinite(metrics[k])
               for k in ("val_bpb", "val_loss")):
        raise _fail(trial_dir, attrs.NAN_LOSS, tail_text, "the final val_bpb/val_loss is not finite")
    gpus = len([d for d in (visible or "").split(",") if d.strip()])
    train_ms = metrics.get("train_time_ms")
    if not isinstance(metrics.get("eval_seconds"), (int, float)) and summary.eval_seconds is not None:
        metrics["eval_seconds"] = summary.eval_seconds
    if summary.final is not None:
        metrics.setdefault("score_label", summary.final.label)
    logged_train = summary.train_seconds
    metrics.update({
        "train_seconds": float(train_ms) / 1000 if isinstance(train_ms, (int, float))
        else logged_train if logged_train is not None else wall,
        "wall_seconds": wall,
        "gpu_seconds": wall * gpus,
        "log_path": str(log_path(trial_dir)),
    })
    # atomic: on a full disk the script's own metrics.json stays whole
    write_atomic(trial_dir / METRICS_FILE, json.dumps(metrics, indent=1))
    return metrics


def train_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable; see docs/design.md for `config`.

    Optional keys beyond the contract: `prepare_data` (fill DATA_PATH and
    TOKENIZER_PATH from the bundled corpus for the trial's VOCAB_SIZE, used by
    `--smoke`), `docs`/`docs_val_docs`/`data_dir`/`prep_log` (fill them from the
    space's DOCS instead, `_prepare_from_docs`), `cwd` (working directory of the training, default its trial
    folder; the searcher has already made the environment's relative paths
    absolute), `timeout_s` (kill the training after that many seconds; the
    space's TRIAL_TIMEOUT_SECONDS) and `score_line` (the space's SCORE_LINE).
    """
    from ray import tune

    env = {str(k): str(v) for k, v in config["env"].items()}
    trial_dir = Path(config["trial_dir"])
    sync = config.get(SYNC_KEY)  # the driver's FileSink (search.trial_files): this folder reaches its disk
    prep_seconds = None
    try:
        announce(trial_dir, sync)
        if config.get("docs"):
            prep_seconds = prepare_from_docs(env, config, trial_dir)
        elif config.get("prepare_data"):
            prepare_bundled(env)
        done = load_finished_metrics(trial_dir, env)
        if done is None:
            done = run_training(env, config["script"], trial_dir, int(config.get("nproc", 0)),
                                cwd=config.get("cwd"), report=tune.report, timeout_s=config.get("timeout_s"),
                                score_line=config.get("score_line"))
        if prep_seconds is not None:
            done = {**done, "prep_seconds": round(prep_seconds, 2)}
    except TrainingFailed:
        raise
    except Exception as exc:  # the runner records every failure of its own: none means its worker died
        try:
            trial_dir.mkdir(parents=True, exist_ok=True)
            (trial_dir / FAILURE_FILE).write_text(json.dumps(
                {"reason": attrs.CRASHED, "message": f"{type(exc).__name__}: {exc}"[:500], "log_tail": ""}))
        except OSError:
            pass  # a full disk: the error itself says so
        raise
    finally:  # before Tune hears the result or the error: the driver then reads a complete folder
        _ship(trial_dir, sync)
    tune.report({**done, "training_done": True})


def _ship(trial_dir: Path, sync: Mapping[str, Any] | None) -> None:
    """Send the trial's files to the driver; a failure to send is a warning (the result still counts)."""
    try:
        ship(trial_dir, sync)
    except Exception as exc:  # noqa: BLE001
        print(f"warning: {trial_dir}: files not sent to the driver: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)
