"""Joining a Ray cluster that is already running (`search.run --address HOST:PORT`), as users with a
Ray cluster do: a real head started by `ray start --head` from another folder, the real trainer."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import free_port, two_nodes
from search.runner.process import descendants, kill_tree
from search.store.trials_csv import read_trials_csv

ROOT = Path(__file__).resolve().parents[2]
# `ray start` clusters and the stale /tmp/ray/ray_current_cluster record they share: one xdist worker runs
# them one after another (--dist loadgroup), as test_data's two-node test
pytestmark = pytest.mark.xdist_group("ray_start")


def test_an_address_nothing_answers_at_fails_at_once_with_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    cmd = [sys.executable, "-m", "search.run", "spaces/lowrank_q.py", "--smoke", "--results-dir",
           str(tmp_path), "--name", "nowhere", "--address", f"127.0.0.1:{port}"]
    started = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and time.time() - started < 60
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: cannot join the Ray cluster at 127.0.0.1:{port}")
    assert "ray start --head" in lines[0]
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_without_address_a_stale_ray_start_record_is_ignored(tmp_path: Path) -> None:
    """A head stopped uncleanly leaves its address in /tmp/ray/ray_current_cluster, which a plain
    ray.init() would try to join: the search starts its own cluster instead."""
    record = Path("/tmp/ray/ray_current_cluster")
    if record.exists():
        pytest.skip(f"{record} exists (a cluster started with `ray start` on this machine): not touched")
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(f"127.0.0.1:{free_port()}")  # nothing listens there
    try:
        cmd = [sys.executable, "-m", "search.run", "spaces/lowrank_q.py", "--smoke", "--num-samples", "1",
               "--results-dir", str(tmp_path), "--name", "own"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)  # joining it hangs
    finally:
        record.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["state"] for r in read_trials_csv(tmp_path / "own")].count("COMPLETE") == 1


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.nodes
@pytest.mark.ray
@pytest.mark.slow
def test_a_lost_node_is_run_again_on_the_surviving_one(tmp_path: Path, experiment_intact) -> None:
    """Head and worker `ray start` nodes on this machine (the worker joins with RAY_AUTH_MODE=token, as
    the README says); the worker node's raylet and its workers are SIGKILLed while a training runs there."""
    with two_nodes(tmp_path) as (address, _, worker):
        deadline = time.time()
        log = tmp_path / "launches.txt"
        space = tmp_path / "nodes.py"
        space.write_text(
            f"SCRIPT = {str(ROOT / 'tests' / 'scripts' / 'fake_train.py')!r}\nBUDGET_BYTES = 100_000\n"
            f"GPUS_PER_TRIAL = 0\nFIXED_ENV = {{'FAKE_LAUNCH_LOG': {str(log)!r}, 'FAKE_STEPS': 10, "
            "'FAKE_SLEEP': 1.0}\n"
            "def PREDICT_BYTES(env):\n    return int(5000 + 1000 * float(env['X']))\n"
            "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 5.0)}\n")
        results = tmp_path / "results"
        driver = subprocess.Popen([sys.executable, "-m", "search.run", str(space), "--results-dir", str(results),
                                   "--name", "nodes", "--num-samples", "3", "--address", address,
                                   "--seed", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        try:
            raylet = None
            victim = None
            while victim is None:
                assert time.time() < deadline + 120 and driver.poll() is None, "no training started on the worker"
                raylets = [p for p in descendants(worker.pid) if "raylet" in _cmdline(p).split(" ")[0]]
                raylet = raylets[0] if raylets else None
                if raylet:
                    victim = next((p for p in descendants(raylet) if "fake_train.py" in _cmdline(p)), None)
                time.sleep(0.3)
            # the node goes away whole, as a machine does: its raylet and every worker process under it (a
            # worker left alive a moment after its raylet could still finish the training and report it)
            kill_tree(raylet)
            out, err = driver.communicate(timeout=400)
        finally:
            if driver.poll() is None:
                driver.kill()
        assert driver.returncode == 0, err[-3000:]
        assert "its parameters run again" in err
        trials = experiment_intact(results / "nodes")
        lost = [t for t in trials if t.user_attrs.get("reason") == "node_lost"]
        assert len(lost) == 1 and lost[0].state.name == "FAIL"
        rerun = [t for t in trials if t.user_attrs.get("requeued_from") == lost[0].number]
        assert len(rerun) == 1 and rerun[0].state.name == "COMPLETE" and rerun[0].params == lost[0].params
        assert sum(t.state.name == "COMPLETE" for t in trials) == 3  # --num-samples trainings, the lost one aside
        assert "3 trainings in total" in out
        rows = {int(r["number"]): r for r in read_trials_csv(results / "nodes")}
        lost_row, rerun_row = rows[lost[0].number], rows[rerun[0].number]
        assert lost_row["reason"] == "node_lost" and lost_row["node"] and rerun_row["node"]
        assert lost_row["node"] != rerun_row["node"]  # both nodes: the lost worker, then the head
        assert rerun_row["requeued_from"] == str(lost[0].number) and rerun_row["requeued_because"] == "node_lost"
        assert f"trial {lost[0].number} on node {lost_row['node']}:" in err


def _seen_by(proc: subprocess.Popen, path: Path) -> Path:
    """`path` as the process (the worker in its own mount namespace) sees it."""
    return Path(f"/proc/{proc.pid}/root{path}")


@pytest.mark.nodes
@pytest.mark.ray
@pytest.mark.slow
def test_without_a_shared_disk_every_trial_file_reaches_the_head(tmp_path: Path) -> None:
    """A search joins a running cluster by address (`ray start` nodes started from another folder), and
    the worker cannot see the head's results folder (its own tmpfs over it); the trials and the promoted
    seeds run there (RESOURCES_PER_TRIAL), and their files still end up in the head's folders. (It took
    over the single-node join test: a second search, head and two trainings for what this one shows.)"""
    from pgolf.logs import check_record

    results = tmp_path / "results"
    results.mkdir()
    (results / "only_on_head").write_text("x")
    space = tmp_path / "worker_only.py"
    space.write_text((ROOT / "spaces" / "lowrank_q.py").read_text() + '\nRESOURCES_PER_TRIAL = {"worker": 1}\n')
    with two_nodes(tmp_path, cpus_per_node=2, worker_resources={"worker": 2}, worker_hides=results) as (
            address, _, worker):
        assert (results / "only_on_head").is_file() and not _seen_by(worker, results / "only_on_head").exists()
        proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--smoke", "--num-samples", "2",
                               "--results-dir", str(results), "--name", "apart", "--address", address],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "2 complete" in proc.stdout
        rows = [r for r in read_trials_csv(results / "apart") if r["state"] == "COMPLETE"]
        assert len(rows) == 2 and all(int(float(r["bytes_total"])) > 0 for r in rows)
        nodes = {r["node"] for r in rows}
        assert len(nodes) == 1 and "" not in nodes  # one worker ran them all
        for row in rows:
            trial_dir = Path(row["trial_dir"])
            assert _seen_by(worker, trial_dir / "train.log").is_file()  # written there, on the worker's disk
            for name in ("train.log", "metrics.json", "env.json", "stdout.log"):
                assert (trial_dir / name).is_file(), f"{trial_dir / name} did not reach the head"
            assert (trial_dir / "train.log").read_bytes() == _seen_by(worker, trial_dir / "train.log").read_bytes()
            assert json.loads((trial_dir / "metrics.json").read_text())["val_bpb"] == float(row["val_bpb"])

        best = min(rows, key=lambda r: float(r["val_bpb"]))
        out = tmp_path / "records"
        proc = subprocess.run([sys.executable, "-m", "search.promote", str(results / "apart"), "--trial",
                               best["number"], "--smoke", "--seeds", "2", "--out", str(out), "--name", "Apart",
                               "--author", "Test Author", "--github-id", "tester", "--address", address],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        seed_nodes = {json.loads(p.read_text())["node"] for p in (results / "apart").rglob("seed*/node.json")}
        assert seed_nodes == nodes  # the seeds ran on the worker too
    [record] = list(out.iterdir())
    check = check_record(record)
    assert check.matching and not check.note, check
    sub = json.loads((record / "submission.json").read_text())
    assert len(sub["seeds"]) == 2 and all((record / f"train_seed{s}.log").is_file() for s in sub["seeds"])
    assert (record / "train_gpt.py").is_file() and (record / "README.md").is_file()


@pytest.mark.slow
def test_a_search_that_keeps_losing_nodes_stops_with_one_line(tmp_path: Path) -> None:
    """Every training's Ray worker dies under it (as on nodes that keep going away): after
    --max-node-losses such trials the search stops with one line, and the lost parameters wait in the
    study for --resume."""
    space = tmp_path / "losing.py"
    space.write_text(
        f"SCRIPT = {str(ROOT / 'tests' / 'scripts' / 'fake_train.py')!r}\nBUDGET_BYTES = 100_000\n"
        "GPUS_PER_TRIAL = 0\nFIXED_ENV = {'FAKE_KILL_WORKER': 1, 'FAKE_STEPS': 4, 'FAKE_SLEEP': 0.2}\n"
        "def PREDICT_BYTES(env):\n    return int(5000 + 1000 * float(env['X']))\n"
        "def space(trial):\n    return {'X': trial.suggest_float('X', 0.0, 5.0)}\n")
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--results-dir", str(results), "--name",
                           "losing", "--num-samples", "4", "--max-concurrent", "1", "--num-cpus", "1",
                           "--max-node-losses", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "2 trials lost their Ray node" in errors[0] and "--resume" in errors[0]
    assert "--max-node-losses" in errors[0]
    rows = read_trials_csv(results / "losing")
    assert [r["reason"] for r in rows] == ["node_lost", "node_lost"]
    assert all(r["node"] for r in rows) and rows[1]["requeued_from"] == rows[0]["number"]
    import optuna

    study = optuna.load_study(study_name="losing", storage=f"sqlite:///{results / 'losing' / 'study.db'}")
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == study.trials[0].params  # for --resume


@pytest.mark.slow
def test_a_resource_no_node_has_fails_before_any_trial(tmp_path: Path) -> None:
    """RESOURCES_PER_TRIAL naming a resource the cluster lacks would leave every trial pending forever."""
    space = tmp_path / "nowhere.py"
    space.write_text((ROOT / "spaces" / "lowrank_q.py").read_text() + '\nRESOURCES_PER_TRIAL = {"h100_node": 1}\n')
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--smoke", "--results-dir", str(tmp_path),
                           "--name", "nowhere", "--num-cpus", "1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the Ray cluster has 0 of resource 'h100_node'"), lines
    assert "ray start --resources=" in lines[0] and not list((tmp_path / "nowhere" / "trials").glob("*"))
