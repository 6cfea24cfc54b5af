"""python -m search.promote end to end: real Ray, real runner, real tiny trainings.

A smoke experiment with one launched trial is laid out by hand in the
documented schema (experiment.json, trials.csv, trials/0/env.json), promoted
with two seeds on CPU, and the record folder is checked against the seed logs.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from search import promote
from search.records import config as record
from search.records.stats import significance

REPO = Path(__file__).resolve().parents[2]
# one xdist worker runs this module (its module fixtures promote a real smoke trial with two seed trainings,
# once per worker that runs any of its tests)
pytestmark = pytest.mark.xdist_group("promote")
SCRIPT = REPO / "pgolf" / "train_gpt.py"
TINY_ENV = {
    "ITERATIONS": "20", "WARMUP_STEPS": "0", "WARMDOWN_ITERS": "5", "TRAIN_BATCH_TOKENS": "1024",
    "TRAIN_SEQ_LEN": "64", "MICRO_BATCHES": "1", "MAX_WALLCLOCK_SECONDS": "0", "VAL_BATCH_SIZE": "4096",
    "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "10", "VAL_MAX_TOKENS": "4096", "TORCH_COMPILE": "0",
    "NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "2", "NUM_KV_HEADS": "1",
}
FINAL_RE = re.compile(r"^final_\S*_exact val_loss:(\S+) val_bpb:(\S+)", re.M)


@pytest.fixture(scope="module")
def smoke_experiment(tmp_path_factory, prepared_512) -> Path:
    folder = tmp_path_factory.mktemp("results") / "smoke_exp"
    (folder / "trials" / "0").mkdir(parents=True)
    env = {**TINY_ENV, **prepared_512.env(), "SEED": "1337", "RUN_ID": "trial0"}
    (folder / "trials" / "0" / "env.json").write_text(json.dumps({**env, "OUT_DIR": str(folder / "trials" / "0")}))
    meta = {"name": "smoke_exp", "space": "spaces/none.py", "script": str(SCRIPT), "budget_bytes": 16_000_000,
            "gpus_per_trial": 0, "smoke": True, "fixed_env": {}, "defaults": {"NUM_LAYERS": 3, "MODEL_DIM": 64},
            "objectives": ["val_bpb", "bytes_total"]}
    (folder / "experiment.json").write_text(json.dumps(meta))
    (folder / "trials.csv").write_text(
        "number,state,feasible,reason,val_bpb,val_loss,bytes_total,bytes_code,bytes_model,predicted_bytes,"
        "constraint,steps,train_seconds,gpu_seconds,log_path,trial_dir,param_NUM_LAYERS,param_MODEL_DIM\n"
        f"0,COMPLETE,true,,3.4,4.3,215000,{len(SCRIPT.read_bytes())},170000,,,20,30,0,,trials/0,2,64\n")
    return folder


def _promote(experiment: Path, out: Path, *extra: str, address: str | None = None) -> subprocess.CompletedProcess:
    """search.promote of trial 0 with two seeds, on its own cluster or joining the one at `address`."""
    cmd = [sys.executable, "-m", "search.promote", str(experiment), "--trial", "0", "--smoke", "--seeds", "2",
           "--out", str(out), "--name", "SmokePromo", "--author", "Test Author", "--github-id", "tester", *extra,
           *(["--address", address] if address else [])]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)


@pytest.fixture(scope="module")
def promoted(smoke_experiment, tmp_path_factory, ray_address) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("records") / "track_10min_16mb"
    proc = _promote(smoke_experiment, out, address=ray_address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = list(out.iterdir())
    assert len(folders) == 1 and re.fullmatch(r"\d{4}-\d\d-\d\d_SmokePromo", folders[0].name), folders
    return proc, folders[0]


@pytest.mark.slow
def test_record_numbers_equal_the_seed_logs(promoted):
    _, folder = promoted
    sub = json.loads((folder / "submission.json").read_text())
    for key in ("author", "github_id", "name", "blurb", "date", "val_loss", "val_bpb", "bytes_total", "bytes_code",
                "seeds", "seed_results", "val_bpb_std", "p_value", "hardware"):
        assert key in sub, key
    assert sub["author"] == "Test Author" and sub["github_id"] == "tester" and sub["name"] == "SmokePromo"
    assert len(sub["seeds"]) == 2 and 1337 not in sub["seeds"]
    losses, bpbs = [], []
    for seed in sub["seeds"]:
        log = (folder / f"train_seed{seed}.log").read_text()
        loss, bpb = (float(x) for x in FINAL_RE.findall(log)[-1])
        size = int(re.findall(r"Total submission size [^:]*: (\d+) bytes", log)[-1])
        assert sub["seed_results"][str(seed)]["val_loss"] == loss
        assert sub["seed_results"][str(seed)]["val_bpb"] == bpb
        assert sub["seed_results"][str(seed)]["bytes_total"] == size
        losses.append(loss)
        bpbs.append(bpb)
    assert sub["val_loss"] == pytest.approx(statistics.mean(losses), abs=1e-8)
    assert sub["val_bpb"] == pytest.approx(statistics.mean(bpbs), abs=1e-8)
    assert sub["val_bpb_std"] == pytest.approx(statistics.stdev(bpbs), abs=1e-8)
    assert sub["bytes_total"] == max(r["bytes_total"] for r in sub["seed_results"].values())


def test_seeds_ran_at_the_same_time(promoted, smoke_experiment):
    _, folder = promoted
    seeds = json.loads((folder / "submission.json").read_text())["seeds"]
    runs = [next(smoke_experiment.glob(f"promote/trial0-*/seed{s}")) for s in seeds]
    # env.json is written when a training starts, metrics.json when it ends
    spans = [((r / "env.json").stat().st_mtime, (r / "metrics.json").stat().st_mtime) for r in runs]
    assert max(start for start, _ in spans) < min(end for _, end in spans), "the 2 CPUs fit both seeds at once"


def test_script_is_the_counted_one(promoted):
    _, folder = promoted
    sub = json.loads((folder / "submission.json").read_text())
    copied = (folder / "train_gpt.py").read_bytes()
    assert len(copied) == sub["bytes_code"]
    assert copied == SCRIPT.read_bytes()


def test_without_against_it_is_a_non_record_with_the_reason(promoted):
    _, folder = promoted
    sub = json.loads((folder / "submission.json").read_text())
    assert sub["record"] is False and sub["p_value"] is None
    assert "no --against" in sub["non_record_reason"]
    text = (folder / "README.md").read_text()
    assert "Non-record" in text and "no --against" in text
    for seed in sub["seeds"]:
        assert f"| {seed} | {sub['seed_results'][str(seed)]['val_loss']:.8f} |" in text
    assert f"for SEED in {' '.join(str(s) for s in sub['seeds'])}; do" in text, "the README gives the exact command"
    assert all(f"{k}={v}" in text for k, v in TINY_ENV.items())


def test_second_promote_to_the_same_folder_refuses(promoted, smoke_experiment):
    _, folder = promoted
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    proc = _promote(smoke_experiment, folder.parent)
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert "\n" not in err and str(folder) in err and "--name" in err and "overwritten" in err
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before


def _reference_p(losses: list[float], target: float) -> float:
    n = len(losses)
    t = (statistics.mean(losses) - target) / (statistics.stdev(losses) / math.sqrt(n))
    return float(stats.t.cdf(t, df=n - 1))


def test_significance_rule():
    ratio = 0.79  # bpb per nat of a made-up run
    record_bpb = 1.20
    record_loss = record_bpb / ratio
    good = [record_loss - 0.02 + d for d in (-0.001, 0.0, 0.0012)]
    sig = significance(good, [x * ratio for x in good], record_bpb)
    assert sig.against_loss == pytest.approx(record_loss)
    assert sig.threshold_bpb == pytest.approx(record.MIN_GAIN_NATS * ratio)
    assert sig.p_value == pytest.approx(_reference_p(good, record_loss - record.MIN_GAIN_NATS))
    assert sig.p_value < record.ALPHA and sig.significant and not sig.reasons

    close = [record_loss - 0.004 + d for d in (-0.001, 0.0, 0.0012)]  # better, but by less than 0.005 nats
    sig = significance(close, [x * ratio for x in close], record_bpb)
    assert sig.p_value == pytest.approx(_reference_p(close, record_loss - record.MIN_GAIN_NATS))
    assert not sig.significant and sig.reasons[0].startswith("not significant: p=")

    one = significance(good[:1], [good[0] * ratio], record_bpb)
    assert not one.significant and one.p_value is None and "at least 2" in one.reasons[0]
    assert significance(good, good, None).reasons == ["no --against given: nothing to test the gain against"]


def test_bad_trial_is_one_line(smoke_experiment, tmp_path, capsys):
    code = promote.main([str(smoke_experiment), "--trial", "7", "--smoke", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "trial 7" in err and "search.pareto" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_gpu_experiment_gets_one_logical_gpu_per_seed_under_torchrun(smoke_experiment, tmp_path):
    """A GPU experiment's rerun asks Ray for its gpus_per_trial and launches torchrun (logical GPUs on CPU)."""
    folder = tmp_path / "gpu_exp"
    shutil.copytree(smoke_experiment, folder, ignore=shutil.ignore_patterns("promote"))
    meta = json.loads((folder / "experiment.json").read_text())
    (folder / "experiment.json").write_text(json.dumps({**meta, "name": "gpu_exp", "smoke": False, "gpus_per_trial": 1}))
    cmd = [sys.executable, "-m", "search.promote", str(folder), "--trial", "0", "--seeds", "2", "--num-gpus", "2",
           "--num-cpus", "2", "--out", str(tmp_path / "records"), "--name", "GpuPromo"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(folder.glob("promote/trial0-*/seed*"))
    visible = [json.loads((r / "env.json").read_text()).get("CUDA_VISIBLE_DEVICES") for r in runs]
    assert len(runs) == 2 and None not in visible and len(set(visible)) == 2, visible
    record = next((tmp_path / "records").iterdir())
    assert "torchrun --standalone --nproc_per_node=1 train_gpt.py" in (record / "README.md").read_text()
    sub = json.loads((record / "submission.json").read_text())
    assert sub["non_record_reason"] == "no --against given: nothing to test the gain against"


@pytest.mark.slow
def test_a_failed_seed_is_one_line_and_writes_no_record(smoke_experiment, tmp_path, ray_address):
    folder = tmp_path / "bad_exp"
    shutil.copytree(smoke_experiment, folder, ignore=shutil.ignore_patterns("promote"))
    env_path = folder / "trials" / "0" / "env.json"
    env_path.write_text(json.dumps({**json.loads(env_path.read_text()), "NUM_HEADS": "3"}))  # 64 % 3 != 0
    proc = _promote(folder, tmp_path / "records", address=ray_address)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: seed ") and "NUM_HEADS=3" in last and "stdout.log" in last
    assert not (tmp_path / "records").exists() or not any((tmp_path / "records").iterdir())


@pytest.mark.slow
def test_leaderboard_rule_against_a_record_of_three_logs(promoted, smoke_experiment, tmp_path, ray_address):
    """--rule leaderboard --against-record: a folder of three seed logs; a reproduction log joins the new side;
    both rules checked against scipy computed here; every seed over the eval limit makes a non-record."""
    _, first = promoted
    seed_logs = sorted(first.glob("train_seed*.log"))
    text = seed_logs[0].read_text()
    loss0, bpb0 = (float(x) for x in FINAL_RE.findall(text)[-1])
    ratio = bpb0 / loss0
    old = tmp_path / "old_record"
    old.mkdir()
    old_bpb = [bpb0 + 0.004, bpb0 + 0.010, bpb0 + 0.007]
    for i, bpb in enumerate(old_bpb):  # the same log with another score: a record of three seeds, logs only
        (old / f"train_seed{i}.log").write_text(FINAL_RE.sub(
            lambda m, bpb=bpb: m.group(0).replace(f"val_loss:{m.group(1)}", f"val_loss:{bpb / ratio:.8f}")
            .replace(f"val_bpb:{m.group(2)}", f"val_bpb:{bpb:.8f}"), text))
    repro = tmp_path / "repro"
    repro.mkdir()
    shutil.copyfile(seed_logs[1], repro / "elsewhere_seed42.log")
    experiment = tmp_path / "results" / "smoke_exp"
    shutil.copytree(smoke_experiment, experiment, ignore=shutil.ignore_patterns("promote"))
    meta = json.loads((experiment / "experiment.json").read_text())
    (experiment / "experiment.json").write_text(json.dumps({**meta, "limits": {"eval_seconds": 0.001}}))

    proc = _promote(experiment, tmp_path / "out", "--rule", "leaderboard", "--against-record", str(old),
                    "--reproductions", str(repro), address=ray_address)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = next((tmp_path / "out").iterdir())
    sub = json.loads((folder / "submission.json").read_text())
    new = [sub["seed_results"][str(s)]["val_bpb"] for s in sub["seeds"]] + [
        sub["reproductions"]["elsewhere_seed42.log"]["val_bpb"]]
    losses = [sub["seed_results"][str(s)]["val_loss"] for s in sub["seeds"]] + [
        sub["reproductions"]["elsewhere_seed42.log"]["val_loss"]]
    assert len(new) == 3 and sub["rule"] == "leaderboard"
    board = sub["tests"]["leaderboard"]
    expected = stats.ttest_ind(new, old_bpb, equal_var=False, alternative="less").pvalue
    assert board["p_value"] == pytest.approx(float(expected), rel=1e-9) and sub["p_value"] == board["p_value"]
    assert (board["n_new"], board["n_old"]) == (3, 3)
    assert sorted(board["against_seeds"].values()) == pytest.approx(sorted(old_bpb))
    readme_test = sub["tests"]["readme"]  # the README rule on the same seeds, against the old record's mean
    target = statistics.mean(old_bpb) / (statistics.mean(new) / statistics.mean(losses)) - record.MIN_GAIN_NATS
    assert readme_test["p_value"] == pytest.approx(_reference_p(losses, target), rel=1e-6)
    assert f"leaderboard p={board['p_value']:.3f}  readme p={readme_test['p_value']:.3f}" in proc.stdout
    # every seed, the reproduction included, is over the 0.001 s evaluation limit
    assert sub["record"] is False
    for label in [f"seed {s}" for s in sub["seeds"]] + ["reproduction elsewhere_seed42.log"]:
        assert f"over a limit: {label} eval_seconds" in sub["non_record_reason"]
    readme = (folder / "README.md").read_text()
    assert f"p = {board['p_value']:.4g}" in readme and f"p = {readme_test['p_value']:.4g}" in readme
    assert (folder / "reproductions" / "elsewhere_seed42.log").read_text() == seed_logs[1].read_text()


def test_leaderboard_rule_without_the_old_seeds_is_one_line(smoke_experiment, tmp_path, capsys):
    code = promote.main([str(smoke_experiment), "--trial", "0", "--smoke", "--out", str(tmp_path),
                         "--rule", "leaderboard"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--against-record DIR or --against-seeds" in err
    code = promote.main([str(smoke_experiment), "--trial", "0", "--smoke", "--out", str(tmp_path),
                         "--against-seeds", "1.2"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "at least 2" in err
