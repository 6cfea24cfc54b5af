"""The trainer end to end on this CPU: real data preparation, real tiny trainings, real torchrun."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import pgolf.train_gpt as tg

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "pgolf" / "train_gpt.py"

# The smoke run: 2 layers, 64 wide, 50 iterations. KEEP_FLOAT_MAX_NUMEL is lowered so the
# tiny model's matrices really go through the per-row quantization instead of staying fp16.
SMOKE = {
    "NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
    "ITERATIONS": "50", "WARMUP_STEPS": "2", "WARMDOWN_ITERS": "10", "MAX_WALLCLOCK_SECONDS": "0",
    "TRAIN_SEQ_LEN": "128", "TRAIN_BATCH_TOKENS": "4096", "VAL_BATCH_SIZE": "8192",
    "VAL_MAX_TOKENS": "16384", "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "10",
    "KEEP_FLOAT_MAX_NUMEL": "1024", "SEED": "7",
}


def run_trainer(env: dict[str, str], out_dir: Path, nproc: int = 0) -> subprocess.CompletedProcess:
    """Launch the script as a user would: plain python, or torchrun on CPU (gloo)."""
    full = {**os.environ, **env, "OUT_DIR": str(out_dir)}
    if nproc:
        torchrun = Path(sys.executable).with_name("torchrun")
        cmd = [str(torchrun), "--standalone", f"--nproc_per_node={nproc}", str(SCRIPT)]
    else:
        cmd = [sys.executable, str(SCRIPT)]
    return subprocess.run(cmd, env=full, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def smoke_env(prepared_512) -> dict[str, str]:
    return {**prepared_512.env(), **SMOKE}


# the tests that read the one smoke run share one xdist worker (--dist loadgroup), so it trains once
ON_THE_SINGLE_RUN = pytest.mark.xdist_group("trainer_single_run")


@pytest.fixture(scope="module")
def single_run(smoke_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    start = time.perf_counter()
    proc = run_trainer(smoke_env, out)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "metrics.json").read_text()), elapsed


@pytest.mark.slow
@ON_THE_SINGLE_RUN
def test_smoke_run_metrics_and_bytes(single_run):
    out, m, elapsed = single_run
    assert elapsed < 60, f"smoke run took {elapsed:.1f}s"
    assert math.isfinite(m["val_bpb"]) and math.isfinite(m["val_bpb_prequant"]) and m["val_bpb"] > 0
    assert m["bytes_code"] == SCRIPT.stat().st_size == len(SCRIPT.read_bytes())
    assert m["bytes_model"] == Path(m["model_path"]).stat().st_size
    assert m["bytes_total"] == m["bytes_code"] + m["bytes_model"]
    assert Path(m["model_path"]).parent == out and m["model_path"].endswith(f"final_model.{m['scheme']}.ptz")
    assert m["scheme"] == "int8_zstd"
    assert m["steps"] == int(SMOKE["ITERATIONS"])
    assert m["tokens_seen"] == m["steps"] * int(SMOKE["TRAIN_BATCH_TOKENS"])
    assert m["params_total"] == sum(m["params"].values()) and set(m["params"]) == {"embed", "attn", "mlp", "other"}
    assert m["world_size"] == 1 and m["device"] == "cpu" and m["seed"] == int(SMOKE["SEED"])
    expected_keys = {"val_loss", "val_bpb", "val_loss_prequant", "val_bpb_prequant", "bytes_code", "bytes_model",
                     "bytes_total", "steps", "train_time_ms", "tokens_seen", "params", "params_total", "scheme",
                     "model_path", "seed", "world_size", "device"}
    assert set(m) == expected_keys


@pytest.mark.slow
@ON_THE_SINGLE_RUN
def test_a_rerun_on_the_same_machine_writes_the_same_bytes(single_run, smoke_env, tmp_path):
    """Determinism where it holds: the same settings and seed on the same CPU give the same artifact,
    byte for byte (across CPU types the kernels differ: tests/bench/test_grid.py's KERNEL_SPREAD)."""
    out, m, _ = single_run
    proc = run_trainer(smoke_env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert Path(again["model_path"]).read_bytes() == Path(m["model_path"]).read_bytes()
    assert (again["val_bpb"], again["bytes_total"]) == (m["val_bpb"], m["bytes_total"])


@ON_THE_SINGLE_RUN
def test_smoke_run_log_formats(single_run):
    out, m, _ = single_run
    lines = (out / "train.log").read_text().splitlines()
    iters = SMOKE["ITERATIONS"]
    train_re = re.compile(rf"^step:\d+/{iters} train_loss:\d+\.\d{{4}} train_time:\d+ms step_avg:\d+\.\d{{2}}ms$")
    val_re = re.compile(rf"^step:{iters}/{iters} val_loss:\d+\.\d{{4}} val_bpb:\d+\.\d{{4}} "
                        r"train_time:\d+ms step_avg:\d+\.\d{2}ms$")
    assert sum(bool(train_re.match(l)) for l in lines) == 10 + int(iters) // 10 - 1
    assert sum(bool(val_re.match(l)) for l in lines) == 1
    assert f"Total submission size {m['scheme']}: {m['bytes_total']} bytes" in lines
    finals = [re.match(rf"^final_{m['scheme']}_roundtrip_exact val_loss:(\d+\.\d{{8}}) val_bpb:(\d+\.\d{{8}})$", l)
              for l in lines]
    final = [f for f in finals if f]
    assert len(final) == 1
    assert float(final[0].group(1)) == pytest.approx(m["val_loss"], abs=1e-8)
    assert float(final[0].group(2)) == pytest.approx(m["val_bpb"], abs=1e-8)


@ON_THE_SINGLE_RUN
def test_reload_in_fresh_process_reproduces_score(single_run, smoke_env):
    _, m, _ = single_run
    code = (
        "import json, os, sys, torch, sentencepiece as spm\n"
        "import pgolf.train_gpt as tg\n"
        "torch.set_num_threads(1)\n"
        "hp = tg.Hyperparameters.from_env(os.environ)\n"
        "model = tg.build_model(hp)\n"
        "blob = open(sys.argv[1], 'rb').read()\n"
        "model.load_state_dict(tg.dequantize_state_dict(tg.deserialize(blob)), strict=True)\n"
        "sp = spm.SentencePieceProcessor(model_file=hp.tokenizer_path)\n"
        "val = tg.load_val_tokens(hp.val_pattern, hp.train_seq_len, hp.val_max_tokens)\n"
        "print(json.dumps(tg.eval_val(hp, model, val, tg.token_byte_luts(sp, hp.vocab_size), stride=hp.eval_stride)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, m["model_path"]], env={**os.environ, **smoke_env},
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    val_loss, val_bpb = json.loads(proc.stdout.strip().splitlines()[-1])
    assert abs(val_bpb - m["val_bpb"]) < 1e-6
    assert abs(val_loss - m["val_loss"]) < 1e-6


@pytest.mark.slow
@ON_THE_SINGLE_RUN
def test_torchrun_two_processes_matches_single(single_run, smoke_env, tmp_path):
    _, single, _ = single_run
    proc = run_trainer(smoke_env, tmp_path, nproc=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    multi = json.loads((tmp_path / "metrics.json").read_text())
    assert multi["world_size"] == 2
    assert multi["tokens_seen"] == single["tokens_seen"]
    assert abs(multi["val_bpb"] - single["val_bpb"]) / single["val_bpb"] < 0.01


@pytest.mark.slow
@ON_THE_SINGLE_RUN
def test_two_ranks_launched_by_the_search_runner(single_run, smoke_env, tmp_path):
    """As a GPU trial launches it: torchrun with each rank under search/runner/rank_guard.py."""
    from search.runner.trainable import run_training

    _, single, _ = single_run
    multi = run_training(smoke_env, SCRIPT, tmp_path / "trial", nproc=2)
    assert multi["world_size"] == 2 and multi["bytes_code"] == len(SCRIPT.read_bytes())
    assert abs(multi["val_bpb"] - single["val_bpb"]) / single["val_bpb"] < 0.01


@pytest.mark.slow
def test_search_knobs_run_end_to_end(smoke_env, tmp_path):
    """Every explored knob on at once, for a few steps: the paths run and the export honours the bits."""
    env = {**smoke_env, "ITERATIONS": "8", "WARMDOWN_ITERS": "6", "TRAIN_LOG_EVERY": "0", "VAL_MAX_TOKENS": "4096",
           "Q_RANK": "16", "MLP_MULT": "1.5", "MLP_BITS": "5", "ATTN_BITS": "6", "EMBED_BITS": "16",
           "COMPRESSOR": "lzma", "COMPRESSOR_LEVEL": "6", "SMEAR_GATE": "1", "BIGRAM_BUCKETS": "64",
           "BIGRAM_DIM": "16", "XSA_LAST_N": "1", "SWA_EVERY": "2", "SWA_START_FRAC": "0.9", "EVAL_STRIDE": "32",
           "MUON_WEIGHT_DECAY": "0.04", "ADAM_WEIGHT_DECAY": "0.01", "TIE_EMBEDDINGS": "0", "GRAD_CLIP_NORM": "0.3"}
    proc = run_trainer(env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["scheme"] == "mixed_lzma" and math.isfinite(m["val_bpb"])
    assert re.search(r"^swa: averaged \d+ checkpoints$", (tmp_path / "train.log").read_text(), re.M)
    hp = tg.Hyperparameters.from_env(env)
    with torch.device("meta"):
        model = tg.build_model(hp)
    assert tg.count_params(model) == m["params"]
    names = dict(model.named_parameters())
    assert "blocks.0.attn.q_down.weight" in names and "blocks.0.attn.c_q.weight" not in names
    assert names["blocks.0.mlp.fc.weight"].shape[0] == round(1.5 * 64)
    obj = tg.deserialize(Path(m["model_path"]).read_bytes())
    assert "tok_emb.weight" in obj["float"] and obj["float"]["tok_emb.weight"].dtype == torch.float16
    mlp = obj["quant"]["blocks.0.mlp.fc.weight"]
    assert mlp["bits"] == 5 and int(mlp["q"].abs().max()) <= 15
    attn = obj["quant"]["blocks.1.attn.c_k.weight"]
    assert attn["bits"] == 6 and int(attn["q"].abs().max()) <= 31


BAD_SETTINGS = [
    ({"COMPRESSOR": "bzip2"}, "COMPRESSOR"),
    ({"MLP_BITS": "3"}, "MLP_BITS"),
    ({"EMBED_BITS": "12"}, "EMBED_BITS"),
    ({"ATTN_BITS": "9"}, "ATTN_BITS"),
    ({"MODEL_DIM": "60", "NUM_HEADS": "8"}, "NUM_HEADS"),
    ({"VOCAB_SIZE": "1024"}, "VOCAB_SIZE"),
    ({"MODEL_DIM": "wide"}, "MODEL_DIM"),
    ({"DATA_PATH": "/nonexistent/pgolf"}, "DATA_PATH"),
]


@pytest.mark.parametrize("override,named", BAD_SETTINGS, ids=[n for _, n in BAD_SETTINGS])
def test_bad_setting_stops_before_training(override, named, smoke_env, tmp_path, capsys):
    out = tmp_path / "out"
    rc = tg.main({**smoke_env, **override, "OUT_DIR": str(out)})
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and named in err[0]
    assert not out.exists()  # nothing written: it stopped before the run started


def test_bad_setting_cli_exit_code(smoke_env, tmp_path):
    proc = run_trainer({**smoke_env, "COMPRESSOR": "bzip2"}, tmp_path / "out")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: ")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_diverging_run_exits_3_without_metrics(smoke_env, tmp_path):
    env = {**smoke_env, "ITERATIONS": "10", "TRAIN_BATCH_TOKENS": "2048", "VAL_MAX_TOKENS": "2048",
           "TRAIN_LOG_EVERY": "1", "TIED_EMBED_LR": "1e30", "SCALAR_LR": "1e30"}
    proc = run_trainer(env, tmp_path)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert re.search(r"^error: non-finite train loss at step \d+$", proc.stderr, re.M)
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.slow
def test_wallclock_cap_stops_early(smoke_env, tmp_path):
    env = {**smoke_env, "ITERATIONS": "100000", "MAX_WALLCLOCK_SECONDS": "2", "WARMUP_STEPS": "0",
           "TRAIN_BATCH_TOKENS": "1024", "VAL_MAX_TOKENS": "2048", "TRAIN_LOG_EVERY": "0"}
    proc = run_trainer(env, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 < m["steps"] < 100000 and m["train_time_ms"] >= 2000
    assert re.search(rf"^stopping_early: wallclock_cap train_time:\d+ms step:{m['steps']}/100000$",
                     (tmp_path / "train.log").read_text(), re.M)


# ------------------------------------------------------------------ in-process units


def test_baseline_defaults_build_the_baseline_model():
    """Upstream defaults give the baseline's published parameter count (REFERENCE.md §1)."""
    hp = tg.Hyperparameters.from_env({})
    hp.validate()
    with torch.device("meta"):
        model = tg.build_model(hp)
    assert sum(tg.count_params(model).values()) == 17_059_912
    assert (hp.num_layers, hp.model_dim, hp.num_heads, hp.num_kv_heads, hp.vocab_size) == (9, 512, 8, 4, 1024)
    assert tg.scheme_name(hp) == "int8_zstd" and hp.compressor_level == 22


@pytest.mark.parametrize("bits", [4, 5, 6, 7, 8])
def test_row_quantization_error_within_half_step(bits):
    w = torch.randn(96, 80, generator=torch.Generator().manual_seed(bits)) * torch.linspace(0.01, 3, 96)[:, None]
    q, scale = tg.quantize_rows(w, bits)
    assert q.dtype == torch.int8 and scale.dtype == torch.float16
    assert int(q.abs().max()) <= 2 ** (bits - 1) - 1
    err = (q.float() * scale.float()[:, None] - w).abs()
    assert bool((err <= scale.float()[:, None] / 2 + 1e-6).all())


@pytest.mark.parametrize("compressor", ["zstd", "lzma", "zlib", "brotli"])
def test_serialize_round_trip_is_exact(compressor):
    hp = tg.Hyperparameters.from_env({"NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
                                      "VOCAB_SIZE": "128", "KEEP_FLOAT_MAX_NUMEL": "1024", "MLP_BITS": "6",
                                      "COMPRESSOR": compressor})
    torch.manual_seed(0)
    state = tg.build_model(hp).state_dict()
    obj = tg.quantize_state_dict(state, hp)
    assert {tg.param_group(n) for n in obj["quant"]} == {"embed", "attn", "mlp"}
    assert all(obj["float"][n].dtype == torch.float32 for n in obj["float"] if "resid_mix" in n or "q_gain" in n)
    restored = tg.dequantize_state_dict(tg.deserialize(tg.serialize(obj, hp)))
    expected = tg.dequantize_state_dict(obj)
    assert restored.keys() == state.keys()
    for name, t in restored.items():
        assert t.dtype == state[name].dtype and torch.equal(t, expected[name])


@pytest.mark.parametrize("n_targets,seq_len,stride", [(512, 128, 0), (512, 128, 64), (512, 128, 48), (256, 64, 1)])
def test_eval_windows_score_every_target_once(n_targets, seq_len, stride):
    windows = tg.eval_windows(n_targets, seq_len, stride)
    scored = sorted(start + off for start, first in windows for off in range(first, seq_len))
    assert scored == list(range(n_targets))
    assert all(0 <= start and start + seq_len <= n_targets for start, _ in windows)
