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

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.mark.slow
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


# ----------------------------------------------------------------------------- the other seed records' techniques

def test_ortho_init_as_the_smeargate_record_defines_it() -> None:
    torch.manual_seed(0)
    on = tg.GPT(hp(MODEL_DIM="128", NUM_HEADS="2", ORTHO_INIT="1", BIGRAM_BUCKETS="16", BIGRAM_DIM="64", Q_RANK="32"))
    torch.manual_seed(0)
    off = tg.GPT(hp(MODEL_DIM="128", NUM_HEADS="2", BIGRAM_BUCKETS="16", BIGRAM_DIM="64", Q_RANK="32"))
    w = on.blocks[0].mlp.fc.weight                               # 256 x 128: orthonormal columns
    assert torch.allclose(w.T @ w, torch.eye(128), atol=1e-4)
    v = off.blocks[0].mlp.fc.weight
    assert not torch.allclose(v.T @ v, torch.eye(128), atol=1e-2)
    p = on.bigram.proj.weight                                    # a `.proj`: orthogonal x 1/sqrt(2 x 4 layers)
    assert torch.allclose(p.T @ p, torch.eye(64) / 8, atol=1e-4)
    assert not on.blocks[0].attn.proj.weight.any() and not on.blocks[0].mlp.proj.weight.any()  # zero-init stays
    assert torch.equal(on.blocks[0].attn.q_down.weight, off.blocks[0].attn.q_down.weight)  # 32 x 128: left as is


def test_overtone_init_reshapes_the_tied_embedding_spectrum() -> None:
    torch.manual_seed(0)
    emb = tg.GPT(hp(VOCAB_SIZE="256", OVERTONE_INIT="1")).tok_emb.weight.detach()
    sv = torch.linalg.svdvals(emb)
    assert torch.allclose(sv, sv[0] * torch.arange(1, 33, dtype=sv.dtype) ** -0.5, rtol=1e-4)
    torch.manual_seed(0)
    plain = torch.linalg.svdvals(tg.GPT(hp(VOCAB_SIZE="256")).tok_emb.weight.detach())
    assert sv[0] == pytest.approx(float(plain[0]), rel=1e-5)    # the top singular value is kept


def test_smeargate_blends_half_and_half_at_init_and_can_spare_bos() -> None:
    x, idx = torch.randn(2, 5, 32), torch.tensor([[1, 7, 8, 1, 9], [4, 1, 5, 6, 7]])
    prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
    assert torch.allclose(tg.SmearGate(32, bos_mask=False)(x, idx), 0.5 * x + 0.5 * prev)
    masked = tg.SmearGate(32, bos_mask=True)(x, idx)
    bos = idx == 1
    assert torch.equal(masked[bos], x[bos])                      # a document's first token keeps itself
    assert torch.allclose(masked[~bos], (0.5 * x + 0.5 * prev)[~bos])


def test_bigram_hash_buckets_table_and_scale() -> None:
    big = tg.BigramHash(4096, 16, 32)
    idx = torch.tensor([[5, 900, 13, 1023]])
    want = [4095] + [(36313 * c ^ 27191 * p) % 4095 for p, c in ((5, 900), (900, 13), (13, 1023))]
    seen = []
    big.table.register_forward_hook(lambda m, i, o: seen.append(i[0].tolist()))
    out = big(idx)
    assert seen == [[want]] and not big.table.weight.any() and not out.any()  # zero table: no signal yet
    assert float(big.scale.detach()) == pytest.approx(0.05) and big.proj.weight.any()
    assert tg.storage_kind("bigram.scale", (), True, hp()) == "fp32"


def test_depth_recurrence_runs_the_loop_layers_again() -> None:
    h = hp(NUM_LAYERS="6", NUM_LOOPS="2", LOOP_START="2", LOOP_END="3")
    assert tg.layer_order(h) == [0, 1, 2, 3, 2, 3, 2, 3, 4, 5]
    model = tg.GPT(h)
    ran = []
    for i, b in enumerate(model.blocks):
        b.register_forward_hook(lambda m, inp, out, i=i: ran.append(i))
    model(torch.tensor([[1, 2, 3]]))
    assert ran == [0, 1, 2, 3, 2, 3, 2, 3, 4, 5] and model.skip_weights.shape[0] == 5
    later = tg.GPT(hp(NUM_LAYERS="6", NUM_LOOPS="2", LOOP_START="2", LOOP_END="3", ENABLE_LOOPING_AT="0.5"))
    assert not later.looping                                       # a plain pass until half of training
    with pytest.raises(ValueError, match="LOOP_END"):
        hp(NUM_LAYERS="6", NUM_LOOPS="1", LOOP_START="4", LOOP_END="6")


def test_qat_forward_sees_the_exported_weights_and_passes_gradients_straight() -> None:
    torch.manual_seed(0)
    lin = tg.CastedLinear(48, 24)
    x = torch.randn(4, 48)
    q, s = tg.quantize_rows(lin.weight, 5)
    lin.qat_bits = 5
    y = lin(x)
    assert torch.allclose(y, x @ (q.float() * s.float()[:, None]).T, atol=1e-5)
    y.sum().backward()
    assert torch.allclose(lin.weight.grad, x.sum(0).expand(24, 48))  # d/dW of the plain linear
    lin.eval()
    assert torch.allclose(lin(x), x @ lin.weight.T)                # evaluation uses the weights themselves


def test_clip_search_never_rounds_a_row_worse_and_helps_in_total() -> None:
    torch.manual_seed(0)
    w = torch.randn(64, 256)
    w[::4, 0] = 12.0                                               # one outlier in every fourth row
    for bits in (4, 5, 6, 8):
        errs = [((q.float() * s.float()[:, None] - w) ** 2).sum(1) for q, s in
                (tg.quantize_rows(w, bits), tg.quantize_rows(w, bits, clip_search=True))]
        assert bool((errs[1] <= errs[0] + 1e-6).all()) and (bits == 8 or float(errs[1].sum()) < float(errs[0].sum()))


def test_gptq_leaves_a_smaller_output_error_than_rounding() -> None:
    torch.manual_seed(0)
    mix = torch.randn(96, 96) * torch.linspace(0.1, 3.0, 96)      # correlated inputs of uneven scale
    x, w = torch.randn(2048, 96) @ mix, torch.randn(64, 96) * 0.05
    for bits in (4, 5, 6):
        q, s = tg.quantize_rows(w, bits)
        g = tg.gptq_rows(w, x.T @ x, bits, s)
        assert int(g.abs().max()) <= 2 ** (bits - 1) - 1
        rtn_err = (x @ (q.float() * s.float()[:, None] - w).T).pow(2).mean()
        gptq_err = (x @ (g.float() * s.float()[:, None] - w).T).pow(2).mean()
        assert gptq_err < 0.7 * rtn_err


def test_pruning_and_keep_float_per_layer_in_the_export() -> None:
    h = hp(NUM_LAYERS="4", MODEL_DIM="64", KEEP_FLOAT_MAX_NUMEL="1024", KEEP_FLOAT_LAST="2",
           KEEP_FLOAT_TENSORS="attn.c_k,mlp.fc", PRUNE_FRAC="0.25")
    torch.manual_seed(0)
    state = tg.GPT(h).state_dict()
    obj = tg.quantize_state_dict(state, h)
    kept = {n for n, t in obj["float"].items() if t.dtype == torch.float16 and n.startswith("blocks.")}
    assert kept == {f"blocks.{i}.{t}.weight" for i in (2, 3) for t in ("attn.c_k", "mlp.fc")}
    assert "blocks.1.attn.c_k.weight" in obj["quant"]
    q = obj["quant"]["blocks.0.attn.c_q.weight"]["q"]
    w = state["blocks.0.attn.c_q.weight"]
    smallest = w.abs().flatten().argsort()[: w.numel() // 4]
    assert not q.flatten()[smallest].any()                         # the quarter smallest are zero
    plain = tg.quantize_state_dict(state, hp(NUM_LAYERS="4", MODEL_DIM="64", KEEP_FLOAT_MAX_NUMEL="1024"))
    assert (q == 0).sum() > (plain["quant"]["blocks.0.attn.c_q.weight"]["q"] == 0).sum() + w.numel() // 8


@pytest.mark.parametrize("env, words", [
    ({"QUANTIZER": "awq"}, "QUANTIZER='awq' is unknown"),
    ({"PRUNE_FRAC": "1"}, "PRUNE_FRAC=1.0 must be in [0, 1)"),
    ({"QAT_START_FRAC": "1.5"}, "QAT_START_FRAC=1.5 must be in 0..1"),
    ({"KEEP_FLOAT_LAST": "9"}, "KEEP_FLOAT_LAST=9 must be in 0..NUM_LAYERS"),
])
def test_bad_seed_technique_settings_are_refused(env, words) -> None:
    with pytest.raises(ValueError, match=re.escape(words)):
        hp(**env)


@pytest.mark.slow
def test_gptq_qat_loops_and_brotli_in_a_real_training(prepared_512, tmp_path: Path) -> None:
    """One training with the seed techniques on, exported by rounding and by GPTQ: the loops and QAT
    switch on where their fractions say, the weights before quantization are the same, the exports
    differ. (That GPTQ leaves the smaller round-trip gap is bench/quant.py's measurement.)"""
    extra = dict(NUM_LOOPS="1", LOOP_START="0", LOOP_END="0", ENABLE_LOOPING_AT="0.5", QAT_START_FRAC="0.25",
                 SMEAR_GATE="1", SMEAR_BOS_MASK="1", BIGRAM_BUCKETS="64", BIGRAM_DIM="16", ORTHO_INIT="1",
                 OVERTONE_INIT="1", COMPRESSOR="brotli", MLP_BITS="4", ATTN_BITS="4", MAX_WALLCLOCK_SECONDS="0")
    rtn, rtn_log = _train(prepared_512, tmp_path / "rtn", **extra)
    gptq, gptq_log = _train(prepared_512, tmp_path / "gptq", QUANTIZER="gptq", GPTQ_CALIBRATION_BATCHES="4", **extra)
    assert "layer_loop:enabled step:6 order:[0, 0, 1]" in rtn_log and "qat:enabled step:9 " in rtn_log
    assert re.search(r"^gptq: Hessians of 12 matrices from 4 training batches$", gptq_log, re.M)
    assert re.search(r"^gptq: Hessians and quantization took [\d.]+s$", gptq_log, re.M)  # no cap: nothing kept
    assert "layer_loop: order [0, 0, 1] from progress 0.5" in rtn_log
    assert gptq["val_bpb_prequant"] == rtn["val_bpb_prequant"] and gptq["scheme"] == "mixed_brotli"
    a, b = (tg.deserialize(Path(m["model_path"]).read_bytes())["quant"] for m in (rtn, gptq))
    name = "blocks.1.mlp.fc.weight"
    assert torch.equal(a[name]["scale"], b[name]["scale"]) and not torch.equal(a[name]["q"], b[name]["q"])
    assert gptq["val_bpb"] != rtn["val_bpb"]


def test_clip_search_tries_each_clip_of_the_full_row_max() -> None:
    w = torch.tensor([[1.0, 0.5, -0.25, 10.0], [0.3, -0.2, 0.1, 0.05]])
    q, s = tg.quantize_rows(w, 4, clip_search=True)
    full = w.abs().amax(1) / 7
    for row in range(2):   # the chosen scale is full max x one of the listed clips (not a product of them)
        assert any(float(s[row]) == float((full[row] * c).to(torch.float16)) for c in tg.CLIP_FRACTIONS)


def test_a_gptq_reserve_ends_the_warmdown_at_the_earlier_cap() -> None:
    h = hp(MAX_WALLCLOCK_SECONDS="100", WARMDOWN_ITERS="10", QUANTIZER="gptq")
    # 10 steps of 1 s done; 88 s cap (100 less the 12 s reserve): the warmdown is 10 s long, 78 s remain
    assert tg.lr_multiplier(h, 10, 10_000.0, 88_000.0) == 1.0
    assert tg.lr_multiplier(h, 83, 83_000.0, 88_000.0) == pytest.approx(0.5)
    assert tg.lr_multiplier(h, 88, 88_000.0, 88_000.0) == 0.0
