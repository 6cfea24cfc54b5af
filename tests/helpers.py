"""What several test files share: spaces and tables written for a test, a real Ray head and two-node cluster,
the integrity every fault must leave, and the documents our exporter is compared on. One place; no test
file imports another (tests/ is on sys.path: `from helpers import ...`)."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from pgolf.data import load_corpus
from search.runner.replay import PARAM_PREFIX

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "scripts" / "fake_train.py"
GRID_TABLE = ROOT / "bench" / "grid_table.csv"
GRID_SPACE = ROOT / "spaces" / "bench_grid.py"


# ----------------------------------------------------------------------------- spaces and tables

def write_fake_space(path: Path, body: str, **settings) -> Path:
    """A space over tests/scripts/fake_train.py (artifact 5000 + 1000 X bytes, predicted exactly), with
    `settings` as upper-case assignments and `body` defining space(trial)."""
    head = [f"SCRIPT = {str(FAKE)!r}"]
    head += [f"{key} = {value!r}" for key, value in settings.items()]
    head.append("def PREDICT_BYTES(env):\n    return int(5000 + 1000 * float(env['X']))")
    path.write_text("\n".join(head) + "\n" + body)
    return path


def grid_module():
    spec = importlib.util.spec_from_file_location("_bench_grid_for_tests", GRID_SPACE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_grid() -> dict[str, list]:
    """The first value of the three most expensive knobs, every value of the others."""
    grid = dict(grid_module().GRID)
    return {k: (v[:1] if k in ("VOCAB_SIZE", "NUM_LAYERS", "MODEL_DIM") else v) for k, v in grid.items()}


def write_subtable(path: Path, grid: dict[str, list], source: Path = GRID_TABLE) -> list[dict[str, str]]:
    """The rows of a committed grid table (default bench/grid_table.csv) that lie in `grid`, as a CSV
    at `path`, with the source's metadata beside it."""
    meta = source.with_name(source.name.removesuffix(".csv") + ".meta.json")
    if meta.is_file():
        path.with_name(path.name.removesuffix(".csv") + ".meta.json").write_text(meta.read_text())
    with source.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    wanted = {k: {float(v) for v in values} for k, values in grid.items()}
    keep = [r for r in rows if all(float(r[PARAM_PREFIX + k]) in wanted[k] for k in grid)]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(keep)
    return keep


def write_subspace(path: Path, grid: dict[str, list], budget: int, predict_from_table: Path | None = None) -> Path:
    """A copy of spaces/bench_grid.py over `grid` with `budget`."""
    module = grid_module()
    base = {k: grid[k][0] for k in grid}
    lines = [
        f"SCRIPT = {str(ROOT / module.SCRIPT)!r}",
        "GPUS_PER_TRIAL = 0",
        f"GRID = {grid!r}",
        f"SMOKE_ENV = {module.SMOKE_ENV!r}",
        "FIXED_ENV = dict(SMOKE_ENV)",
        f"BUDGET_BYTES = {budget}",
        f"POINTS_TO_EVALUATE = [{base!r}]",
        "def space(trial):",
        "    env = {n: trial.suggest_categorical(n, v) for n, v in GRID.items()}",
        "    env['ATTN_BITS'] = env['EMBED_BITS'] = env['MLP_BITS']",
        "    return env",
    ]
    if predict_from_table is not None:
        lines += ["from search.runner.replay import table_predictor",
                  f"PREDICT_BYTES = table_predictor({str(predict_from_table)!r})"]
    path.write_text("\n".join(lines) + "\n")
    return path



# ----------------------------------------------------------------------------- clusters and experiments

def check_experiment_intact(folder: Path) -> list:
    """The integrity every fault must leave: study.db with nothing RUNNING, trials.csv one row per
    trial with the study's state, and every training that finished (trials/N/metrics.json) COMPLETE
    in the study with its own numbers. Returns the study's trials."""
    import json

    import optuna
    from optuna.trial import TrialState

    from search.core.layout import storage_url
    from search.store.trials_csv import read_trials_csv

    names = optuna.study.get_all_study_names(storage_url(folder))
    assert len(names) == 1, names
    trials = optuna.load_study(study_name=names[0], storage=storage_url(folder)).get_trials()
    assert not [t.number for t in trials if t.state == TrialState.RUNNING]
    rows = read_trials_csv(folder)
    numbers = [int(r["number"]) for r in rows]
    assert len(numbers) == len(set(numbers))
    states = {t.number: t.state.name for t in trials if t.state != TrialState.WAITING}
    assert {int(r["number"]): r["state"] for r in rows} == states
    for metrics_path in (folder / "trials").glob("*/metrics.json"):
        number = int(metrics_path.parent.name)
        metrics = json.loads(metrics_path.read_text())
        trial = trials[number]
        assert trial.state == TrialState.COMPLETE, (number, trial.state, trial.user_attrs.get("reason"))
        assert trial.values == [metrics["val_bpb"], metrics["bytes_total"]]
    return trials


def kill_search_when(cmd: list[str], cwd: Path, ready: Callable[[], bool], timeout_s: float = 300) -> None:
    """Run a search driver (`python -m search.run ...`) and SIGKILL it as soon as `ready()` holds, as a
    crash or an OOM kill would; fails if the search ends (or the timeout passes) before that."""
    driver = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout_s
    while not ready() and time.time() < deadline and driver.poll() is None:
        time.sleep(0.5)
    assert driver.poll() is None, "the search ended before it could be killed"
    driver.send_signal(signal.SIGKILL)
    driver.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _wait_for_block(proc: subprocess.Popen, log: Path, deadline: float) -> None:
    """Until `ray start --block` says it is up (it then blocks forever); its log's tail if it never does."""
    while "block forever" not in log.read_text() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert "block forever" in log.read_text(), f"{log.name}: ray start did not come up:\n{log.read_text()[-2000:]}"


@contextlib.contextmanager
def head_node(log_dir: Path, num_cpus: int = 2, object_store_bytes: int = 200_000_000
              ) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real head node, `ray start --head --block` on 127.0.0.1, as a user's cluster runs: its own short
    temp dir (socket paths are limited to ~100 bytes), so its record of the cluster is written there, not
    in /tmp/ray, and nothing of it outlives the block. Logs to log_dir/head.log. Yields (address, its
    process); on leaving it is stopped with SIGTERM and waited for until nothing answers at its port."""
    port = free_port()
    log = log_dir / "head.log"
    temp_dir = tempfile.mkdtemp(prefix="rayhead", dir="/tmp")
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", f"--port={port}",
           "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}", "--include-dashboard=false",
           "--disable-usage-stats", f"--object-store-memory={object_store_bytes}", f"--temp-dir={temp_dir}",
           "--block"]
    head = None
    try:
        with log.open("w") as out:
            head = subprocess.Popen(cmd, cwd=log_dir, stdout=out, stderr=subprocess.STDOUT)
        _wait_for_block(head, log, time.time() + 120)
        yield f"127.0.0.1:{port}", head
    finally:
        _stop(head)
        deadline = time.time() + 30  # gone for good before the caller starts a cluster of its own
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                break
            time.sleep(0.5)
        shutil.rmtree(temp_dir, ignore_errors=True)


@contextlib.contextmanager
def two_nodes(log_dir: Path, cpus_per_node: int = 1, worker_resources: dict[str, float] | None = None,
              worker_hides: Path | None = None) -> Iterator[tuple[str, subprocess.Popen, subprocess.Popen]]:
    """A real two-node Ray cluster on this machine: `head_node` and a worker `ray start --address`
    (joining with RAY_AUTH_MODE=token, as the README says), `--block`. `worker_resources`: the worker's
    custom resources (`ray start --resources`); `worker_hides`: a folder the worker cannot see, as on a
    machine without a shared disk (the worker runs in its own mount namespace, `unshare -m`, with an empty
    tmpfs mounted over it; the worker's view of a path P is /proc/<worker pid>/root/P). Yields (address,
    head process, worker process); stops both on leaving (logs: log_dir/head.log and worker.log)."""
    with head_node(log_dir, cpus_per_node, object_store_bytes=100_000_000) as (address, head):
        cmd = [str(Path(sys.executable).with_name("ray")), "start", f"--address={address}",
               "--node-ip-address=127.0.0.1", f"--num-cpus={cpus_per_node}", "--disable-usage-stats",
               "--object-store-memory=100000000", "--block"]
        if worker_resources:
            cmd.append(f"--resources={json.dumps(worker_resources)}")
        if worker_hides is not None:
            worker_hides.mkdir(parents=True, exist_ok=True)
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"',
                   str(worker_hides), *cmd]
        worker_log = log_dir / "worker.log"
        worker = None
        try:
            with worker_log.open("w") as out:
                worker = subprocess.Popen(cmd, cwd=log_dir, stdout=out, stderr=subprocess.STDOUT,
                                          env={**os.environ, "RAY_AUTH_MODE": "token"})
            _wait_for_block(worker, worker_log, time.time() + 120)
            yield address, head, worker
        finally:
            _stop(worker)


# ----------------------------------------------------------------------------- the exporter's documents

EXPORTER_VOCAB = 512
EXPORTER_VAL_DOCS = 60
EXPORTER_SHARD_TOKENS = 50_000
EDGE_CASES = {
    5: "",
    17: "   \n\t  ",
    23: "Tab\x00separated\x00fields\x00with NULs, and a trailing one\x00",
    41: "\n\n   Surrounded by whitespace: the exporter strips it for its tokenizer only.   \n\n",
    77: "Ünïcödé — “quotes”, 汉字, 日本語のテキスト, emoji 🙂🚀 and math ∑∫√ for byte fallback.",
    150: "Digits 1234567890 split one by one: 3.14159, 2026-12-01, 0xDEADBEEF.",
}


def reference_docs() -> list[str]:
    docs = load_corpus().docs[:300]
    for position, text in sorted(EDGE_CASES.items()):
        docs.insert(position, text)
    return docs


def write_reference_docs(path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for text in reference_docs():
            f.write(json.dumps({"text": text}) + "\n")
    return path
