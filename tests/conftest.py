"""Shared test fixtures: one real data preparation per test session, reused by every test file,
a local Ray cluster, and a probe for fake trainings left running."""

from __future__ import annotations

import contextlib
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

import pytest

from pgolf.data import Prepared, prepare


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session-wide output directory for prepared vocabularies (tokenizers/ and datasets/)."""
    return tmp_path_factory.mktemp("pgolf_data")


@pytest.fixture(scope="session")
def prepared_512(data_dir: Path) -> Prepared:
    """The bundled Gutenberg corpus with a real 512-piece SentencePiece BPE and competition shards.

    Use `prepared_512.env()` for DATA_PATH / TOKENIZER_PATH / VOCAB_SIZE.
    """
    return prepare(512, data_dir, quiet=True)


@contextlib.contextmanager
def local_cluster(num_cpus: int = 2, num_gpus: int | None = None) -> Iterator[None]:
    """A fresh local Ray cluster (never one a `ray start` left behind), quiet and small; logical GPUs
    let tests exercise GPU scheduling without hardware. Shut down on leaving."""
    import ray

    ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
             object_store_memory=200 * 1024**2, log_to_driver=False, logging_level="ERROR")
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def start_cluster() -> Callable[..., contextlib.AbstractContextManager]:
    """`with start_cluster(num_cpus=..., num_gpus=...):` for module-scoped cluster fixtures."""
    return local_cluster


@pytest.fixture
def local_ray():
    """A fresh local 2-CPU Ray cluster for one test."""
    with local_cluster():
        yield


@pytest.fixture
def fake_trainings_alive() -> Callable[[str], list[int]]:
    """alive(marker): PIDs of tests/scripts/fake_train.py processes (torchrun launching it included)
    whose environment mentions marker, e.g. the test's tmp folder."""
    def alive(marker: str) -> list[int]:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if b"fake_train.py" in Path(f"/proc/{pid}/cmdline").read_bytes() \
                        and marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                    found.append(int(pid))
            except OSError:
                continue
        return found
    return alive


def check_experiment_intact(folder: Path) -> list:
    """The integrity every fault must leave: study.db with nothing RUNNING, trials.csv one row per
    trial with the study's state, and every training that finished (trials/N/metrics.json) COMPLETE
    in the study with its own numbers. Returns the study's trials."""
    import json

    import optuna
    from optuna.trial import TrialState

    from search.results import read_trials_csv, storage_url

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


@pytest.fixture
def experiment_intact() -> Callable[[Path], list]:
    return check_experiment_intact


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


@contextlib.contextmanager
def two_nodes(log_dir: Path, cpus_per_node: int = 1, worker_resources: dict[str, float] | None = None,
              worker_hides: Path | None = None) -> Iterator[tuple[str, subprocess.Popen, subprocess.Popen]]:
    """A real two-node Ray cluster on this machine: `ray start --head` and a worker `ray start --address`
    (joining with RAY_AUTH_MODE=token, as the README says), both `--block`, in a private temp dir.
    `worker_resources`: the worker's custom resources (`ray start --resources`); `worker_hides`: a
    folder the worker cannot see, as on a machine without a shared disk (the worker runs in its own
    mount namespace, `unshare -m`, with an empty tmpfs mounted over it; the worker's view of a path P
    is /proc/<worker pid>/root/P). Yields (address, head process, worker process); stops both on leaving."""
    ray = Path(sys.executable).with_name("ray")
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="raynodes", dir="/tmp")  # socket paths are limited to ~100 bytes
    common = [f"--num-cpus={cpus_per_node}", "--disable-usage-stats", "--object-store-memory=100000000", "--block"]
    head_log, worker_log = log_dir / "head.log", log_dir / "worker.log"
    head = worker = None
    try:
        with head_log.open("w") as out:
            head = subprocess.Popen([str(ray), "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                                     "--include-dashboard=false", f"--temp-dir={temp_dir}", *common],
                                    cwd=log_dir, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while "block forever" not in head_log.read_text() and time.time() < deadline and head.poll() is None:
            time.sleep(0.5)
        assert "block forever" in head_log.read_text(), head_log.read_text()[-2000:]
        cmd = [str(ray), "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", *common]
        if worker_resources:
            cmd.append(f"--resources={json.dumps(worker_resources)}")
        if worker_hides is not None:
            worker_hides.mkdir(parents=True, exist_ok=True)
            cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount -t tmpfs tmpfs "$0" && exec "$@"',
                   str(worker_hides), *cmd]
        with worker_log.open("w") as out:
            worker = subprocess.Popen(cmd, cwd=log_dir, stdout=out, stderr=subprocess.STDOUT,
                                      env={**os.environ, "RAY_AUTH_MODE": "token"})
        while "block forever" not in worker_log.read_text() and time.time() < deadline and worker.poll() is None:
            time.sleep(0.5)
        assert "block forever" in worker_log.read_text(), worker_log.read_text()[-2000:]
        yield f"127.0.0.1:{port}", head, worker
    finally:
        _stop(worker)
        _stop(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
