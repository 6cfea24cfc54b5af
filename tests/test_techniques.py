"""The record techniques of pgolf/train_gpt.py (issue 14): each, switched on, changes training or export
as records/track_10min_16mb/2026-03-23_LeakyReLU_LegalTTT_ParallelMuon defines it; off, nothing
changes (the regenerated bench grid gives the same val_bpb and model bytes for all 216 rows)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import pgolf.train_gpt as tg

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"NUM_LAYERS": "4", "MODEL_DIM": "32", "NUM_HEADS": "2", "NUM_KV_HEADS": "1"}


def hp(**env: str) -> tg.Hyperparameters:
    h = tg.Hyperparameters.from_env({**SMALL, **env})
    h.validate()
    return h


def test_leaky_relu2_mlp() -> None:
    torch.manual_seed(0)
    relu, leaky = tg.MLP(hp()), tg.MLP(hp(MLP_ACTIVATION="leaky_relu2", MLP_LEAKY_SLOPE="0.5"))
    leaky.load_state_dict(relu.state_dict())
    torch.nn.init.normal_(relu.proj.weight)  # zero-initialised: give the output something to show
    leaky.proj.weight.data.copy_(relu.proj.weight.data)
    x = torch.randn(3, 5, 32)
    h = relu.fc(x)
    assert torch.allclose(leaky(x), leaky.proj(F.leaky_relu(h, negative_slope=0.5).square()))
    assert torch.allclose(relu(x), relu.proj(F.relu(h).square()))
    assert not torch.allclose(leaky(x), relu(x))  # negative pre-activations now count, at 0.25 x^2


def test_ln_scale_scales_each_blocks_normalized_inputs() -> None:
    seen = {}

    class Record(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            seen[self.name] = x
            return torch.zeros_like(x)

    x, x0 = torch.randn(2, 3, 32), torch.randn(2, 3, 32)
    for scaled, layer in ((False, 3), (True, 3), (True, 0)):
        block = tg.Block(hp(LN_SCALE=str(int(scaled))), xsa=False, layer=layer)
        block.attn, block.mlp = Record("attn"), Record("mlp")
        block(x, x0)
        mixed = block.resid_mix[0] * x + block.resid_mix[1] * x0
        factor = 1 / (layer + 1) ** 0.5 if scaled else 1.0
        assert torch.allclose(seen["attn"], tg.rms_norm(mixed) * factor)
        assert torch.allclose(seen["mlp"], tg.rms_norm(mixed) * factor)


def test_partial_rope_rotates_only_the_first_dims() -> None:
    x = torch.randn(1, 2, 6, 16)
    full, part = tg.Rotary(16, 10000.0), tg.Rotary(16, 10000.0, rope_dims=8)
    y = part(x)
    assert torch.equal(y[..., 8:], x[..., 8:])               # the rest passes through
    assert not torch.allclose(y[..., :8], x[..., :8])        # positions > 0 rotate
    assert torch.allclose(y[..., :8], tg.Rotary(8, 10000.0)(x[..., :8]))  # a full RoPE over those dims
    assert torch.equal(tg.Rotary(16, 10000.0, rope_dims=0)(x), full(x))


@pytest.mark.parametrize("env, words", [
    ({"MLP_ACTIVATION": "gelu"}, "MLP_ACTIVATION='gelu' is unknown"),
    ({"ROPE_DIMS": "7"}, "ROPE_DIMS=7 must be 0"),
    ({"ROPE_DIMS": "32"}, "up to the head dim 16"),
    ({"EMA_DECAY": "1.0"}, "EMA_DECAY=1.0 must be in [0, 1)"),
    ({"EMA_DECAY": "0.99", "SWA_EVERY": "10"}, "EMA_DECAY and SWA_EVERY are both set"),
])
def test_bad_technique_settings_are_refused(env, words) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        hp(**env)


def _train(prepared_512, out: Path, **extra: str) -> tuple[dict, str]:
    env = {**os.environ, **prepared_512.env(), "NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "4",
           "NUM_KV_HEADS": "2", "ITERATIONS": "12", "WARMUP_STEPS": "0", "WARMDOWN_ITERS": "4", "TRAIN_SEQ_LEN": "128",
           "TRAIN_BATCH_TOKENS": "2048", "VAL_BATCH_SIZE": "4096", "VAL_MAX_TOKENS": "4096", "VAL_LOSS_EVERY": "0",
           "TORCH_COMPILE": "0", "KEEP_FLOAT_MAX_NUMEL": "1024", "SEED": "5", "OUT_DIR": str(out), **extra}
    proc = subprocess.run([sys.executable, str(ROOT / "pgolf" / "train_gpt.py")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads((out / "metrics.json").read_text()), (out / "train.log").read_text()


def test_ema_weights_are_exported_and_scored(prepared_512, tmp_path: Path) -> None:
    raw, raw_log = _train(prepared_512, tmp_path / "raw")
    ema, ema_log = _train(prepared_512, tmp_path / "ema", EMA_DECAY="0.8")
    last_val = re.compile(r"step:12/12 val_loss:\S+ val_bpb:(\S+)")
    prequant = re.compile(r"prequant val_loss:\S+ val_bpb:(\S+)")
    # training is the same (the last in-loop evaluation scores the raw weights in both runs) ...
    assert last_val.search(raw_log).group(1) == last_val.search(ema_log).group(1)
    # ... but the EMA run scores and exports other weights: its pre-quantization score is not the raw one
    assert "ema: exporting and scoring the EMA weights (decay 0.8)" in ema_log
    assert float(prequant.search(raw_log).group(1)) == pytest.approx(float(last_val.search(raw_log).group(1)), abs=1e-4)
    assert float(prequant.search(ema_log).group(1)) != pytest.approx(float(last_val.search(ema_log).group(1)), abs=1e-4)
    assert ema["val_bpb"] != raw["val_bpb"] and ema["bytes_model"] != raw["bytes_model"]
