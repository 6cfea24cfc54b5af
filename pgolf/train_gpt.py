"""Parameter Golf trainer: one self-contained file whose bytes are the artifact's code bytes.

Configured only through environment variables (upstream names, meanings and defaults, plus
the knobs the search explores); runs as `python train_gpt.py` or under
`torchrun --standalone --nproc_per_node=N train_gpt.py` (NCCL on CUDA, gloo on CPU) with a
global batch that does not depend on N. It trains, evaluates, quantizes and compresses the
model, reloads the compressed file, and scores the dequantized weights (the competition score).

Outputs under OUT_DIR: `train.log` (upstream line formats), `final_model.<scheme>.ptz`, and
`metrics.json` (written last, only on success).

Scheme name: `int<b>_<compressor>` when MLP_BITS, ATTN_BITS and EMBED_BITS are all b
(`fp16_<compressor>` when all are 16), otherwise `mixed_<compressor>`; it names the lines
`Total submission size <scheme>: B bytes` and `final_<scheme>_roundtrip_exact ...`.

Importable without side effects; the public functions other code reuses:
- `Hyperparameters.from_env(env)`, `.validate()`: the configuration, one-line ValueErrors.
- `build_model(hp) -> GPT` (works under `torch.device("meta")` for exact parameter counts).
- `param_group(name) -> "embed" | "attn" | "mlp" | "other"`, `count_params(model)`.
- `quantize_state_dict(state_dict, hp, hessians=None) -> obj`, `dequantize_state_dict(obj) -> state_dict`;
  `quantize_rows(w, bits, clip_search)`, `gptq_rows(w, hessian, bits, scale)`, `prune_smallest(w, frac)`,
  `collect_hessians(model, batches, hp)` (what QUANTIZER=gptq feeds quantize_state_dict).
- `storage_kind(name, shape, is_float, hp)`: how `quantize_state_dict` stores an entry.
- `compress(data, compressor, level)`, `decompress(blob)`, `serialize(obj, hp) -> bytes`,
  `deserialize(blob) -> obj` (the framed container below; and back).
- `scheme_name(hp)`, `load_shard(path)`, `load_val_tokens(pattern, seq_len, max_tokens)`.
- `token_byte_luts(sp, vocab_size) -> ByteLuts`, `count_target_bytes(prev, tgt, luts)`.
- `eval_windows(n_targets, seq_len, stride)`, `eval_val(hp, model, val_tokens, luts, ...) -> (val_loss, val_bpb)`.

Artifact container (`serialize`): `PGF1`, a 4-byte little-endian header length, a JSON header
(every stored tensor's name, part, dtype, shape, frame and offset; the frames' lengths), then the
frames, each compressed alone: one per quantized tensor's int values, one for all row scales, one
per dtype of the float tensors. Compressing tensors apart is smaller than one stream (zstd-22 packs
int6 values worse after int8 ones) and makes the size a sum that `pgolf.size` can predict.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import glob
import json
import lzma
import math
import os
import sys
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256
COMPRESSORS = {"zstd": (1, 22, 22), "lzma": (0, 9, 9), "zlib": (0, 9, 9), "brotli": (0, 11, 11)}  # min, max, default
ALLOWED_BITS = (4, 5, 6, 7, 8, 16)
CONTROL_NAME_PARTS = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weights", "smear", "bigram.scale")
BOS_ID = 1  # SentencePiece bos id of the competition's tokenizers: the first token of every document


# ----------------------------------------------------------------------------- configuration

@dataclass
class Hyperparameters:
    """Every setting of a run; field `foo_bar` is read from environment variable `FOO_BAR`."""

    # data and run
    data_path: str = "./data/datasets/fineweb10B_sp1024"
    tokenizer_path: str = "./data/tokenizers/fineweb_1024_bpe.model"
    run_id: str = "train"
    out_dir: str = "."
    seed: int = 1337
    # schedule (upstream meanings)
    iterations: int = 20000
    warmdown_iters: int = 1200
    warmup_steps: int = 20
    train_batch_tokens: int = 524_288
    train_seq_len: int = 1024
    max_wallclock_seconds: float = 600.0
    micro_batches: int = 8
    val_batch_size: int = 524_288
    val_loss_every: int = 1000
    train_log_every: int = 200
    val_max_tokens: int = 0
    eval_stride: int = 0
    torch_compile: bool = True
    cpu_threads: int = 1  # tiny CPU runs gain little from intra-op threads and lose a lot on a shared CPU
    # model
    vocab_size: int = 1024
    num_layers: int = 9
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: float = 2.0
    q_rank: int = 0
    tie_embeddings: bool = True
    rope_base: float = 10000.0
    logit_softcap: float = 30.0
    qk_gain_init: float = 1.5
    tied_embed_init_std: float = 0.005
    smear_gate: bool = False
    bigram_buckets: int = 0
    bigram_dim: int = 128
    xsa_last_n: int = 0
    # techniques of records/track_10min_16mb/2026-03-23_LeakyReLU_LegalTTT_ParallelMuon (off by default)
    mlp_activation: str = "relu2"   # relu2 | leaky_relu2: leaky_relu(x, MLP_LEAKY_SLOPE)^2
    mlp_leaky_slope: float = 0.5
    ln_scale: bool = False          # scale each block's normalized inputs by 1/sqrt(layer + 1)
    rope_dims: int = 0              # partial RoPE: rotate the first ROPE_DIMS dims of each head (0 = all)
    ema_decay: float = 0.0          # EMA of the weights at every step; the EMA weights are exported and scored
    # techniques of other seed records (off by default; the defining record is cited where each is used)
    ortho_init: bool = False        # orthogonal init of matrices >= 64x64, `.proj` ones x 1/sqrt(2 * layers)
    overtone_init: bool = False     # tied embedding's singular values reshaped to S_1 * k^-1/2
    smear_bos_mask: bool = False    # SmearGate leaves a document's first token (BOS) unblended
    num_loops: int = 0              # depth recurrence: layers LOOP_START..LOOP_END run 1 + NUM_LOOPS times
    loop_start: int = 0
    loop_end: int = 0
    enable_looping_at: float = 0.0  # fraction of training after which the loops run (before: a plain pass)
    qat_start_frac: float = 0.0     # straight-through fake quantization at the export widths, last fraction
    quantizer: str = "rtn"          # rtn | gptq (Hessian-compensated rounding of every quantized linear)
    gptq_calibration_batches: int = 16  # training micro-batches whose activations make GPTQ's Hessians
    gptq_reserve_seconds: float = 12.0  # GPTQ reads training data, so it runs inside MAX_WALLCLOCK_SECONDS
    clip_search: bool = False       # per-row scale: the clip of max|row| with the least squared error
    keep_float_last: int = 0        # the last K layers' KEEP_FLOAT_TENSORS are stored in fp16, not int
    keep_float_tensors: str = "attn.c_k"
    prune_frac: float = 0.0         # zero this fraction of smallest-magnitude values before quantizing
    # optimizers
    embed_lr: float = 0.6
    head_lr: float = 0.008
    tied_embed_lr: float = 0.05
    matrix_lr: float = 0.04
    scalar_lr: float = 0.04
    muon_momentum: float = 0.95
    muon_backend_steps: int = 5
    muon_momentum_warmup_start: float = 0.85
    muon_momentum_warmup_steps: int = 500
    muon_weight_decay: float = 0.0
    adam_weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.95
    adam_eps: float = 1e-8
    grad_clip_norm: float = 0.0
    swa_start_frac: float = 0.4
    swa_every: int = 0
    # export
    mlp_bits: int = 8
    attn_bits: int = 8
    embed_bits: int = 8
    keep_float_max_numel: int = 65_536
    compressor: str = "zstd"
    compressor_level: int = -1

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Hyperparameters":
        """Read every field from its upper-case environment variable; unset ones keep defaults."""
        values = {}
        for f in fields(cls):
            key = f.name.upper()
            if key not in env:
                continue
            raw = env[key].strip()
            kind = type(f.default)
            try:
                if kind is bool:
                    if raw.lower() not in ("0", "1", "true", "false"):
                        raise ValueError
                    values[f.name] = raw.lower() in ("1", "true")
                elif kind is int:
                    values[f.name] = int(float(raw)) if float(raw).is_integer() else int(raw)
                elif kind is float:
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError:
                raise ValueError(f"{key}={raw!r} is not a valid {kind.__name__}; set it to one") from None
        hp = cls(**values)
        if hp.compressor_level == -1 and hp.compressor in COMPRESSORS:
            hp.compressor_level = COMPRESSORS[hp.compressor][2]
        return hp

    def validate(self) -> None:
        """Raise ValueError with a one-line message naming the bad setting and the fix."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(msg)

        need(self.compressor in COMPRESSORS,
             f"unknown COMPRESSOR={self.compressor!r}; use one of {', '.join(COMPRESSORS)}")
        lo, hi, _ = COMPRESSORS[self.compressor]
        need(lo <= self.compressor_level <= hi,
             f"COMPRESSOR_LEVEL={self.compressor_level} out of range for {self.compressor}; use {lo}..{hi}")
        for name in ("mlp_bits", "attn_bits", "embed_bits"):
            need(getattr(self, name) in ALLOWED_BITS,
                 f"{name.upper()}={getattr(self, name)} not supported; use 4..8 (per-row int) or 16 (fp16)")
        need(self.num_layers >= 1, f"NUM_LAYERS={self.num_layers} must be >= 1")
        need(self.model_dim >= 1 and self.num_heads >= 1 and self.model_dim % self.num_heads == 0,
             f"MODEL_DIM={self.model_dim} is not divisible by NUM_HEADS={self.num_heads}; change one of them")
        need((self.model_dim // self.num_heads) % 2 == 0,
             f"head dim MODEL_DIM/NUM_HEADS={self.model_dim // self.num_heads} must be even for RoPE")
        need(self.num_kv_heads >= 1 and self.num_heads % self.num_kv_heads == 0,
             f"NUM_HEADS={self.num_heads} is not divisible by NUM_KV_HEADS={self.num_kv_heads}; change one of them")
        need(2 <= self.vocab_size <= 65536, f"VOCAB_SIZE={self.vocab_size} must be in 2..65536 (uint16 shards)")
        need(self.mlp_mult > 0 and round(self.mlp_mult * self.model_dim) >= 1,
             f"MLP_MULT={self.mlp_mult} must be > 0")
        need(0 <= self.q_rank <= self.model_dim, f"Q_RANK={self.q_rank} must be in 0..MODEL_DIM ({self.model_dim})")
        need(0 <= self.xsa_last_n <= self.num_layers,
             f"XSA_LAST_N={self.xsa_last_n} must be in 0..NUM_LAYERS ({self.num_layers})")
        need(self.bigram_buckets >= 0, f"BIGRAM_BUCKETS={self.bigram_buckets} must be >= 0 (0 = off)")
        need(self.bigram_buckets == 0 or self.bigram_dim >= 1, f"BIGRAM_DIM={self.bigram_dim} must be >= 1")
        need(self.train_seq_len >= 1, f"TRAIN_SEQ_LEN={self.train_seq_len} must be >= 1")
        need(self.micro_batches >= 1, f"MICRO_BATCHES={self.micro_batches} must be >= 1")
        need(self.train_batch_tokens > 0 and self.train_batch_tokens % (self.micro_batches * self.train_seq_len) == 0,
             f"TRAIN_BATCH_TOKENS={self.train_batch_tokens} must be a positive multiple of "
             f"MICRO_BATCHES*TRAIN_SEQ_LEN={self.micro_batches * self.train_seq_len}")
        need(self.val_batch_size >= self.train_seq_len,
             f"VAL_BATCH_SIZE={self.val_batch_size} must be >= TRAIN_SEQ_LEN={self.train_seq_len}")
        need(self.iterations >= 0 and self.warmup_steps >= 0 and self.warmdown_iters >= 0,
             "ITERATIONS, WARMUP_STEPS and WARMDOWN_ITERS must be >= 0")
        need(0 <= self.eval_stride <= self.train_seq_len,
             f"EVAL_STRIDE={self.eval_stride} must be in 0..TRAIN_SEQ_LEN (0 = non-overlapping windows)")
        need(0.0 <= self.swa_start_frac <= 1.0 and self.swa_every >= 0,
             "SWA_START_FRAC must be in 0..1 and SWA_EVERY >= 0 (0 = SWA off)")
        need(self.val_max_tokens == 0 or self.val_max_tokens >= self.train_seq_len,
             f"VAL_MAX_TOKENS={self.val_max_tokens} must be 0 (whole split) or >= TRAIN_SEQ_LEN={self.train_seq_len}")
        for f in fields(self):
            value = getattr(self, f.name)
            need(not isinstance(value, float) or math.isfinite(value), f"{f.name.upper()}={value} must be finite")
            need(not f.name.endswith("_lr") or value >= 0, f"{f.name.upper()}={value} must be >= 0 (a learning rate)")
        need(self.keep_float_max_numel >= 0, "KEEP_FLOAT_MAX_NUMEL must be >= 0")
        need(self.cpu_threads >= 1, f"CPU_THREADS={self.cpu_threads} must be >= 1")
        need(self.mlp_activation in ("relu2", "leaky_relu2"),
             f"MLP_ACTIVATION={self.mlp_activation!r} is unknown; use relu2 or leaky_relu2")
        head_dim = self.model_dim // max(1, self.num_heads)
        need(self.rope_dims == 0 or (0 < self.rope_dims <= head_dim and self.rope_dims % 2 == 0),
             f"ROPE_DIMS={self.rope_dims} must be 0 (all) or an even number up to the head dim {head_dim}")
        need(0.0 <= self.ema_decay < 1.0, f"EMA_DECAY={self.ema_decay} must be in [0, 1) (0 = off)")
        need(self.ema_decay == 0.0 or self.swa_every == 0, "EMA_DECAY and SWA_EVERY are both set; use one of them")
        need(self.num_loops >= 0 and (self.num_loops == 0 or 0 <= self.loop_start <= self.loop_end < self.num_layers),
             f"NUM_LOOPS={self.num_loops} needs 0 <= LOOP_START <= LOOP_END < NUM_LAYERS ({self.num_layers})")
        for name in ("enable_looping_at", "qat_start_frac"):
            need(0.0 <= getattr(self, name) <= 1.0, f"{name.upper()}={getattr(self, name)} must be in 0..1")
        need(0.0 <= self.prune_frac < 1.0, f"PRUNE_FRAC={self.prune_frac} must be in [0, 1) (0 = off)")
        need(self.quantizer in ("rtn", "gptq"), f"QUANTIZER={self.quantizer!r} is unknown; use rtn or gptq")
        need(self.gptq_calibration_batches >= 1 and self.gptq_reserve_seconds >= 0,
             "GPTQ_CALIBRATION_BATCHES must be >= 1 and GPTQ_RESERVE_SECONDS >= 0")
        need(0 <= self.keep_float_last <= self.num_layers,
             f"KEEP_FLOAT_LAST={self.keep_float_last} must be in 0..NUM_LAYERS ({self.num_layers})")

    @property
    def train_pattern(self) -> str:
        return os.path.join(self.data_path, "fineweb_train_*.bin")

    @property
    def val_pattern(self) -> str:
        return os.path.join(self.data_path, "fineweb_val_*.bin")


def scheme_name(hp: Hyperparameters) -> str:
    """`int8_zstd`, `fp16_lzma`, or `mixed_zstd` when the groups use different widths."""
    bits = {hp.mlp_bits, hp.attn_bits, hp.embed_bits}
    if len(bits) > 1:
        return f"mixed_{hp.compressor}"
    b = bits.pop()
    return f"{'fp16' if b == 16 else f'int{b}'}_{hp.compressor}"


# ----------------------------------------------------------------------------- data

def load_shard(path: str) -> np.ndarray:
    """Tokens of one competition shard (256 int32 header, then uint16 tokens)."""
    header = np.fromfile(path, dtype="<i4", count=SHARD_HEADER_INTS)
    if header.size != SHARD_HEADER_INTS or header[0] != SHARD_MAGIC or header[1] != SHARD_VERSION:
        raise ValueError(f"{path} is not a shard (bad magic/version); regenerate it with `python -m pgolf.data prepare`")
    count = int(header[2])
    tokens = np.fromfile(path, dtype="<u2", count=count, offset=SHARD_HEADER_INTS * 4)
    if tokens.size != count:
        raise ValueError(f"{path} is truncated ({tokens.size} of {count} tokens); regenerate it")
    return tokens


def shard_size(path: str) -> int:
    """Token count of a shard whose header is valid and whose file holds all of its tokens."""
    header = np.fromfile(path, dtype="<i4", count=SHARD_HEADER_INTS)
    if header.size != SHARD_HEADER_INTS or header[0] != SHARD_MAGIC or header[1] != SHARD_VERSION:
        raise ValueError(f"{path} is not a shard (bad magic/version); regenerate it with `python -m pgolf.data prepare`")
    held = (os.path.getsize(path) - SHARD_HEADER_INTS * 4) // 2
    if held < int(header[2]):
        raise ValueError(f"{path} is truncated ({held} of {int(header[2])} tokens); regenerate it")
    return int(header[2])


def load_val_tokens(pattern: str, seq_len: int, max_tokens: int = 0) -> Tensor:
    """All validation tokens (capped at max_tokens+1 when > 0), cut to whole sequences plus one."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise ValueError(f"no validation shards match {pattern}; set DATA_PATH to a prepared dataset")
    tokens = np.concatenate([load_shard(f) for f in files])
    if max_tokens > 0:
        tokens = tokens[: max_tokens + 1]
    usable = ((tokens.size - 1) // seq_len) * seq_len
    if usable <= 0:
        raise ValueError(f"validation split has {tokens.size} tokens, fewer than TRAIN_SEQ_LEN+1={seq_len + 1}")
    return torch.from_numpy(tokens[: usable + 1].astype(np.int64))


class TokenStream:
    """Reads the training shards in order, forever; every rank reads the same stream."""

    def __init__(self, pattern: str):
        self.files = sorted(glob.glob(pattern))
        if not self.files:
            raise ValueError(f"no training shards match {pattern}; set DATA_PATH to a prepared dataset")
        self.index, self.pos = 0, 0
        self.tokens = load_shard(self.files[0])

    def take(self, n: int) -> np.ndarray:
        parts = []
        while n > 0:
            if self.pos >= self.tokens.size:
                self.index = (self.index + 1) % len(self.files)
                self.tokens, self.pos = load_shard(self.files[self.index]), 0
            k = min(n, self.tokens.size - self.pos)
            parts.append(self.tokens[self.pos : self.pos + k])
            self.pos, n = self.pos + k, n - k
        return np.concatenate(parts)

    def rewind(self) -> None:
        """Back to the first token (the first shard is reloaded only if the stream has left it)."""
        if self.index != 0:
            self.tokens = load_shard(self.files[0])
        self.index, self.pos = 0, 0


def next_micro_batch(stream: TokenStream, local_tokens: int, seq_len: int, rank: int, world: int,
                     device: torch.device) -> tuple[Tensor, Tensor]:
    """This rank's slice of the next global micro-batch chunk, so results do not depend on world size."""
    span = local_tokens + 1
    chunk = stream.take(span * world)[rank * span : (rank + 1) * span]
    t = torch.from_numpy(chunk.astype(np.int64)).to(device, non_blocking=True)
    return t[:-1].view(-1, seq_len), t[1:].view(-1, seq_len)


# ----------------------------------------------------------------------------- byte accounting

class ByteLuts(NamedTuple):
    base_bytes: Tensor          # int16: UTF-8 bytes of the piece without its leading "▁"
    has_leading_space: Tensor   # bool: piece starts with "▁" (one more byte unless after a boundary)
    is_boundary: Tensor         # bool: control/unknown/unused pieces (0 bytes)


def token_byte_luts(sp, vocab_size: int, device: torch.device | str = "cpu") -> ByteLuts:
    """Per-token byte tables from a SentencePiece model (REFERENCE.md §1 accounting)."""
    size = max(int(sp.vocab_size()), vocab_size)
    base = np.zeros(size, dtype=np.int16)
    space = np.zeros(size, dtype=np.bool_)
    boundary = np.ones(size, dtype=np.bool_)
    for tid in range(int(sp.vocab_size())):
        if sp.is_control(tid) or sp.is_unknown(tid) or sp.is_unused(tid):
            continue
        boundary[tid] = False
        if sp.is_byte(tid):
            base[tid] = 1
            continue
        piece = sp.id_to_piece(tid)
        if piece.startswith("\u2581"):
            space[tid] = True
            piece = piece[1:]
        base[tid] = len(piece.encode("utf-8"))
    return ByteLuts(*(torch.from_numpy(a).to(device) for a in (base, space, boundary)))


def count_target_bytes(prev_ids: Tensor, tgt_ids: Tensor, luts: ByteLuts) -> Tensor:
    """Bytes of each target token given the token before it (same shapes in, int32 out)."""
    extra = luts.has_leading_space[tgt_ids] & ~luts.is_boundary[prev_ids]
    return luts.base_bytes[tgt_ids].to(torch.int32) + extra.to(torch.int32)


# ----------------------------------------------------------------------------- model

class CastedLinear(nn.Linear):
    """Bias-free linear whose fp32 weight is cast to the activation dtype (bf16 under autocast).
    With `qat_bits` set (QAT_START_FRAC) training sees the weight rounded as the export will store it
    (per-row scale max|row|/qmax), with straight-through gradients (records/track_10min_16mb/
    2026-03-21_11L_XSA4_EMA_PartialRoPE_LateQAT_1.1248, at each group's export width)."""

    def __init__(self, fan_in: int, fan_out: int, zero_init: bool = False):
        super().__init__(fan_in, fan_out, bias=False)
        self.zero_init, self.qat_bits = zero_init, 0
        if zero_init:
            nn.init.zeros_(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype)
        if self.qat_bits and self.training:
            q, scale = quantize_rows(self.weight, self.qat_bits)  # the export's own rounding
            w = w + ((q.float() * scale.float()[:, None]).to(x.dtype) - w).detach()
        return F.linear(x, w)


def rms_norm(x: Tensor) -> Tensor:
    return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    """RoPE tables, computed on the fly (kept out of the state dict)."""

    def __init__(self, head_dim: int, base: float, rope_dims: int = 0):
        super().__init__()
        self.dims = rope_dims or head_dim  # partial RoPE: the first `dims` of each head, the rest pass through
        inv = 1.0 / (base ** (torch.arange(0, self.dims, 2, dtype=torch.float32) / self.dims))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, H, T, D)
        t = torch.arange(x.size(-2), device=x.device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq.to(x.device))
        cos, sin = freqs.cos().to(x.dtype), freqs.sin().to(x.dtype)
        rot, rest = x[..., : self.dims], x[..., self.dims:]
        half = self.dims // 2
        x1, x2 = rot[..., :half], rot[..., half:]
        return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin, rest), dim=-1)


class Attention(nn.Module):
    """Causal GQA attention with QK-norm, RoPE, per-head query gain, optional low-rank Q and XSA."""

    def __init__(self, hp: Hyperparameters, xsa: bool):
        super().__init__()
        dim, self.n_head, self.n_kv = hp.model_dim, hp.num_heads, hp.num_kv_heads
        self.head_dim, self.xsa = dim // hp.num_heads, xsa
        if hp.q_rank > 0:
            self.q_down = CastedLinear(dim, hp.q_rank)
            self.q_up = CastedLinear(hp.q_rank, dim)
        else:
            self.c_q = CastedLinear(dim, dim)
        self.c_k = CastedLinear(dim, self.n_kv * self.head_dim)
        self.c_v = CastedLinear(dim, self.n_kv * self.head_dim)
        self.proj = CastedLinear(dim, dim, zero_init=True)
        self.q_gain = nn.Parameter(torch.full((self.n_head,), hp.qk_gain_init))
        self.rotary = Rotary(self.head_dim, hp.rope_base, hp.rope_dims)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q = self.q_up(self.q_down(x)) if hasattr(self, "q_up") else self.c_q(x)
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.c_k(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        v = self.c_v(x).view(B, T, self.n_kv, self.head_dim).transpose(1, 2)
        q, k = self.rotary(rms_norm(q)), self.rotary(rms_norm(k))
        q = q * self.q_gain.to(q.dtype)[None, :, None, None]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.n_kv != self.n_head)
        if self.xsa:  # remove the component along each token's own value vector
            vn = F.normalize(v.repeat_interleave(self.n_head // self.n_kv, dim=1), dim=-1)
            y = y - (y * vn).sum(-1, keepdim=True) * vn
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    """relu² (or leaky relu²) MLP with a (possibly fractional) width multiplier."""

    def __init__(self, hp: Hyperparameters):
        super().__init__()
        hidden = max(1, round(hp.mlp_mult * hp.model_dim))
        self.fc = CastedLinear(hp.model_dim, hidden)
        self.proj = CastedLinear(hidden, hp.model_dim, zero_init=True)
        self.slope = hp.mlp_leaky_slope if hp.mlp_activation == "leaky_relu2" else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc(x)
        h = F.relu(h) if self.slope is None else F.leaky_relu(h, negative_slope=self.slope)
        return self.proj(h.square())


class Block(nn.Module):
    """Pre-norm block with learned residual mix toward the embedding x0 and per-channel branch scales."""

    def __init__(self, hp: Hyperparameters, xsa: bool, layer: int = 0):
        super().__init__()
        dim = hp.model_dim
        self.ln_scale = 1.0 / math.sqrt(layer + 1) if hp.ln_scale else 1.0
        self.attn = Attention(hp, xsa)
        self.mlp = MLP(hp)
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        if self.ln_scale == 1.0:
            x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x))
            return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x))
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x) * self.ln_scale)
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x) * self.ln_scale)


class SmearGate(nn.Module):
    """Blend each position with the previous one through a learned per-channel sigmoid gate, as
    records/track_10min_16mb/2026-03-20_Int6_MLP3x_SmearGate_BigramHash_MuonWD_SWA defines it (gate
    zero-init: half and half at the start); SMEAR_BOS_MASK keeps a document's first token (BOS) out
    of the blend (records/track_10min_16mb/2026-04-29_SmearGateBOSFix_3Seed_1.06141)."""

    def __init__(self, dim: int, bos_mask: bool):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(dim))
        self.bos_mask = bos_mask

    def forward(self, x: Tensor, idx: Tensor) -> Tensor:
        g = torch.sigmoid(self.gate.to(x.dtype))[None, None, :]
        if self.bos_mask:
            g = g.masked_fill((idx == BOS_ID)[..., None], 0.0)
        prev = F.pad(x[:, :-1], (0, 0, 1, 0))
        return (1 - g) * x + g * prev


class BigramHash(nn.Module):
    """Hashed (previous, current) token pair embedding, as the SmearGate record above defines it:
    bucket xor(36313 * cur, 27191 * prev) mod (buckets - 1), the last bucket for position 0; table
    zero-init, projected to the model width when narrower, times a learned scale (0.05 at init)."""

    def __init__(self, buckets: int, bdim: int, dim: int):
        super().__init__()
        self.buckets = buckets
        self.table = nn.Embedding(buckets, bdim)
        nn.init.zeros_(self.table.weight)
        self.proj = CastedLinear(bdim, dim) if bdim != dim else None  # not zero: the table starts at zero
        self.scale = nn.Parameter(torch.tensor(0.05))

    def forward(self, idx: Tensor) -> Tensor:
        t, mod = idx.to(torch.int32), self.buckets - 1
        h = torch.full_like(t, mod)
        if mod > 0:
            h[:, 1:] = torch.bitwise_xor(36313 * t[:, 1:], 27191 * t[:, :-1]) % mod
        e = self.table(h.long())
        e = self.proj(e) if self.proj is not None else e
        return e * self.scale.to(e.dtype)


def layer_order(hp: Hyperparameters) -> list[int]:
    """The blocks in the order one forward pass runs them: with NUM_LOOPS, layers LOOP_START..LOOP_END
    repeat 1 + NUM_LOOPS times (records/track_10min_16mb/2026-04-09_SP8192_3LayerRecur_ParResid_QK525_LegalTTT)."""
    if hp.num_loops == 0:
        return list(range(hp.num_layers))
    loop = list(range(hp.loop_start, hp.loop_end + 1))
    return list(range(hp.loop_start)) + loop * (hp.num_loops + 1) + list(range(hp.loop_end + 1, hp.num_layers))


class GPT(nn.Module):
    """The baseline model: tied embeddings, U-Net skips between halves, softcapped logits."""

    def __init__(self, hp: Hyperparameters):
        super().__init__()
        self.softcap, self.tied = hp.logit_softcap, hp.tie_embeddings
        self.tok_emb = nn.Embedding(hp.vocab_size, hp.model_dim)
        nn.init.normal_(self.tok_emb.weight, std=hp.tied_embed_init_std if hp.tie_embeddings else 1.0)
        self.bigram = BigramHash(hp.bigram_buckets, hp.bigram_dim, hp.model_dim) if hp.bigram_buckets else None
        self.smear = SmearGate(hp.model_dim, hp.smear_bos_mask) if hp.smear_gate else None
        plain, looped = list(range(hp.num_layers)), layer_order(hp)
        self.orders = {False: plain, True: looped}  # encoder = the first half of the order, decoder the rest
        self.looping = hp.num_loops > 0 and hp.enable_looping_at == 0.0
        self.skip_weights = nn.Parameter(torch.ones(max(len(looped) // 2, hp.num_layers // 2), hp.model_dim))
        first_xsa = hp.num_layers - hp.xsa_last_n
        self.blocks = nn.ModuleList(Block(hp, xsa=i >= first_xsa, layer=i) for i in range(hp.num_layers))
        self.lm_head = None if hp.tie_embeddings else CastedLinear(hp.model_dim, hp.vocab_size, zero_init=True)
        if self.tok_emb.weight.is_meta:
            return
        if hp.ortho_init:  # records/track_10min_16mb/2026-03-20_Int6_MLP3x_SmearGate_BigramHash_MuonWD_SWA
            for name, m in self.named_modules():
                if isinstance(m, CastedLinear) and not m.zero_init and min(m.weight.shape) >= 64:
                    nn.init.orthogonal_(m.weight, gain=1.0)
                    if name.endswith(".proj"):
                        m.weight.data.mul_(1.0 / math.sqrt(2 * hp.num_layers))
        if hp.overtone_init and hp.tie_embeddings:  # records/track_10min_16mb/2026-03-19_SlidingWindow_FP16Emb_10L_MuonWD_OvertoneInit
            with torch.no_grad():
                u, sv, v = torch.linalg.svd(self.tok_emb.weight, full_matrices=False)
                target = sv[0] * torch.arange(1, sv.numel() + 1, dtype=sv.dtype) ** -0.5
                self.tok_emb.weight.copy_((u * target[None, :]) @ v)

    def forward(self, idx: Tensor, targets: Tensor | None = None, reduction: str = "mean") -> Tensor:
        x = self.tok_emb(idx)
        if self.bigram is not None:
            x = x + self.bigram(idx)
        x = rms_norm(x)
        if self.smear is not None:
            x = self.smear(x, idx)
        order = self.orders[self.looping]
        x0, skips, n_enc = x, [], len(order) // 2
        for i in order[:n_enc]:
            x = self.blocks[i](x, x0)
            skips.append(x)
        for j, i in enumerate(order[n_enc:]):
            if skips:
                x = x + self.skip_weights[j].to(x.dtype) * skips.pop()
            x = self.blocks[i](x, x0)
        x = rms_norm(x)
        logits = F.linear(x, self.tok_emb.weight.to(x.dtype)) if self.tied else self.lm_head(x)
        logits = self.softcap * torch.tanh(logits / self.softcap)
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction=reduction)


def build_model(hp: Hyperparameters) -> GPT:
    """The model for these settings on the current default device (e.g. `torch.device("meta")`)."""
    return GPT(hp)


def param_group(name: str) -> str:
    """Quantization/accounting group of a state-dict entry: embed, attn, mlp or other."""
    if name.startswith(("tok_emb.", "lm_head.", "bigram.table.")):
        return "embed"
    if ".attn." in name:
        return "attn"
    if ".mlp." in name:
        return "mlp"
    return "other"


def count_params(model: nn.Module) -> dict[str, int]:
    """Parameter count per group (works on meta tensors)."""
    counts = {"embed": 0, "attn": 0, "mlp": 0, "other": 0}
    for name, p in model.named_parameters():
        counts[param_group(name)] += p.numel()
    return counts


# ----------------------------------------------------------------------------- quantization / export

def group_bits(name: str, hp: Hyperparameters) -> int:
    return {"embed": hp.embed_bits, "attn": hp.attn_bits, "mlp": hp.mlp_bits, "other": 8}[param_group(name)]


def quantize_rows(w: Tensor, bits: int, clip_search: bool = False) -> tuple[Tensor, Tensor]:
    """Per-row symmetric quantization: fp16 scale = max|row| / (2^(bits-1)-1), int8 values. With
    clip_search each row's scale is that of the clip (a fraction of max|row|) with the least squared
    rounding error (clipping the outliers buys finer steps for the rest)."""
    qmax = 2 ** (bits - 1) - 1
    w32 = w.detach().float()
    scale = (w32.abs().amax(dim=1) / qmax).clamp_min(1e-6).to(torch.float16)
    if clip_search:
        best, full = None, scale.float()
        for clip in CLIP_FRACTIONS:
            s = (full * clip).clamp_min(1e-6).to(torch.float16)
            err = ((torch.round(w32 / s.float()[:, None]).clamp(-qmax, qmax) * s.float()[:, None] - w32) ** 2).sum(1)
            scale, best = (s, err) if best is None else (torch.where(err < best, s, scale), torch.minimum(err, best))
    q = torch.round(w32 / scale.float()[:, None]).clamp_(-qmax, qmax).to(torch.int8)
    return q.contiguous(), scale.contiguous()


CLIP_FRACTIONS = (1.0, 0.98, 0.95, 0.92, 0.88, 0.84, 0.8, 0.75, 0.7, 0.6, 0.5)


def gptq_rows(w: Tensor, hessian: Tensor, bits: int, scale: Tensor, block: int = 128) -> Tensor:
    """GPTQ (Frantar et al. 2023) at fixed per-row scales: columns in order of decreasing Hessian
    diagonal, each rounded and its error spread over the columns not yet rounded through the
    Cholesky factor of the inverse Hessian, as records/track_10min_16mb/
    2026-03-29_Loader_FullGPTQ_XSA11_BigramHash2816 does it (1 % damping, blocks of 128)."""
    qmax, cols = 2 ** (bits - 1) - 1, w.shape[1]
    w, h = w.detach().float().clone(), hessian.double().clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h.diagonal().add_(0.01 * h.diagonal().mean())
    perm = torch.argsort(h.diagonal(), descending=True)
    w, h = w[:, perm], h[perm][:, perm]
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True).float()
    s = scale.float()[:, None]
    q = torch.zeros(w.shape, dtype=torch.int8)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        wb, hb, err = w[:, i1:i2].clone(), hinv[i1:i2, i1:i2], torch.zeros(w.shape[0], i2 - i1)
        for j in range(i2 - i1):
            qc = torch.round(wb[:, j : j + 1] / s).clamp(-qmax, qmax)
            q[:, i1 + j] = qc[:, 0].to(torch.int8)
            err[:, j : j + 1] = (wb[:, j : j + 1] - qc * s) / hb[j, j]
            wb[:, j:] -= err[:, j : j + 1] * hb[j : j + 1, j:]
        w[:, i2:] -= err @ hinv[i1:i2, i2:]
    return q[:, torch.argsort(perm)].contiguous()


def prune_smallest(w: Tensor, frac: float) -> Tensor:
    """Zero the `frac` smallest-magnitude values (records/track_10min_16mb/2026-03-20_10L_Int5MLP_MuonWD04_SWA50)."""
    k = int(frac * w.numel())
    if k == 0:
        return w
    threshold = w.detach().abs().float().flatten().kthvalue(k).values
    return w.masked_fill(w.abs() <= threshold, 0.0)


def storage_kind(name: str, shape: tuple[int, ...], is_float: bool, hp: Hyperparameters) -> str:
    """How quantize_state_dict stores an entry: `int<b>` (per-row ints + fp16 scales), `fp32`
    (control tensors), `fp16` (other floats, and KEEP_FLOAT_TENSORS of the last KEEP_FLOAT_LAST
    layers: the late-K fp16 of records/track_10min_16mb/2026-03-20_10L_Int5MLP_MuonWD04_SWA50) or
    `raw` (non-float, as is)."""
    bits = group_bits(name, hp)
    if is_float and any(part in name for part in CONTROL_NAME_PARTS):
        return "fp32"
    if hp.keep_float_last and name.startswith("blocks.") and \
            int(name.split(".")[1]) >= hp.num_layers - hp.keep_float_last and \
            any(p and p in name for p in hp.keep_float_tensors.split(",")):
        return "fp16" if is_float else "raw"
    if is_float and len(shape) == 2 and math.prod(shape) > hp.keep_float_max_numel and bits != 16:
        return f"int{bits}"
    return "fp16" if is_float else "raw"


ROWQUANT_FORMAT = "pgolf-rowquant-v2"


def quantize_state_dict(state_dict: Mapping[str, Tensor], hp: Hyperparameters,
                        hessians: Mapping[str, Tensor] | None = None) -> dict:
    """Large 2-D float tensors -> per-row ints of their group's width (pruned first with PRUNE_FRAC;
    GPTQ where `hessians` has the tensor); the rest kept as floats (control tensors in fp32, other
    small tensors and 16-bit groups in fp16)."""
    quant, floats, dtypes = {}, {}, {}
    for name, t in state_dict.items():
        t = t.detach().cpu()
        dtypes[name] = str(t.dtype).removeprefix("torch.")
        kind = storage_kind(name, tuple(t.shape), t.is_floating_point(), hp)
        if kind.startswith("int"):
            bits = int(kind[3:])
            t = prune_smallest(t, hp.prune_frac) if hp.prune_frac > 0 else t
            q, s = quantize_rows(t, bits, hp.clip_search)
            if hessians is not None and name in hessians:
                q = gptq_rows(t, hessians[name], bits, s)
            quant[name] = {"q": q, "scale": s, "bits": bits}
        elif kind == "fp32":
            floats[name] = t.float().contiguous()
        elif kind == "fp16":
            floats[name] = t.to(torch.float16).contiguous()
        else:
            floats[name] = t.contiguous()
    return {"format": ROWQUANT_FORMAT, "quant": quant, "float": floats, "dtypes": dtypes}


def int_linears(model: nn.Module, hp: Hyperparameters) -> list[tuple[str, CastedLinear, int]]:
    """(weight name, module, bits) of every linear whose weight the export stores as ints: what QAT
    rounds during training and GPTQ quantizes."""
    out = []
    for name, m in model.named_modules():
        kind = storage_kind(name + ".weight", tuple(m.weight.shape), True, hp) if isinstance(m, CastedLinear) else ""
        if kind.startswith("int"):
            out.append((name + ".weight", m, int(kind[3:])))
    return out


@torch.no_grad()
def collect_hessians(model: GPT, batches: list[Tensor], hp: Hyperparameters) -> dict[str, Tensor]:
    """H = sum of X^T X over the inputs X every int-stored linear sees on `batches` (token ids), for
    GPTQ; the tied embedding and the bigram table are looked up, not multiplied, and keep RTN."""
    hessians: dict[str, Tensor] = {}

    def hook(name):
        def add(_m, inputs):
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            hessians[name] = hessians.get(name, 0) + (x.T @ x).cpu()
        return add

    handles = [m.register_forward_pre_hook(hook(name)) for name, m, _ in int_linears(model, hp)]
    was_training = model.training
    model.eval()
    for x in batches:
        model(x)
    model.train(was_training)
    for h in handles:
        h.remove()
    return hessians


def dequantize_state_dict(obj: Mapping) -> dict[str, Tensor]:
    """Inverse of quantize_state_dict: a state dict in the original dtypes."""
    out = {}
    for name, e in obj["quant"].items():
        out[name] = e["q"].float() * e["scale"].float()[:, None]
    for name, t in obj["float"].items():
        out[name] = t
    return {name: t.to(getattr(torch, obj["dtypes"][name])) for name, t in out.items()}


def compress(data: bytes, compressor: str, level: int) -> bytes:
    if compressor == "zstd":
        import zstandard
        return zstandard.ZstdCompressor(level=level).compress(data)
    if compressor == "lzma":
        return lzma.compress(data, preset=level)
    if compressor == "zlib":
        return zlib.compress(data, level)
    if compressor == "brotli":  # the leading records' compressor (pip install brotli)
        import brotli
        return brotli.compress(data, quality=level)
    raise ValueError(f"unknown compressor {compressor!r}; use one of {', '.join(COMPRESSORS)}")


def decompress(blob: bytes, compressor: str = "") -> bytes:
    """Undo compress(): brotli when named (it has no magic bytes), else by the format's magic bytes."""
    if compressor == "brotli":
        import brotli
        return brotli.decompress(blob)
    if blob[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard
        return zstandard.ZstdDecompressor().decompress(blob, max_output_size=1 << 34)
    if blob[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(blob)
    return zlib.decompress(blob)


CONTAINER_MAGIC = b"PGF1"
COMPRESS_THREADS = 4  # frames compressed at once: an lzma-9 compressor alone holds about 0.7 GB


def frame_layout(obj: Mapping) -> tuple[list[list], list[list[Tensor]]]:
    """The container's records ([name, part, dtype, shape, frame, offset]) and each frame's tensors:
    a frame per quantized tensor's values, one for all row scales, one per float dtype."""
    records, frames = [], []

    def put(frame: int, name: str, part: str, t: Tensor) -> None:
        offset = sum(x.numel() * x.element_size() for x in frames[frame])
        records.append([name, part, str(t.dtype).removeprefix("torch."), list(t.shape), frame, offset])
        frames[frame].append(t)

    for name, e in obj["quant"].items():
        frames.append([])
        put(len(frames) - 1, name, "q", e["q"])
    if obj["quant"]:
        frames.append([])
        for name, e in obj["quant"].items():
            put(len(frames) - 1, name, "scale", e["scale"])
    by_dtype: dict[torch.dtype, int] = {}
    for name, t in obj["float"].items():
        if t.dtype not in by_dtype:
            by_dtype[t.dtype] = len(frames)
            frames.append([])
        put(by_dtype[t.dtype], name, "float", t)
    return records, frames


def container_header(obj: Mapping, records: list[list], frame_lengths: list[int], compressor: str) -> bytes:
    bits = {name: e["bits"] for name, e in obj["quant"].items()}
    header = {"format": obj["format"], "compressor": compressor, "dtypes": obj["dtypes"], "bits": bits,
              "tensors": records, "frames": frame_lengths}
    return json.dumps(header, separators=(",", ":")).encode()


def serialize(obj: Mapping, hp: Hyperparameters) -> bytes:
    """The artifact's model bytes: each frame compressed alone (in parallel), behind a JSON header."""
    from concurrent.futures import ThreadPoolExecutor

    records, frames = frame_layout(obj)
    raw = [b"".join(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for t in ts) for ts in frames]
    with ThreadPoolExecutor(max_workers=max(1, min(len(raw), os.cpu_count() or 1, COMPRESS_THREADS))) as pool:
        packed = list(pool.map(lambda b: compress(b, hp.compressor, hp.compressor_level), raw))
    header = container_header(obj, records, [len(b) for b in packed], hp.compressor)
    return b"".join([CONTAINER_MAGIC, len(header).to_bytes(4, "little"), header, *packed])


def read_header(blob: bytes) -> tuple[dict, int]:
    """The container's JSON header and the offset of its first frame (blob may end after the header)."""
    if blob[:4] != CONTAINER_MAGIC:
        raise ValueError("not a pgolf model file (no PGF1 header); it was written by another trainer version")
    n = int.from_bytes(blob[4:8], "little")
    return json.loads(blob[8 : 8 + n]), 8 + n


def deserialize(blob: bytes) -> dict:
    """Inverse of serialize: the quantized object (quant/float/dtypes)."""
    header, pos = read_header(blob)
    frames = []
    for length in header["frames"]:
        frames.append(decompress(blob[pos : pos + length], header.get("compressor", "")))
        pos += length
    quant: dict[str, dict] = {}
    floats: dict[str, Tensor] = {}
    for name, part, dtype, shape, frame, offset in header["tensors"]:
        dt = getattr(torch, dtype)
        size = math.prod(shape) * torch.empty((), dtype=dt).element_size()
        data = bytearray(frames[frame][offset : offset + size])
        t = torch.frombuffer(data, dtype=torch.uint8).view(dt).reshape(shape) if size else torch.empty(shape, dtype=dt)
        if part == "float":
            floats[name] = t
        else:
            quant.setdefault(name, {"bits": header["bits"][name]})[part] = t
    return {"format": header["format"], "quant": quant, "float": floats, "dtypes": header["dtypes"]}


# ----------------------------------------------------------------------------- evaluation

def eval_windows(n_targets: int, seq_len: int, stride: int = 0) -> list[tuple[int, int]]:
    """(start, first scored offset) of each evaluation window of seq_len tokens; every target index
    in range(n_targets) is scored exactly once (n_targets must be a multiple of seq_len)."""
    if 0 < stride < seq_len:
        ends = [min(c + stride, n_targets) for c in range(seq_len, n_targets, stride)]
        return [(0, 0)] + [(e - seq_len, seq_len - (e - c)) for c, e in zip(range(seq_len, n_targets, stride), ends)]
    return [(s, 0) for s in range(0, n_targets - seq_len + 1, seq_len)]


@torch.no_grad()
def eval_val(hp: Hyperparameters, model: nn.Module, val_tokens: Tensor, luts: ByteLuts,
             device: torch.device | str = "cpu", rank: int = 0, world: int = 1,
             stride: int = 0) -> tuple[float, float]:
    """(val_loss, val_bpb) over all validation targets; stride in 1..seq_len-1 gives sliding windows
    where every window is seq_len long and scores only its last `stride` targets (the first all)."""
    seq = hp.train_seq_len
    windows = eval_windows(val_tokens.numel() - 1, seq, stride)
    lo, hi = len(windows) * rank // world, len(windows) * (rank + 1) // world
    batch = max(1, hp.val_batch_size // (hp.micro_batches * seq))
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, tokens, bytes
    was_training = model.training
    model.eval()
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if torch.device(device).type == "cuda" else contextlib.nullcontext()
    for b in range(lo, hi, batch):
        idx = range(b, min(b + batch, hi))
        win = torch.stack([val_tokens[windows[i][0] : windows[i][0] + seq + 1] for i in idx]).to(device)
        x, y = win[:, :-1], win[:, 1:]
        first = torch.tensor([windows[i][1] for i in idx], device=device)
        mask = torch.arange(seq, device=device)[None, :] >= first[:, None]
        with ctx:
            losses = model(x, y, reduction="none").view_as(y).double()
        nbytes = count_target_bytes(x, y, luts)
        sums += torch.stack([losses[mask].sum(), mask.sum().double(), nbytes[mask].sum().double()])
    if world > 1:
        dist.all_reduce(sums)
    model.train(was_training)
    loss, tokens, nbytes = sums.tolist()
    return loss / tokens, loss / math.log(2.0) / nbytes


# ----------------------------------------------------------------------------- optimizer

def newton_schulz(g: Tensor, steps: int) -> Tensor:
    """Approximate orthogonalization (quintic Newton-Schulz); bf16 on CUDA, fp32 on CPU."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16() if g.is_cuda else g.float()
    x = x / (x.norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for _ in range(steps):
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return x.T if tall else x


class Muon(torch.optim.Optimizer):
    """Momentum + orthogonalized updates for matrices; ranks split the work and share the result."""

    def __init__(self, params, lr: float, momentum: float, backend_steps: int, weight_decay: float,
                 rank: int = 0, world: int = 1):
        super().__init__(params, dict(lr=lr, momentum=momentum, backend_steps=backend_steps,
                                      weight_decay=weight_decay))
        self.rank, self.world = rank, world

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = group["params"]
            if not params:
                continue
            flat = torch.zeros(sum(p.numel() for p in params), device=params[0].device, dtype=torch.float32)
            offset = 0
            for i, p in enumerate(params):
                if i % self.world == self.rank and p.grad is not None:
                    state = self.state[p]
                    buf = state.setdefault("momentum_buffer", torch.zeros_like(p.grad))
                    buf.mul_(group["momentum"]).add_(p.grad)
                    g = newton_schulz(p.grad.add(buf, alpha=group["momentum"]), group["backend_steps"])
                    g = g * max(1.0, g.size(0) / g.size(1)) ** 0.5
                    flat[offset : offset + p.numel()] = g.reshape(-1).float()
                offset += p.numel()
            if self.world > 1:
                dist.all_reduce(flat)
            offset = 0
            for p in params:
                if group["weight_decay"] > 0:
                    p.mul_(1.0 - group["lr"] * group["weight_decay"])
                p.add_(flat[offset : offset + p.numel()].view_as(p).to(p.dtype), alpha=-group["lr"])
                offset += p.numel()


def build_optimizers(model: GPT, hp: Hyperparameters, device: torch.device, rank: int, world: int):
    """Muon on block/bigram matrices; Adam(W) on embeddings and head; Adam on scalars and gates."""
    matrices, scalars, embeds, head = [], [], [], []
    for name, p in model.named_parameters():
        if name.startswith(("tok_emb.", "bigram.table.")):
            embeds.append(p)
        elif name.startswith("lm_head."):
            head.append(p)
        elif p.ndim == 2 and not any(part in name for part in CONTROL_NAME_PARTS):
            matrices.append(p)
        else:
            scalars.append(p)
    fused = {"fused": True} if device.type == "cuda" else {}
    adam = dict(betas=(hp.beta1, hp.beta2), eps=hp.adam_eps, **fused)
    embed_lr = hp.tied_embed_lr if hp.tie_embeddings else hp.embed_lr
    opts = [
        torch.optim.AdamW([{"params": embeds, "lr": embed_lr, "base_lr": embed_lr}],
                          weight_decay=hp.adam_weight_decay, **adam),
        torch.optim.Adam([{"params": scalars, "lr": hp.scalar_lr, "base_lr": hp.scalar_lr}], **adam),
        Muon(matrices, lr=hp.matrix_lr, momentum=hp.muon_momentum, backend_steps=hp.muon_backend_steps,
             weight_decay=hp.muon_weight_decay, rank=rank, world=world),
    ]
    for g in opts[2].param_groups:
        g["base_lr"] = hp.matrix_lr
    if head:
        opts.append(torch.optim.AdamW([{"params": head, "lr": hp.head_lr, "base_lr": hp.head_lr}],
                                      weight_decay=hp.adam_weight_decay, **adam))
    return opts


def lr_multiplier(hp: Hyperparameters, step: int, elapsed_ms: float, cap_ms: float | None = None) -> float:
    """Upstream schedule: constant, then linear warmdown over the last WARMDOWN_ITERS steps
    (estimated from the average step time when a wallclock cap is set; cap_ms: the cap training
    really stops at, MAX_WALLCLOCK_SECONDS less any GPTQ reserve)."""
    if hp.warmdown_iters <= 0:
        return 1.0
    if hp.max_wallclock_seconds <= 0:
        start = max(hp.iterations - hp.warmdown_iters, 0)
        return max((hp.iterations - step) / hp.warmdown_iters, 0.0) if step >= start else 1.0
    step_ms = elapsed_ms / max(step, 1)
    warmdown_ms = hp.warmdown_iters * step_ms
    remaining_ms = max((cap_ms or hp.max_wallclock_seconds * 1000.0) - elapsed_ms, 0.0)
    return remaining_ms / max(warmdown_ms, 1e-9) if remaining_ms <= warmdown_ms else 1.0


# ----------------------------------------------------------------------------- training run

class TrainingDiverged(RuntimeError):
    pass


@dataclass
class Runtime:
    """Process-level facts of this run (device and distributed layout)."""
    device: torch.device
    rank: int
    world: int

    @property
    def master(self) -> bool:
        return self.rank == 0

    def autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def check_inputs(hp: Hyperparameters, world: int):
    """Start-up checks that need the filesystem: shards, tokenizer, vocab. Returns the tokenizer."""
    if hp.micro_batches % world:
        raise ValueError(f"MICRO_BATCHES={hp.micro_batches} is not divisible by the world size {world}; "
                         f"use a process count that divides it")
    for kind, pattern in (("training", hp.train_pattern), ("validation", hp.val_pattern)):
        if not glob.glob(pattern):
            raise ValueError(f"no {kind} shards match {pattern}; set DATA_PATH to a prepared dataset "
                             f"(python -m pgolf.data prepare)")
    if not os.path.isfile(hp.tokenizer_path):
        raise ValueError(f"tokenizer {hp.tokenizer_path} not found; set TOKENIZER_PATH to a .model file")
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=hp.tokenizer_path)
    if sp.vocab_size() != hp.vocab_size:
        raise ValueError(f"VOCAB_SIZE={hp.vocab_size} does not match the tokenizer's {sp.vocab_size()} pieces; "
                         f"set VOCAB_SIZE={sp.vocab_size()} or use the matching tokenizer")
    for f in sorted(glob.glob(hp.train_pattern)):
        shard_size(f)  # every shard whole before any training time is spent (headers only)
    val_tokens = sum(shard_size(f) for f in sorted(glob.glob(hp.val_pattern)))
    if min(val_tokens, hp.val_max_tokens + 1 if hp.val_max_tokens else val_tokens) < hp.train_seq_len + 1:
        raise ValueError(f"the validation split has {val_tokens} tokens, fewer than TRAIN_SEQ_LEN+1="
                         f"{hp.train_seq_len + 1}; lower TRAIN_SEQ_LEN or use a bigger split")
    for f in sorted(glob.glob(hp.train_pattern))[:1] + sorted(glob.glob(hp.val_pattern))[:1]:
        top = int(load_shard(f).max(initial=0))
        if top >= hp.vocab_size:
            raise ValueError(f"{f} holds token id {top} >= VOCAB_SIZE={hp.vocab_size}; "
                             f"use the shards made with this tokenizer")
    return sp


class Logger:
    """Rank 0 writes each line to stdout and OUT_DIR/train.log; other ranks stay quiet."""

    def __init__(self, path: str, enabled: bool):
        self.enabled = enabled
        self.file = open(path, "w", encoding="utf-8") if enabled else None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(msg, flush=True)
            self.file.write(msg + "\n")
            self.file.flush()


def train(hp: Hyperparameters, rt: Runtime, sp, log: Logger) -> dict:
    """Train, evaluate, export and score the round trip; returns the metrics dict."""
    torch.manual_seed(hp.seed)
    np.random.seed(hp.seed)
    model = build_model(hp).to(rt.device)
    params = count_params(model)
    log(f"model_params:{sum(params.values())} " + " ".join(f"{k}:{v}" for k, v in params.items()))
    log(f"world_size:{rt.world} device:{rt.device.type} micro_batches:{hp.micro_batches} seed:{hp.seed}")
    compiled = torch.compile(model) if (hp.torch_compile and rt.device.type == "cuda") else model
    optimizers = build_optimizers(model, hp, rt.device, rt.rank, rt.world)
    luts = token_byte_luts(sp, hp.vocab_size, rt.device)
    val_tokens = load_val_tokens(hp.val_pattern, hp.train_seq_len, hp.val_max_tokens)
    log(f"val_tokens:{val_tokens.numel() - 1} train_batch_tokens:{hp.train_batch_tokens} seq_len:{hp.train_seq_len}")
    accum = hp.micro_batches // rt.world
    local_tokens = hp.train_batch_tokens // hp.micro_batches
    stream = TokenStream(hp.train_pattern)
    params_list = list(model.parameters())

    def train_step(step: int, scale: float) -> Tensor:
        for opt in optimizers:
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * scale
        frac = min(step / hp.muon_momentum_warmup_steps, 1.0) if hp.muon_momentum_warmup_steps > 0 else 1.0
        for g in optimizers[2].param_groups:
            g["momentum"] = (1 - frac) * hp.muon_momentum_warmup_start + frac * hp.muon_momentum
        total = torch.zeros((), device=rt.device)
        for _ in range(accum):
            x, y = next_micro_batch(stream, local_tokens, hp.train_seq_len, rt.rank, rt.world, rt.device)
            with rt.autocast():
                loss = compiled(x, y)
            (loss / accum).backward()
            total += loss.detach() / accum
        if rt.world > 1:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params_list]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= rt.world
            offset = 0
            for p, g in zip(params_list, grads):
                p.grad = flat[offset : offset + g.numel()].view_as(p)
                offset += g.numel()
            dist.all_reduce(total)
            total /= rt.world
        if hp.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(params_list, hp.grad_clip_norm)
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)
        return total

    if hp.warmup_steps > 0:  # prime kernels/compilation, then restore the initial state (upstream)
        initial_model = {k: v.detach().clone() for k, v in model.state_dict().items()}
        initial_opts = [copy.deepcopy(opt.state_dict()) for opt in optimizers]
        for i in range(hp.warmup_steps):
            train_step(0, 1.0)
            if hp.warmup_steps <= 20 or (i + 1) % 10 == 0 or i + 1 == hp.warmup_steps:
                log(f"warmup_step:{i + 1}/{hp.warmup_steps}")
        model.load_state_dict(initial_model)
        for opt, state in zip(optimizers, initial_opts):
            opt.load_state_dict(state)
        stream.rewind()

    swa_sum: dict[str, Tensor] | None = None
    swa_count = 0
    ema = ({k: v.detach().float().clone() for k, v in model.state_dict().items()} if hp.ema_decay > 0 else None)
    reserve_s = hp.gptq_reserve_seconds if hp.quantizer == "gptq" else 0.0  # as the GPTQ records reserve it
    cap_ms = max(hp.max_wallclock_seconds - reserve_s, 1.0) * 1000.0 if hp.max_wallclock_seconds > 0 else None
    if hp.num_loops:
        log(f"layer_loop: order {model.orders[True]} from progress {hp.enable_looping_at}")
    train_ms, stop_after, step, qat_on = 0.0, None, 0, False
    last_val: tuple[float, float] | None = None
    rt.sync()
    t0 = time.perf_counter()
    while True:
        last = step == hp.iterations or (stop_after is not None and step >= stop_after)
        if last or (hp.val_loss_every > 0 and step % hp.val_loss_every == 0):
            rt.sync()
            train_ms += 1000.0 * (time.perf_counter() - t0)
            last_val = eval_val(hp, compiled, val_tokens, luts, rt.device, rt.rank, rt.world)
            log(f"step:{step}/{hp.iterations} val_loss:{last_val[0]:.4f} val_bpb:{last_val[1]:.4f} "
                f"train_time:{train_ms:.0f}ms step_avg:{train_ms / max(step, 1):.2f}ms")
            rt.sync()
            t0 = time.perf_counter()
        if last:
            if stop_after is not None and step < hp.iterations:
                log(f"stopping_early: wallclock_cap train_time:{train_ms:.0f}ms step:{step}/{hp.iterations}")
            break
        elapsed_ms = train_ms + 1000.0 * (time.perf_counter() - t0)
        progress = elapsed_ms / cap_ms if cap_ms else step / max(hp.iterations, 1)
        if hp.num_loops and not model.looping and progress >= hp.enable_looping_at:
            model.looping = True
            log(f"layer_loop:enabled step:{step} order:{model.orders[True]}")
        if hp.qat_start_frac > 0 and not qat_on and progress >= 1.0 - hp.qat_start_frac:
            qat_on = True
            for _, m, bits in int_linears(model, hp):
                m.qat_bits = bits
            log(f"qat:enabled step:{step} progress:{progress:.3f}")
        scale = lr_multiplier(hp, step, elapsed_ms, cap_ms)
        loss = train_step(step, scale)
        step += 1
        loss_value = float(loss.item())
        if not math.isfinite(loss_value):
            raise TrainingDiverged(f"non-finite train loss at step {step}")
        if ema is not None:
            with torch.no_grad():
                for k, v in model.state_dict().items():
                    ema[k].mul_(hp.ema_decay).add_(v.detach().float(), alpha=1.0 - hp.ema_decay)
        if hp.swa_every > 0 and scale < hp.swa_start_frac and step % hp.swa_every == 0:
            if swa_sum is None:
                swa_sum = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
            else:
                for k, v in model.state_dict().items():
                    swa_sum[k] += v.detach().float()
            swa_count += 1
        approx_ms = train_ms + 1000.0 * (time.perf_counter() - t0)
        if hp.train_log_every > 0 and (step <= 10 or step % hp.train_log_every == 0 or stop_after is not None):
            log(f"step:{step}/{hp.iterations} train_loss:{loss_value:.4f} train_time:{approx_ms:.0f}ms "
                f"step_avg:{approx_ms / step:.2f}ms")
        reached = cap_ms is not None and approx_ms >= cap_ms
        if rt.world > 1 and cap_ms is not None:
            flag = torch.tensor(int(reached), device=rt.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            reached = bool(flag.item())
        if stop_after is None and reached:
            stop_after = step

    if swa_count > 0:
        state = model.state_dict()
        model.load_state_dict({k: (swa_sum[k] / swa_count).to(state[k].dtype) for k in state})
        log(f"swa: averaged {swa_count} checkpoints")
    if ema is not None:
        state = model.state_dict()
        model.load_state_dict({k: ema[k].to(state[k].dtype) for k in state})
        log(f"ema: exporting and scoring the EMA weights (decay {hp.ema_decay})")
    final_eval_changes = swa_count > 0 or ema is not None or 0 < hp.eval_stride < hp.train_seq_len
    prequant = (eval_val(hp, compiled, val_tokens, luts, rt.device, rt.rank, rt.world, hp.eval_stride)
                if final_eval_changes or last_val is None else last_val)
    log(f"prequant val_loss:{prequant[0]:.8f} val_bpb:{prequant[1]:.8f}")

    scheme = scheme_name(hp)
    model_path = os.path.abspath(os.path.join(hp.out_dir, f"final_model.{scheme}.ptz"))
    if rt.master:
        hessians = None
        if hp.quantizer == "gptq":  # activations of training batches that follow the last step's
            batches = [next_micro_batch(stream, local_tokens, hp.train_seq_len, 0, 1, rt.device)[0]
                       for _ in range(hp.gptq_calibration_batches)]
            t_gptq = time.perf_counter()
            with rt.autocast():
                hessians = collect_hessians(model, batches, hp)
            log(f"gptq: Hessians of {len(hessians)} matrices from {len(batches)} training batches")
        blob = serialize(quantize_state_dict(model.state_dict(), hp, hessians), hp)
        if hessians is not None:
            kept = f" (GPTQ_RESERVE_SECONDS={reserve_s:g} kept from the training time)" if cap_ms else ""
            log(f"gptq: Hessians and quantization took {time.perf_counter() - t_gptq:.1f}s{kept}")
        with open(model_path, "wb") as f:
            f.write(blob)
    if rt.world > 1:
        dist.barrier()
    bytes_model = os.path.getsize(model_path)
    bytes_code = len(open(os.path.abspath(__file__), "rb").read())
    log(f"Serialized model {scheme}: {bytes_model} bytes")
    log(f"Code size: {bytes_code} bytes")
    log(f"Total submission size {scheme}: {bytes_model + bytes_code} bytes")

    with open(model_path, "rb") as f:
        model.load_state_dict(dequantize_state_dict(deserialize(f.read())), strict=True)
    rt.sync()
    t_eval = time.perf_counter()
    val_loss, val_bpb = eval_val(hp, compiled, val_tokens, luts, rt.device, rt.rank, rt.world, hp.eval_stride)
    log(f"final_{scheme}_roundtrip val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} "
        f"eval_time:{1000.0 * (time.perf_counter() - t_eval):.0f}ms")
    log(f"final_{scheme}_roundtrip_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    return {
        "val_loss": val_loss, "val_bpb": val_bpb,
        "val_loss_prequant": prequant[0], "val_bpb_prequant": prequant[1],
        "bytes_code": bytes_code, "bytes_model": bytes_model, "bytes_total": bytes_code + bytes_model,
        "steps": step, "train_time_ms": train_ms, "tokens_seen": step * hp.train_batch_tokens,
        "params": params, "params_total": sum(params.values()), "scheme": scheme,
        "model_path": model_path, "seed": hp.seed, "world_size": rt.world, "device": rt.device.type,
    }


def main(env: Mapping[str, str] = os.environ) -> int:
    """Entry point: 0 on success, 2 on a bad setting (before training), 3 on a diverged run."""
    rank, world = int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1"))
    try:
        hp = Hyperparameters.from_env(env)
        hp.validate()
        sp = check_inputs(hp, world)
    except ValueError as e:
        if rank == 0:
            print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    if torch.cuda.is_available():
        device = torch.device("cuda", int(env.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    else:
        device = torch.device("cpu")
        torch.set_num_threads(hp.cpu_threads)
    if world > 1:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rt = Runtime(device, rank, world)
    os.makedirs(hp.out_dir, exist_ok=True)
    log = Logger(os.path.join(hp.out_dir, "train.log"), rt.master)
    log("hyperparameters " + json.dumps(dataclasses.asdict(hp), sort_keys=True))
    try:
        metrics = train(hp, rt, sp, log)
        if world > 1:
            dist.barrier()  # every rank done with its collectives before any tears the group down
    except TrainingDiverged as e:
        if rt.master:
            print(f"error: {e}", file=sys.stderr, flush=True)
        log(f"error: {e}")
        return 3
    finally:
        log.close()
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if rt.master:
        with open(os.path.join(hp.out_dir, "metrics.json"), "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
    return 0


if __name__ == "__main__":
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # torch's teardown of a gloo run sometimes aborts a rank after main has returned
        # ("terminate called without an active exception"): everything is written and closed, so skip it
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
