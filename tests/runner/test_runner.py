"""search.runner's trainable without Ray: launching, log streaming, failures, upstream scripts without metrics.json."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.runner.metrics import load_finished_metrics
from search.runner.process import launch_command
from search.runner.trainable import TrainingFailed, run_training

ROOT = Path(__file__).resolve().parents[2]
FAKE = ROOT / "tests" / "scripts" / "fake_train.py"


def test_streams_val_lines_and_writes_trial_folder(tmp_path: Path) -> None:
    reports: list[dict] = []
    env = {"X": "2.5", "FAKE_STEPS": "3"}
    metrics = run_training(env, FAKE, tmp_path / "t", report=reports.append)
    assert [r["step"] for r in reports] == [1, 2, 3]
    assert reports[-1]["val_bpb"] == pytest.approx(metrics["val_bpb"], abs=1e-4)
    recorded = json.loads((tmp_path / "t" / "env.json").read_text())
    assert recorded["X"] == "2.5" and recorded["OUT_DIR"] == str((tmp_path / "t").resolve())
    assert load_finished_metrics(tmp_path / "t", env) == json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert load_finished_metrics(tmp_path / "t", {**env, "X": "3"}) is None  # another config: not reused
    assert Path(metrics["log_path"]).name == "train.log"


def test_upstream_script_without_metrics_json(tmp_path: Path) -> None:
    metrics = run_training({"X": "1", "FAKE_NO_METRICS": "1", "FAKE_BYTES": "12345"}, FAKE, tmp_path / "u")
    assert metrics["source"] == "log" and metrics["bytes_total"] == 12345
    assert metrics["bytes_code"] == len(FAKE.read_bytes())
    assert metrics["bytes_model"] == 12345 - metrics["bytes_code"]
    assert math.isfinite(metrics["val_bpb"]) and metrics["scheme"].startswith("final_")


@pytest.mark.parametrize("knob,reason,needle", [("FAKE_CRASH", "crashed", "fake crash"),
                                                ("FAKE_NAN", "nan_loss", "train_loss:nan")])
def test_failures_carry_reason_and_log_tail(tmp_path: Path, knob: str, reason: str, needle: str) -> None:
    with pytest.raises(TrainingFailed) as info:
        run_training({knob: "1", "FAKE_STEPS": "50", "FAKE_SLEEP": "0.05"}, FAKE, tmp_path / "f")
    assert info.value.reason == reason and needle in info.value.log_tail
    failure = json.loads((tmp_path / "f" / "failure.json").read_text())
    assert failure["reason"] == reason and needle in failure["log_tail"]
    assert not (tmp_path / "f" / "metrics.json").exists()
    if knob == "FAKE_NAN":  # killed at the first NaN, not run to the end
        assert "step:50/50" not in (tmp_path / "f" / "stdout.log").read_text()


def test_a_nan_training_that_wrote_metrics_before_its_kill_leaves_none(tmp_path: Path) -> None:
    """A training judged diverged may still write metrics.json between its NaN line and its kill (it
    happened under load: the driver then kept it as a finished result). Here the script writes it first."""
    script = tmp_path / "nan_after_metrics.py"
    script.write_text(
        "import json, os, time\n"
        "json.dump({'val_bpb': 5.25, 'val_loss': 3.7, 'bytes_total': 7000},"
        " open(os.path.join(os.environ['OUT_DIR'], 'metrics.json'), 'w'))\n"
        "print('step:2/4 train_loss:nan train_time:20ms step_avg:10.00ms', flush=True)\n"
        "time.sleep(30)\n")
    with pytest.raises(TrainingFailed) as info:
        run_training({}, script, tmp_path / "n")
    assert info.value.reason == "nan_loss"
    assert not (tmp_path / "n" / "metrics.json").exists()
    assert load_finished_metrics(tmp_path / "n") is None


@pytest.mark.slow
def test_a_training_past_its_timeout_is_killed_with_every_rank(tmp_path: Path, fake_trainings_alive) -> None:
    started = time.time()
    # two ranks under torchrun, 100 steps of 0.4 s; the timeout leaves torchrun time to start its ranks
    # on a loaded machine (the suite's parallel workers) and stops them long before their end
    with pytest.raises(TrainingFailed) as info:
        run_training({"FAKE_STEPS": "100", "FAKE_SLEEP": "0.4"}, FAKE, tmp_path / "h", nproc=2, timeout_s=12)
    assert info.value.reason == "timeout" and "12 s" in info.value.message
    assert 12 <= time.time() - started < 40
    log = (tmp_path / "h" / "stdout.log").read_text()
    assert "step:1/100" in log and "step:100/100" not in log  # stopped mid-way, not run to the end
    assert json.loads((tmp_path / "h" / "failure.json").read_text())["reason"] == "timeout"
    assert fake_trainings_alive(str(tmp_path)) == []  # torchrun and both ranks are gone


def test_torchrun_ranks_die_with_the_process_that_launched_them(tmp_path: Path, fake_trainings_alive) -> None:
    """The Ray worker running a trial is killed (driver killed, trial cancelled): torchrun dies with
    it, and so must its ranks, which torchrun starts in sessions of their own."""
    code = (f"from search.runner.trainable import run_training\n"
            f"run_training({{'FAKE_STEPS': '400', 'FAKE_SLEEP': '0.1'}}, {str(FAKE)!r}, {str(tmp_path / 'd')!r}, nproc=2)")
    worker = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    log = tmp_path / "d" / "stdout.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and "step:3/400" in log.read_text()):
        time.sleep(0.2)
    assert len(fake_trainings_alive(str(tmp_path))) == 3, "torchrun and both ranks should be running by now"
    worker.kill()
    worker.wait()
    deadline = time.time() + 20
    while fake_trainings_alive(str(tmp_path)) and time.time() < deadline:
        time.sleep(0.2)
    assert fake_trainings_alive(str(tmp_path)) == []
    assert "step:400/400" not in log.read_text()


def test_launch_command_uses_torchrun_for_processes() -> None:
    cmd = launch_command(Path("train_gpt.py"), 8)
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8"]
    assert cmd[5:] == [str(ROOT / "search" / "runner" / "rank_guard.py"), "train_gpt.py"]
    assert launch_command(Path("train_gpt.py"), 0)[1:] == ["train_gpt.py"]


def test_finished_metrics_match_on_requested_variables(tmp_path: Path) -> None:
    env = {"X": "1", "FAKE_STEPS": "2"}
    run_training({**env, "DATA_PATH": "/prepared/by/runner"}, FAKE, tmp_path / "d")
    assert load_finished_metrics(tmp_path / "d", env) is not None  # runner-added variables don't matter
    assert load_finished_metrics(tmp_path / "d", {**env, "FAKE_STEPS": "3"}) is None


def test_training_failed_survives_pickling():
    """Ray pickles a trial's exception to the driver; reason and log tail must arrive intact."""
    import pickle

    err = TrainingFailed("crashed", "line 1\nline 2", "exit code 1")
    back = pickle.loads(pickle.dumps(err))
    assert (back.reason, back.log_tail, back.message) == ("crashed", "line 1\nline 2", "exit code 1")
    assert str(back) == str(err)


def test_root_cause_of_interleaved_and_prefixed_rank_output() -> None:
    from search.runner.failures import root_cause

    # two unprefixed ranks writing one pipe, split even inside lines (as seen from torchrun on CPU)
    interleaved = ["Traceback (most recent call last):", '  File "rank_guard.py", line 40, in <module>',
                   "Traceback (most recent call last):", '      File "rank_guard.py", line 40, in <module>',
                   "main()", '  File "upstream_style.py", line 26, in <module>', "    raise RuntimeError(fail_with)",
                   "RuntimeError: boom here", "RuntimeError: boom here",
                   "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: "]
    assert root_cause(interleaved) == "RuntimeError: boom here"
    prefixed = ["[rank1]: Traceback (most recent call last):", "[rank0]: Traceback (most recent call last):",
                "[rank0]: ValueError: rank zero", '[rank1]:   File "x.py", line 3, in <module>',
                "[rank1]: torch.OutOfMemoryError: CUDA out of memory"]
    assert root_cause(prefixed) == "torch.OutOfMemoryError: CUDA out of memory"
    assert root_cause(["step:1/2 train_loss:3.0", "[rank0]: error: DATA_PATH has no shards", "Traceback"]) == \
        "error: DATA_PATH has no shards"
    assert root_cause(["no traceback here"]) is None
