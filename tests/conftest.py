"""Fixtures every test folder shares: one real data preparation per session, one real smoke search per
session for the tests that only read one, Ray clusters (a fresh one per test, per module, or the
session's), the integrity check every fault must leave, and a probe for fake trainings left running.
Shared plain helpers live in tests/helpers.py.

Markers (pyproject.toml): `ray` (this process starts or joins a Ray cluster), `slow` (over ~2.5 s on 2 cores:
`pytest -m "not slow"` is the fast loop), `nodes` (a real two-node cluster: `ray start` twice, one node
in its own mount namespace), `records` (reads ../shared/conformance/records, skipped without it)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest

from helpers import ROOT, check_experiment_intact, head_node
from pgolf.data import Prepared, prepare


def _session_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest, name: str) -> Path:
    """A folder for the whole run: one per session, shared by all xdist workers."""
    if not hasattr(request.config, "workerinput"):  # not an xdist worker
        return tmp_path_factory.mktemp(name)
    shared = tmp_path_factory.getbasetemp().parent / name
    shared.mkdir(exist_ok=True)
    return shared


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A session-wide output directory for prepared vocabularies (tokenizers/ and datasets/), one for
    all xdist workers (`prepare` is locked and cached: the first worker prepares, the others read)."""
    return _session_dir(tmp_path_factory, request, "pgolf_data")


@dataclass(frozen=True)
class FinishedSearch:
    """A `python -m search.run` that has ended: its experiment folder and what it printed."""

    folder: Path
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="session")
def smoke_search(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
                 ray_address: str) -> FinishedSearch:
    """The README's smoke search, shrunk: `spaces/tokenizer_width_depth.py --smoke`, 2 real trainings, seed 0,
    $3 per CPU-hour, on the session's head, run once for every test that reads a finished smoke experiment
    (xdist workers: the first runs it under a lock, the others read what it left). Tests copy the folder
    before writing to it. (The README's own command, which starts its cluster, runs in tests/docs.)"""
    shared = _session_dir(tmp_path_factory, request, "smoke_search")
    with open(shared / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "done.json"
        if not done.is_file():
            proc = subprocess.run(
                [sys.executable, "-m", "search.run", "spaces/tokenizer_width_depth.py", "--smoke", "--num-samples",
                 "2", "--name", "smoke", "--results-dir", str(shared / "results"), "--address", ray_address,
                 "--seed", "0", "--gpu-hour-price", "3"], cwd=ROOT, capture_output=True, text=True, timeout=540)
            done.write_text(json.dumps({"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}))
        ran = json.loads(done.read_text())
    search = FinishedSearch(shared / "results" / "smoke", ran["returncode"], ran["stdout"], ran["stderr"])
    assert search.returncode == 0, search.stderr[-3000:]
    return search


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


@pytest.fixture(scope="session")
def ray_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """HOST:PORT of a 2-CPU `ray start --head` kept for the session (one per xdist worker), for searches
    that only need a cluster to run on (`search.run --address`): joining one spares each search the
    start and stop of its own (~3.5 CPU-s and as many seconds on 2 cores, measured). A test about
    starting a cluster, a lost node or a killed driver starts its own."""
    with head_node(tmp_path_factory.mktemp("ray_head")) as (address, _):
        yield address


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


@pytest.fixture
def experiment_intact() -> Callable[[Path], list]:
    """check(folder): the integrity every fault must leave (`helpers.check_experiment_intact`)."""
    return check_experiment_intact


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that asks for a Ray cluster fixture is a `ray` test (two-node tests carry the mark
    themselves)."""
    for item in items:
        if {"local_ray", "start_cluster", "ray_address"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.ray)
