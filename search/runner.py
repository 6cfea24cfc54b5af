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

import ctypes
import json
import logging
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Mapping

from pgolf.cluster import join_cluster
from pgolf.logs import LogSummary, TrainStep, ValStep, parse_line
from search.trial_files import SYNC_KEY, announce, ship, write_atomic

LOG_TAIL_LINES = 40
PREP_LOG = "data_prep.log"  # experiment folder: one line per vocab prepared from the space's DOCS
TRAINING_PID = "training.pid"  # trial folder, while its training runs: {"host", "pid"}
_PR_SET_PDEATHSIG = 1
# Keys the runner adds to env.json on top of config["env"]; not part of a trial's identity.
_RUNNER_KEYS = ("OUT_DIR", "CUDA_VISIBLE_DEVICES")


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


def _not_incomplete_trials(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Trials did not complete")


def start_ray(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None,
              object_store_memory: int | None = None) -> bool:
    """Join the cluster at `address`, or start an embedded one; True when this call started Ray.

    Ray's own console output is quietened: the search prints its own progress.
    """
    import ray

    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # a failed trial is one progress line with its root cause: no traceback per trial from Tune, no
    # "unhandled error" for a stopped trial's result, no closing list of the trials that failed
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    logging.getLogger("ray.tune.tune").addFilter(_not_incomplete_trials)
    kwargs = dict(log_to_driver=False, logging_level="ERROR", configure_logging=True)
    if address:
        join_cluster(address, **kwargs)
    else:
        # address "local": always a new cluster, never one a past `ray start` left in /tmp/ray
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 object_store_memory=object_store_memory, **kwargs)
    return True


def trial_resources(gpus_per_trial: int, cpus_per_trial: int = 1, custom: Mapping[str, float] | None = None):
    """What to pass to `tune.with_resources` for one trial (one bundle, one node); `custom`: the
    space's RESOURCES_PER_TRIAL (nodes started with `ray start --resources`)."""
    from ray.tune import PlacementGroupFactory

    bundle: dict[str, float] = {"CPU": max(1, int(cpus_per_trial)), **(custom or {})}
    if gpus_per_trial > 0:
        bundle["GPU"] = int(gpus_per_trial)
    return PlacementGroupFactory([bundle])


def _die_with_parent() -> None:
    """preexec_fn: have the kernel SIGKILL the child when its parent thread dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: cleanup in train_trial's finally still applies


def _stat(pid: int | str) -> list[str]:
    """/proc/PID/stat's fields after the command name: [state, ppid, …] (OSError when gone)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _descendants(pid: int) -> list[int]:
    """Every process under `pid` (Linux /proc; [] elsewhere)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                ppid = int(_stat(entry)[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_training(trial_dir: Path, wait_s: float = 15.0) -> None:
    """Kill the training still running for `trial_dir` on this host (its process must carry OUT_DIR=trial_dir,
    so a reused PID is never touched) and wait for it to end: its folder is then final, and a trial settled
    from it cannot gain a metrics.json afterwards."""
    try:
        info = json.loads((trial_dir / TRAINING_PID).read_text())
        pid = int(info["pid"])
        if info.get("host") != socket.gethostname():
            return
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return
    if f"\0OUT_DIR={trial_dir}\0".encode() not in b"\0" + environ + b"\0":
        return
    _kill_tree(pid)
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            if _stat(pid)[0] == "Z":
                return  # dead, not yet reaped
        except (OSError, IndexError):
            return
        time.sleep(0.05)


def _kill_tree(pid: int) -> None:
    """SIGKILL a launched training and everything under it. torchrun starts each rank in a session
    of its own, so killing the launcher's process group alone would leave the ranks running."""
    for victim in [pid, *_descendants(pid)]:
        for kill in (os.killpg, os.kill):
            try:
                kill(victim, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


RANK_GUARD = Path(__file__).with_name("rank_guard.py")


def launch_command(script: Path, nproc: int) -> list[str]:
    """`torchrun --standalone --nproc_per_node=N rank_guard.py script` for N > 0 (each rank runs the
    script under `search/rank_guard.py`, so it dies with torchrun), else `python script`."""
    if nproc > 0:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}", str(RANK_GUARD), str(script)]
    return [sys.executable, str(script)]


def _identity(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in _RUNNER_KEYS}


def load_finished_metrics(trial_dir: Path, env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """metrics.json of a finished training in trial_dir (for env, when given), else None."""
    metrics_path, env_path = trial_dir / "metrics.json", trial_dir / "env.json"
    if not metrics_path.is_file():
        return None
    try:
        metrics = json.loads(metrics_path.read_text())
        if env is not None:
            # Same configuration: every variable the trial asked for, as recorded (the runner may
            # have added its own, e.g. DATA_PATH prepared for --smoke).
            recorded = json.loads(env_path.read_text())
            if any(recorded.get(k) != str(v) for k, v in _identity(env).items()):
                return None
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict) or "val_bpb" not in metrics or "bytes_total" not in metrics:
        return None
    return metrics


def _prepare_data(env: dict[str, str]) -> None:
    """Fill DATA_PATH/TOKENIZER_PATH from the bundled corpus for the trial's VOCAB_SIZE."""
    if "DATA_PATH" in env and "TOKENIZER_PATH" in env:
        return
    import pgolf.data

    vocab = int(env.get("VOCAB_SIZE", "1024"))
    prepared = pgolf.data.prepare(vocab, pgolf.data.default_cache_dir())
    env.setdefault("DATA_PATH", str(prepared.data_path))
    env.setdefault("TOKENIZER_PATH", str(prepared.tokenizer_path))


def prepare_vocab(vocab: int, docs: str, out: str, val_docs: int | None) -> tuple[dict[str, str], float, bool]:
    """`pgolf.data.prepare` of one vocab from a space's DOCS, timed: (its env, seconds, whether built now).
    Its file lock makes concurrent trials of one vocab prepare it once; the others wait and read it.
    The documents are encoded by as many Ray tasks as the cluster has idle CPUs (asking for none: trials
    that hold every CPU while they wait for these data must not starve them), else here."""
    import ray

    import pgolf.data

    started = time.time()
    idle = int(ray.available_resources().get("CPU", 0)) if ray.is_initialized() else 0
    prepared = pgolf.data.prepare(vocab, out, docs, val_docs=val_docs, quiet=True, workers=max(1, idle),
                                  task_cpus=0)
    return prepared.env(), time.time() - started, not prepared.cached


def _prepare_from_docs(env: dict[str, str], config: Mapping[str, Any], trial_dir: Path) -> float:
    """Fill DATA_PATH/TOKENIZER_PATH from the space's DOCS for the trial's VOCAB_SIZE, prepared (once per
    vocab, on the shared data folder) by a Ray task that takes no CPU from the trials; returns its seconds.
    A preparation done now is one line of the experiment's PREP_LOG."""
    import ray

    vocab = int(env.get("VOCAB_SIZE", "1024"))
    args = (vocab, config["docs"], config["data_dir"], config.get("docs_val_docs"))
    if ray.is_initialized():
        data_env, seconds, built = ray.get(ray.remote(num_cpus=0)(prepare_vocab).remote(*args))
    else:
        data_env, seconds, built = prepare_vocab(*args)
    env["DATA_PATH"], env["TOKENIZER_PATH"] = data_env["DATA_PATH"], data_env["TOKENIZER_PATH"]
    trial_dir.mkdir(parents=True, exist_ok=True)
    (trial_dir / "data_prep.json").write_text(json.dumps({"vocab": vocab, "seconds": round(seconds, 2),
                                                          "prepared_now": built, **data_env}, indent=1))
    if built:
        with open(config["prep_log"], "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} prepared sp{vocab} from {config['docs']} in "
                      f"{seconds:.1f} s: {data_env['DATA_PATH']} (trial folder {trial_dir.name})\n")
    return seconds


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


_RANK_PREFIX = re.compile(r"^\[(?:default)?(?:rank)?(\d+)\]:\s?")
# The line that ends a traceback: `module.ExceptionType: message` (or a bare `SomethingError`).
# Ranks without torchrun's prefixes print their tracebacks into one pipe, interleaved even inside
# lines, so the first line of that shape is taken, not merely the first unindented one.
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(:(?: .*)?)?$")
_EXCEPTION_ENDINGS = ("Error", "Exception", "Interrupt", "Exit")


def root_cause(lines: list[str]) -> str | None:
    """The script's own reason for failing, from its output: its last `error:` line, else the
    first exception line after the first traceback starts (of the rank that printed it, when
    torchrun's `[rankN]:` prefixes tell ranks apart), so a user reads the cause, not torchrun's summary."""
    errors = [_RANK_PREFIX.sub("", line).strip() for line in lines]
    errors = [line for line in errors if line.startswith("error:")]
    if errors:
        return errors[-1][:500]
    tb_rank: str | None = None
    inside = False
    for line in lines:
        prefix = _RANK_PREFIX.match(line)
        rank = prefix.group(1) if prefix else ""
        text = line[prefix.end():] if prefix else line
        if not inside:
            if text.startswith("Traceback (most recent call last)"):
                inside, tb_rank = True, rank
            continue
        if rank != tb_rank:
            continue  # another rank's lines, interleaved
        exception = _EXCEPTION_LINE.match(text.rstrip())
        if exception and (exception.group(2) is not None or exception.group(1).endswith(_EXCEPTION_ENDINGS)):
            return text.strip()[:500]
    return None


# A script's own words for a diverged training, whatever its exit path (our trainer exits 3 with
# "error: non-finite train loss at step N" before any NaN line reaches the log).
_DIVERGED = re.compile(r"(?i)diverg|(\bnan\b|\binf\b|non-finite|not finite).*\b(loss|grad\w*)\b"
                       r"|\b(loss|grad\w*)\b.*(\bnan\b|\binf\b|non-finite|not finite)")


def diverged(cause: str | None) -> bool:
    """Whether a failed script's root cause says its loss (or gradients) went non-finite."""
    return bool(cause and _DIVERGED.search(cause))


def _fail(trial_dir: Path, reason: str, tail: str, message: str = "") -> TrainingFailed:
    try:
        cause = root_cause((trial_dir / "stdout.log").read_text(errors="replace").splitlines())
    except OSError:
        cause = None
    if cause:
        message = f"{cause} ({message})" if message else cause
        if reason == "crashed" and diverged(cause):
            reason = "nan_loss"
    (trial_dir / "failure.json").write_text(json.dumps({"reason": reason, "message": message,
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
    (trial_dir / "failure.json").unlink(missing_ok=True)
    child_env = {**os.environ, **env, "OUT_DIR": str(trial_dir)}
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    recorded = {**env, "OUT_DIR": str(trial_dir)}
    if visible is not None:
        recorded["CUDA_VISIBLE_DEVICES"] = visible
    (trial_dir / "env.json").write_text(json.dumps(recorded, indent=1, sort_keys=True))
    (trial_dir / "metrics.json").unlink(missing_ok=True)

    tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    summary = LogSummary(score_line=score_line)
    start = time.time()
    nan_seen = False
    proc = subprocess.Popen(launch_command(script, nproc), env=child_env, cwd=str(cwd or trial_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, errors="replace", bufsize=1, preexec_fn=_die_with_parent,
                            start_new_session=True)
    pid_file = trial_dir / TRAINING_PID  # lets a driver that leaves stop this training before settling it
    timed_out = threading.Event()

    def kill_on_timeout() -> None:
        timed_out.set()
        _kill_tree(proc.pid)

    watchdog = threading.Timer(timeout_s, kill_on_timeout) if timeout_s else None
    if watchdog is not None:
        watchdog.daemon = True
        watchdog.start()
    try:  # inside: a write that fails (a full disk) still ends in the finally that kills the training
        pid_file.write_text(json.dumps({"host": socket.gethostname(), "pid": proc.pid}))
        with open(trial_dir / "stdout.log", "w") as out:
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
            _kill_tree(proc.pid)
        returncode = proc.wait()
    finally:
        if watchdog is not None:
            watchdog.cancel()
        if proc.poll() is None:
            _kill_tree(proc.pid)
            proc.wait()
        pid_file.unlink(missing_ok=True)
    wall = time.time() - start
    tail_text = "\n".join(tail)
    if timed_out.is_set():
        raise _fail(trial_dir, "timeout", tail_text, f"killed after {timeout_s:g} s (TRIAL_TIMEOUT_SECONDS)")
    if nan_seen:
        raise _fail(trial_dir, "nan_loss", tail_text, "a loss became NaN")
    if returncode != 0:
        raise _fail(trial_dir, "crashed", tail_text, f"exit code {returncode}")
    metrics = load_finished_metrics(trial_dir)
    if metrics is None:
        metrics = metrics_from_log(summary, script)
        if metrics is None:
            raise _fail(trial_dir, "crashed", tail_text, "no metrics.json and no final score line")
    if not all(isinstance(metrics.get(k), (int, float)) and math.isfinite(metrics[k])
               for k in ("val_bpb", "val_loss")):
        raise _fail(trial_dir, "nan_loss", tail_text, "the final val_bpb/val_loss is not finite")
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
        "log_path": str(trial_dir / "train.log") if (trial_dir / "train.log").is_file()
        else str(trial_dir / "stdout.log"),
    })
    # atomic: on a full disk the script's own metrics.json stays whole
    write_atomic(trial_dir / "metrics.json", json.dumps(metrics, indent=1))
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
            prep_seconds = _prepare_from_docs(env, config, trial_dir)
        elif config.get("prepare_data"):
            _prepare_data(env)
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
            (trial_dir / "failure.json").write_text(json.dumps(
                {"reason": "crashed", "message": f"{type(exc).__name__}: {exc}"[:500], "log_tail": ""}))
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
