"""A promotion's seeds: each run through Ray with the search's own runner (the trial's environment with a
new SEED, on the resources the search used), its result read back from its log, and seeds run elsewhere
read from their logs (`--reproductions`)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from pgolf.cluster import ClusterError
from pgolf.logs import find_logs, parse_log
from search.core.layout import FAILURE_FILE, HARDWARE_FILE, METRICS_FILE, STDOUT_LOG, log_path
from search.records.config import PromoteConfig, PromoteError, SeedResult
from search.runner.cluster import start_ray, trial_resources
from search.runner.trainable import train_trial
from search.runner.trial_files import start_sink, trial_config


def read_reproductions(folder: Path, score_line: str | None = None) -> list[SeedResult]:
    """Seeds of the same configuration run elsewhere: every training log in `folder`, read with pgolf.logs
    (score, `Total submission size`, training and evaluation time), each judged and limit-checked like ours."""
    if not folder.is_dir():
        raise PromoteError(f"--reproductions {folder} is not a folder; pass a folder of training logs")
    found = []
    for log in find_logs(folder):
        summary = parse_log(log, score_line)
        if summary.final is None or summary.bytes_total is None:
            raise PromoteError(f"{log} has no final score line or no `Total submission size` line; "
                               "pass complete training logs to --reproductions")
        found.append(SeedResult(seed=-1, val_loss=summary.final.val_loss, val_bpb=summary.final.val_bpb,
                                bytes_total=int(summary.bytes_total), bytes_code=0, steps=summary.last_step,
                                ms_per_step=None, log_path=log, metrics={}, train_seconds=summary.train_seconds,
                                eval_seconds=summary.eval_seconds, reproduction=log.name))
    if not found:
        raise PromoteError(f"--reproductions {folder} holds no training log (*.log/*.txt with a score line)")
    return found


def visible_gpu_names() -> list[str]:
    """Names of the GPUs this process may use (CUDA_VISIBLE_DEVICES), via nvidia-smi; [] without one."""
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if not visible or shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [[c.strip() for c in line.split(",", 2)] for line in out.splitlines() if line.count(",") >= 2]
    return [name for index, uuid, name in rows if index in visible or uuid in visible]


def seed_trainable(config: dict[str, Any]) -> None:
    """Ray trainable for one seed: the trial's env with SEED set, then the shared runner."""
    seed = int(config["seed"])
    seed_dir = Path(config["work_dir"]) / f"seed{seed}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    (seed_dir / HARDWARE_FILE).write_text(json.dumps(
        {"host": platform.node(), "gpus": visible_gpu_names(), "cpu": platform.processor() or platform.machine()}))
    env = {**config["env"], "SEED": str(seed), "RUN_ID": f"{config['run_id']}_seed{seed}"}
    train_trial({**config, "env": env, "trial_dir": str(seed_dir)})


def seed_dirname(trial: Any) -> str:
    """Ray's folder name for a seed's trial (the default would spell out the whole env)."""
    return f"seed{trial.config['seed']}_{trial.trial_id}"


def run_seeds(cfg: PromoteConfig, address: str | None = None, num_cpus: int | None = None,
              num_gpus: int | None = None) -> None:
    """All seeds as one Tune run; Ray runs as many at once as the cluster's resources allow."""
    from ray import tune

    try:
        start_ray(address, num_cpus, num_gpus, object_store_memory=200 * 1024**2 if cfg.smoke else None)
    except ClusterError as exc:
        raise PromoteError(str(exc)) from None

    nproc = 0 if cfg.smoke else cfg.gpus_per_trial
    trainable = tune.with_resources(seed_trainable, trial_resources(cfg.gpus_per_trial, cfg.cpus_per_trial,
                                                                    cfg.resources))
    work_dir = cfg.work_dir.resolve()  # each seed's folder reaches it from whichever node ran the seed
    sink = start_sink(work_dir)  # held until the seeds end: the actor lives as long as its handle
    param_space = {
        "seed": tune.grid_search(cfg.seeds), "env": cfg.env, "script": str(cfg.script.resolve()),
        "work_dir": str(work_dir), "nproc": nproc, "prepare_data": cfg.smoke,
        "run_id": f"promote_{cfg.name}", **trial_config(sink),
    }
    tuner = tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=len(cfg.seeds),
                                    trial_dirname_creator=seed_dirname, trial_name_creator=seed_dirname),
        run_config=tune.RunConfig(name="ray", storage_path=str(cfg.work_dir),
                                  failure_config=tune.FailureConfig(max_failures=0), verbose=0),
    )
    grid = tuner.fit()
    errors = {r.config.get("seed"): r.error for r in grid if r.error is not None}
    failed = sorted(errors)
    if failed:
        seed_dir = cfg.work_dir / f"seed{failed[0]}"
        raise PromoteError(f"seed {failed[0]} failed ({failure_summary(seed_dir, errors[failed[0]])}); "
                           f"see {seed_dir / STDOUT_LOG}, fix the cause and promote again")


def failure_summary(seed_dir: Path, error: BaseException | None = None) -> str:
    """The runner's reason for a failed training plus the script's own `error:` line, if any
    (without the runner's record: Ray's error, `error`, in one line)."""
    path = seed_dir / FAILURE_FILE
    if not path.is_file():
        lines = [line.strip() for line in str(error or "").splitlines() if line.strip()]
        return "no failure.json: the Ray worker died" + (f": {lines[-1][:300]}" if lines else "; see the Ray logs")
    info = json.loads(path.read_text())
    errors = [line.strip() for line in str(info.get("log_tail", "")).splitlines() if line.strip().startswith("error:")]
    detail = errors[-1] if errors else str(info.get("message") or "")
    return f"{info.get('reason', 'failed')}: {detail}" if detail else str(info.get("reason", "failed"))


def collect(cfg: PromoteConfig) -> list[SeedResult]:
    """Each seed's score from its log's final line (the numbers the record states)."""
    results = []
    for seed in cfg.seeds:
        folder = cfg.work_dir / f"seed{seed}"
        log = log_path(folder)
        metrics_path = folder / METRICS_FILE
        if not metrics_path.is_file() or not log.is_file():
            raise PromoteError(f"seed {seed} left no metrics.json/log in {folder}; look at its stdout.log and promote again")
        metrics = json.loads(metrics_path.read_text())
        summary = parse_log(log, cfg.score_line)
        if summary.final is None:
            raise PromoteError(f"{log} has no final_..._exact score line; the script must print one (see docs/design.md)")
        bytes_total = summary.bytes_total if summary.bytes_total is not None else int(metrics["bytes_total"])
        steps = metrics.get("steps")
        train_ms = metrics.get("train_time_ms")
        ms_per_step = float(train_ms) / steps if isinstance(train_ms, (int, float)) and steps else None
        train_s = metrics.get("train_seconds", summary.train_seconds)
        eval_s = metrics.get("eval_seconds", summary.eval_seconds)
        results.append(SeedResult(seed=seed, val_loss=summary.final.val_loss, val_bpb=summary.final.val_bpb,
                                  bytes_total=int(bytes_total), bytes_code=int(metrics["bytes_code"]),
                                  steps=steps, ms_per_step=ms_per_step, log_path=log, metrics=metrics,
                                  train_seconds=train_s, eval_seconds=eval_s))
    return results
