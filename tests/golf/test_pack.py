"""pgolf.pack: a packed trainer trains exactly like the original with fewer code bytes, and a space
with PACK_SCRIPT = True runs, counts and predicts the packed bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgolf.pack import PackError, pack, pack_file, unpack
from pgolf.size import predict

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "pgolf" / "train_gpt.py"
TINY = {"NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "ITERATIONS": "12",
        "WARMUP_STEPS": "1", "WARMDOWN_ITERS": "4", "MAX_WALLCLOCK_SECONDS": "0", "TRAIN_SEQ_LEN": "128",
        "TRAIN_BATCH_TOKENS": "4096", "VAL_BATCH_SIZE": "8192", "VAL_MAX_TOKENS": "8192", "VAL_LOSS_EVERY": "0",
        "KEEP_FLOAT_MAX_NUMEL": "1024", "SEED": "3", "TORCH_COMPILE": "0"}


def test_pack_round_trip_and_refusals(tmp_path: Path) -> None:
    source = SCRIPT.read_bytes()
    packed = pack(source)
    assert unpack(packed) == source and len(packed) < 0.45 * len(source)
    assert packed.isascii() and packed.count(b"\n") == 2
    with pytest.raises(PackError, match="does not compile"):
        pack(b"def broken(:\n", "broken.py")
    (tmp_path / "broken.py").write_text("def broken(:\n")
    proc = subprocess.run([sys.executable, "-m", "pgolf.pack", str(tmp_path / "broken.py"), "-o",
                           str(tmp_path / "p.py")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "does not compile (line 1" in proc.stderr
    assert not (tmp_path / "p.py").exists()


@pytest.mark.slow
def test_packed_trainer_trains_the_same_with_fewer_code_bytes(prepared_512, tmp_path: Path) -> None:
    packed = pack_file(SCRIPT, tmp_path / "packed" / "train_gpt.py")
    metrics = {}
    for name, script in (("original", SCRIPT), ("packed", packed)):
        out = tmp_path / name
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                              env={**os.environ, **prepared_512.env(), **TINY, "OUT_DIR": str(out)}, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        metrics[name] = json.loads((out / "metrics.json").read_text())
    original, packed_m = metrics["original"], metrics["packed"]
    assert packed_m["val_bpb"] == original["val_bpb"] and packed_m["val_loss"] == original["val_loss"]
    assert packed_m["bytes_model"] == original["bytes_model"]
    assert packed_m["bytes_code"] == packed.stat().st_size < original["bytes_code"] - 30_000
    # the size predictor counts whichever script it is given
    env = {**prepared_512.env(), **TINY}
    assert predict(env, script=SCRIPT).code_bytes - predict(env, script=packed).code_bytes == \
        original["bytes_code"] - packed_m["bytes_code"]


@pytest.mark.slow
def test_a_space_with_pack_script_runs_counts_and_ships_the_packed_bytes(tmp_path: Path, ray_address: str) -> None:
    space = tmp_path / "packed_space.py"
    space.write_text(
        "PACK_SCRIPT = True\nGPUS_PER_TRIAL = 0\nBUDGET_BYTES = 16_000_000\nSMOKE_BUDGET_BYTES = 400_000\n"
        f"SMOKE_ENV = {TINY!r}\n"
        "POINTS_TO_EVALUATE = [{'VOCAB_SIZE': 512}]\n"
        "def space(trial):\n    return {'VOCAB_SIZE': trial.suggest_categorical('VOCAB_SIZE', [512])}\n")
    results = tmp_path / "results"
    proc = subprocess.run([sys.executable, "-m", "search.run", str(space), "--smoke", "--num-samples", "1",
                           "--results-dir", str(results), "--name", "packed", "--address", ray_address], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = results / "packed"
    packed = folder / "train_gpt.py"
    assert unpack(packed.read_bytes()) == SCRIPT.read_bytes()
    assert json.loads((folder / "experiment.json").read_text())["script"] == str(packed.resolve())
    metrics = json.loads((folder / "trials" / "0" / "metrics.json").read_text())
    assert metrics["bytes_code"] == packed.stat().st_size
    trial = json.loads((folder / "trials" / "0" / "env.json").read_text())
    predicted = predict(trial, script=packed)
    assert predicted.code_bytes == metrics["bytes_code"]
    # search.promote reruns the packed script and ships it as the record's train_gpt.py
    proc = subprocess.run([sys.executable, "-m", "search.promote", str(folder), "--trial", "0", "--seeds", "1",
                           "--smoke", "--out", str(tmp_path / "records"), "--name", "Packed"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [record] = (tmp_path / "records").iterdir()
    assert (record / "train_gpt.py").read_bytes() == packed.read_bytes()
    assert json.loads((record / "submission.json").read_text())["bytes_code"] == packed.stat().st_size
