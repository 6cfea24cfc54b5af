"""Predicted artifact bytes of a configuration, before anything is trained, and a learner that
corrects the prediction from completed trials.

Why: a full trial costs 8 GPUs x 10+ minutes, so the search prunes configurations whose artifact
(code bytes + compressed model) would exceed the budget before launching them. A timid estimate
loses records, a loose one wastes money; this module makes the estimate measured and self-correcting.

How `predict(env)` works (our trainer, `pgolf/train_gpt.py`):
- the trainer's own model is built on the `meta` device (no weights allocated) from
  `Hyperparameters.from_env(env)`, so every state-dict entry's shape is exact;
- each entry gets the stored form `quantize_state_dict` gives it (per-row int<b> values with one
  fp16 scale per row, fp16 small tensors, fp32 control tensors);
- the trainer's container compresses every quantized tensor alone, all row scales in one frame and
  the float tensors in one frame per dtype, behind a JSON header (`tg.frame_layout`). The header is
  rebuilt here from the exact layout (exact up to the digits of the frame lengths), and each frame
  costs the compressor's fixed frame overhead plus its values;
- each stored value costs a *measured* number of compressed bytes, looked up in the calibration
  table `pgolf/size_calibration.json` by (compressor:level, storage, tensor role, row length),
  interpolated in log2(row length); the tied embedding's rate also in log2(vocab), from a grid of
  tied models (a short training leaves a larger vocabulary's embedding more compressible). The table
  is made by `python -m pgolf.size calibrate`: short real CPU trainings of the trainer, whose
  weights are quantized at every bit width and compressed with every compressor, strided row
  samples of each role alone;
- a whole frame is not exactly its row sample scaled up, so each frame's bytes are multiplied by a
  measured frame factor per (compressor, frame kind), interpolated in log2(frame values): real
  `serialize()` frames of calibration models over the rates' prediction;
- code bytes are the script's size.

`SizeLearner` wraps it for a search: `observe(env, measured_bytes_total)` after each completed
trial refits one correction factor per (storage, compressor), and `margin_bytes()` gives the
safety margin from the observed (out-of-sample) relative errors. For an external training script
the package cannot build, a `param_count(env)` function (from the space file) plus a
least-squares bytes-per-parameter fit over completed trials replaces the calibrated predictor.

    python -m pgolf.size NUM_LAYERS=11 MODEL_DIM=512 MLP_BITS=6
    python -m pgolf.size calibrate        # rebuild the calibration table (minutes)
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

DEFAULT_SCRIPT = Path(__file__).with_name("train_gpt.py")
CALIBRATION_PATH = Path(__file__).with_name("size_calibration.json")
GROUPS = ("embed", "attn", "mlp", "other")
QUANT_BITS = (4, 5, 6, 7, 8)

# The short CPU training used both to calibrate and to check the prediction (bench/size_accuracy.py).
SHORT_TRAINING: dict[str, str] = {
    "ITERATIONS": "6", "WARMUP_STEPS": "0", "WARMDOWN_ITERS": "3", "TRAIN_BATCH_TOKENS": "256",
    "TRAIN_SEQ_LEN": "128", "MICRO_BATCHES": "1", "VAL_BATCH_SIZE": "1024", "VAL_MAX_TOKENS": "1024",
    "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "0", "TORCH_COMPILE": "0", "MAX_WALLCLOCK_SECONDS": "0",
}

# Models trained for the calibration table: the roles, row lengths (64-3072), vocabularies and
# entry counts of the shipped spaces (full-size and smoke). Small depth keeps them cheap.
CALIBRATION_CONFIGS: tuple[dict[str, str], ...] = (
    {"VOCAB_SIZE": "1024", "MODEL_DIM": "384", "NUM_LAYERS": "9", "NUM_HEADS": "8", "NUM_KV_HEADS": "4",
     "MLP_MULT": "2"},
    {"VOCAB_SIZE": "2048", "MODEL_DIM": "768", "NUM_LAYERS": "3", "NUM_HEADS": "8", "NUM_KV_HEADS": "1",
     "MLP_MULT": "2.5"},
    {"VOCAB_SIZE": "4096", "MODEL_DIM": "512", "NUM_LAYERS": "3", "NUM_HEADS": "8", "NUM_KV_HEADS": "8",
     "MLP_MULT": "3", "SMEAR_GATE": "1", "XSA_LAST_N": "1"},
    {"VOCAB_SIZE": "8192", "MODEL_DIM": "640", "NUM_LAYERS": "2", "NUM_HEADS": "8", "NUM_KV_HEADS": "2",
     "MLP_MULT": "4", "Q_RANK": "192", "TIE_EMBEDDINGS": "0", "BIGRAM_BUCKETS": "2048"},
    {"VOCAB_SIZE": "512", "MODEL_DIM": "64", "NUM_LAYERS": "2", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
     "MLP_MULT": "2", "Q_RANK": "16"},
    {"VOCAB_SIZE": "1024", "MODEL_DIM": "128", "NUM_LAYERS": "2", "NUM_HEADS": "4", "NUM_KV_HEADS": "1",
     "MLP_MULT": "3"},
)
SAMPLE_VALUES = 1 << 18  # values compressed per (role, storage) and model when calibrating
FACTOR_MODELS = (0, 1, 4, 5)  # calibration models whose whole model files are written (the slow part)
LR_MODELS = (0, 1, 2)  # calibration models also trained at the MATRIX_LR points (full-size roles)
LR_POINTS = (0.01, 0.1)  # MATRIX_LR range of the shipped spaces (the default 0.04 is the reference)
FACTOR_BITS = (4, 5, 6, 7, 8, 16)  # frame factors measured at these widths (others interpolated)
# Tied-embedding models: (MODEL_DIM, VOCAB_SIZE) over the full-size spaces' widths and vocabularies
# at a middle depth (after a short training the embedding's rate falls about 10 % from vocab 1024
# to 8192). Only their embedding is measured; it is the vocabulary axis of the tied embedding's rate.
EMBED_GRID_DIMS = (384, 576, 768)
EMBED_GRID_VOCABS = (1024, 2048, 4096, 8192)
EMBED_GRID_SHAPE = {"NUM_LAYERS": "9", "NUM_HEADS": "8", "NUM_KV_HEADS": "4", "MLP_MULT": "2"}

# Fields of Hyperparameters that do not change the model's shapes (the shape cache ignores them).
_NON_SHAPE_FIELDS = frozenset({
    "data_path", "tokenizer_path", "run_id", "out_dir", "seed", "iterations", "warmdown_iters",
    "warmup_steps", "train_batch_tokens", "train_seq_len", "max_wallclock_seconds", "micro_batches",
    "val_batch_size", "val_loss_every", "train_log_every", "val_max_tokens", "eval_stride",
    "torch_compile", "cpu_threads", "rope_base", "logit_softcap", "qk_gain_init", "tied_embed_init_std",
    "embed_lr", "head_lr", "tied_embed_lr", "matrix_lr", "scalar_lr", "muon_momentum", "muon_backend_steps",
    "muon_momentum_warmup_start", "muon_momentum_warmup_steps", "muon_weight_decay", "adam_weight_decay",
    "beta1", "beta2", "adam_eps", "grad_clip_norm", "swa_start_frac", "swa_every", "mlp_bits", "attn_bits",
    "embed_bits", "keep_float_max_numel", "compressor", "compressor_level",
})


# ----------------------------------------------------------------------------- stored form

@dataclass(frozen=True)
class Entry:
    """One state-dict entry as the trainer stores it: storage is `int<b>`, `fp16`, `fp32` or `raw`."""

    name: str
    role: str
    group: str
    shape: tuple[int, ...]
    storage: str
    itemsize: int = 0
    dtype: str = "float32"  # the trained tensor's dtype (the container's header records it)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def row_len(self) -> int:
        return self.shape[-1] if self.shape else 1


def tensor_role(name: str, tied: bool = True, vocab: int = 0) -> str:
    """Calibration key of an entry: its name with layer indices replaced by `*`. An untied embedding
    is its own role (it starts at std 1.0 instead of the tied embedding's small std); a tied one
    carries its vocabulary (`tok_emb.weight@V8192`), the second axis of its rate."""
    role = re.sub(r"\.\d+\.", ".*.", name)
    if role != "tok_emb.weight":
        return role
    if not tied:
        return role + "@untied"
    return f"{role}@V{vocab}" if vocab else role


def _shape_key(hp) -> tuple:
    return tuple(sorted((k, v) for k, v in asdict(hp).items() if k not in _NON_SHAPE_FIELDS))


@lru_cache(maxsize=512)
def _model_shapes(key: tuple) -> tuple[tuple[str, tuple[int, ...], bool, int, str], ...]:
    """(name, shape, is_float, itemsize, dtype) of every state-dict entry, from the trainer's own model on `meta`."""
    import torch

    import pgolf.train_gpt as tg

    hp = tg.Hyperparameters(**dict(key))
    with torch.device("meta"):
        model = tg.build_model(hp)
    return tuple((n, tuple(t.shape), t.is_floating_point(), t.element_size(), str(t.dtype).removeprefix("torch."))
                 for n, t in model.state_dict().items())


def stored_entries(hp) -> list[Entry]:
    """Every entry of the artifact's state dict with its stored form (cached per architecture)."""
    import pgolf.train_gpt as tg

    return [Entry(n, tensor_role(n, hp.tie_embeddings, hp.vocab_size), tg.param_group(n), shape,
                  tg.storage_kind(n, shape, is_float, hp), itemsize, dtype)
            for n, shape, is_float, itemsize, dtype in _model_shapes(_shape_key(hp))]


def read_container_header(path: str | Path) -> dict:
    """The JSON header of a model file the trainer wrote (its records and frame lengths; the frames
    are not read)."""
    import pgolf.train_gpt as tg

    with open(path, "rb") as f:
        head = f.read(8)
        try:
            return tg.read_header(head + f.read(int.from_bytes(head[4:8], "little")))[0]
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def _layout_model(entries: list[Entry]) -> dict:
    """A data-free stand-in (meta tensors) for `tg.quantize_state_dict`'s result: same names, parts,
    dtypes, shapes and order, so `tg.frame_layout`/`tg.container_header` give the real layout."""
    import torch

    import pgolf.train_gpt as tg

    quant, floats = {}, {}
    for e in entries:
        if e.storage.startswith("int"):
            quant[e.name] = {"q": torch.empty(e.shape, dtype=torch.int8, device="meta"),
                             "scale": torch.empty(e.shape[0], dtype=torch.float16, device="meta"),
                             "bits": int(e.storage[3:])}
        else:
            dt = {"fp32": torch.float32, "fp16": torch.float16}.get(e.storage) or getattr(torch, e.dtype)
            floats[e.name] = torch.empty(e.shape, dtype=dt, device="meta")
    return {"format": tg.ROWQUANT_FORMAT, "quant": quant, "float": floats, "dtypes": {e.name: e.dtype for e in entries}}


@lru_cache(maxsize=512)
def _layout(key: tuple) -> tuple[dict[str, Entry], dict, list[list], list[int]]:
    """(entries, data-free model, container records, values per frame) of an architecture at its
    widths (cached: building the layout is most of a prediction's cost)."""
    import pgolf.train_gpt as tg

    hp = tg.Hyperparameters(**dict(key))
    entries = {e.name: e for e in stored_entries(hp)}
    model_obj = _layout_model(list(entries.values()))
    records, frames = tg.frame_layout(model_obj)
    return entries, model_obj, records, [sum(t.numel() for t in ts) for ts in frames]


def _layout_key(hp) -> tuple:
    keep = ("mlp_bits", "attn_bits", "embed_bits", "keep_float_max_numel")
    return tuple(sorted({**dict(_shape_key(hp)), **{k: getattr(hp, k) for k in keep}}.items()))


def muon_updated(e: Entry) -> bool:
    """Whether the trainer's Muon optimizer trains this entry (MATRIX_LR applies): the rule of
    `tg.build_optimizers`, checked against it in the tests."""
    return (len(e.shape) == 2 and not e.name.startswith(("tok_emb.", "bigram.table.", "lm_head."))
            and e.storage != "fp32")


def frame_kind(part: str, storage: str) -> str:
    """The factor key of a frame: its tensors' storage (`int6`, `fp16`, `fp32`, `raw`) or `scale`."""
    return "scale" if part == "scale" else storage


# ----------------------------------------------------------------------------- calibration table

def _interp(points: list[list[float]], x: float) -> float:
    """Piecewise-linear interpolation over sorted [x, y] points, constant beyond the ends."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def _merge_points(raw: list[tuple[float, float, float]]) -> list[list[float]]:
    """(x, y, weight) samples -> sorted [x, weighted mean y] points, one per distinct x."""
    acc: dict[float, list[float]] = {}
    for x, y, w in raw:
        a = acc.setdefault(round(x, 6), [0.0, 0.0])
        a[0] += y * w
        a[1] += w
    return [[x, a[0] / a[1]] for x, a in sorted(acc.items())]


@dataclass
class Calibration:
    """Measured compressed bytes per stored value, per `compressor:level`.

    rates[ckey][storage][role] = sorted [log2(row length), bytes per value] points (role `*` pools
    all roles; the frame overhead excluded); scale[ckey][storage] = bytes per fp16 row scale;
    factor[ckey][kind] = sorted [log2(frame values), real frame / predicted frame] points (kind: a
    storage or `scale`); overhead[ckey] = bytes of an empty frame; lr_factor[ckey][storage] = sorted
    [log2(MATRIX_LR), bytes per Muon-trained value / those at the default MATRIX_LR] points.
    """

    rates: dict[str, dict[str, dict[str, list[list[float]]]]]
    scale: dict[str, dict[str, float]]
    factor: dict[str, dict[str, list[list[float]]]]
    overhead: dict[str, int] = field(default_factory=dict)
    lr_factor: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path = CALIBRATION_PATH) -> "Calibration":
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"size calibration table {p} is missing; rebuild it with `python -m pgolf.size calibrate`")
        data = json.loads(p.read_text(encoding="utf-8"))
        if "overhead" not in data:
            raise ValueError(f"size calibration table {p} predates the framed model container; rebuild it with "
                             f"`python -m pgolf.size calibrate`")
        return cls(rates=data["rates"], scale=data["scale"], factor=data.get("factor", {}),
                   overhead=data["overhead"], lr_factor=data.get("lr_factor", {}), meta=data.get("meta", {}))

    def save(self, path: str | Path = CALIBRATION_PATH) -> None:
        Path(path).write_text(json.dumps({"meta": self.meta, "rates": self.rates, "scale": self.scale,
                                          "factor": self.factor, "overhead": self.overhead,
                                          "lr_factor": self.lr_factor}, indent=1) + "\n",
                              encoding="utf-8")

    def compressor_key(self, compressor: str, level: int) -> str:
        """The table's key for this compressor: the exact level if calibrated, else its nearest level."""
        exact = f"{compressor}:{level}"
        if exact in self.rates:
            return exact
        levels = [int(k.split(":")[1]) for k in self.rates if k.split(":")[0] == compressor]
        if not levels:
            raise ValueError(f"compressor {compressor!r} is not in the size calibration table; "
                             f"use one of {sorted({k.split(':')[0] for k in self.rates})} or recalibrate")
        return f"{compressor}:{min(levels, key=lambda v: abs(v - level))}"

    def value_bytes(self, ckey: str, storage: str, role: str, row_len: int) -> float:
        by_role = self.rates[ckey].get(storage)
        if by_role is None:
            raise ValueError(f"storage {storage} is not in the size calibration table; recalibrate")
        x = math.log2(max(row_len, 1))
        base, _, vocab = role.partition("@V")
        if vocab and role not in by_role:  # between the calibrated vocabularies, in log2(vocab)
            rows = sorted([math.log2(int(v)), _interp(pts, x)] for r, pts in by_role.items()
                          for b, _, v in [r.partition("@V")] if b == base and v)
            if rows:
                return _interp(rows, math.log2(int(vocab)))
            role = base
        return _interp(by_role.get(role) or by_role["*"], x)

    def lr_factor_of(self, ckey: str, storage: str, matrix_lr: float) -> float:
        """Bytes of Muon-trained values at this MATRIX_LR over those at the calibration's default
        (a short training moves weights further from their init at a larger rate)."""
        points = self.lr_factor.get(ckey, {}).get(storage)
        return _interp(points, math.log2(matrix_lr)) if points and matrix_lr > 0 else 1.0

    def frame_factor(self, ckey: str, kind: str, log2_values: float) -> float:
        """Real frame bytes over the rates' prediction (1 before factors are measured; widths not in
        FACTOR_BITS are interpolated linearly between the measured ones)."""
        tab = self.factor.get(ckey, {})
        if kind in tab:
            return _interp(tab[kind], log2_values)
        measured = sorted((int(k[3:]), _interp(v, log2_values)) for k, v in tab.items() if k.startswith("int"))
        if kind.startswith("int") and measured:  # linear in the bit width between measured widths
            return _interp([list(p) for p in measured], float(kind[3:]))
        return 1.0


@lru_cache(maxsize=8)
def _default_calibration(path: str, mtime: float) -> Calibration:
    return Calibration.load(path)


def load_calibration(path: str | Path = CALIBRATION_PATH) -> Calibration:
    """The calibration table (read once per file version)."""
    p = Path(path)
    return _default_calibration(str(p), p.stat().st_mtime if p.exists() else 0.0)


# ----------------------------------------------------------------------------- prediction

@dataclass(frozen=True)
class Prediction:
    """Predicted artifact bytes: total = code + model, model = container + the tensors' bytes, by
    group and by stored form (`parts`, e.g. `int6` (values and scales), `fp16`, `fp32`). The
    container (header and the frames' fixed overhead) is known in advance and never corrected."""

    total_bytes: int
    code_bytes: int
    model_bytes: int
    groups: dict[str, int] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)
    compressor: str = ""
    container_bytes: int = 0


def code_bytes(script: str | Path | None = None) -> int:
    """Bytes of the training script (the artifact's code bytes)."""
    p = Path(script or DEFAULT_SCRIPT)
    if not p.is_file():
        raise ValueError(f"training script {p} not found; pass the path of the script the search runs")
    return p.stat().st_size


def _frame_rates(entries: Mapping[str, Entry], records: list[list], frame_values: list[int], cal: Calibration,
                 ckey: str, matrix_lr: float | None = None) -> list[tuple[str, int, list[tuple[Entry, float]]]]:
    """Per frame of the layout: (kind, values, [(entry, bytes by the rates)]), before the frame
    factor and without the frame overhead; Muon-trained values scaled by the MATRIX_LR factor."""
    shares: list[list[tuple[Entry, float]]] = [[] for _ in frame_values]
    kinds = [""] * len(frame_values)
    for name, part, _dtype, shape, frame, _offset in records:
        e = entries[name]
        n = math.prod(shape)
        if e.storage == "raw":
            b = float(n * e.itemsize)
        elif part == "scale":
            b = n * cal.scale[ckey][e.storage]
        else:
            b = n * cal.value_bytes(ckey, e.storage, e.role, e.row_len)
            if matrix_lr is not None and muon_updated(e):
                b *= cal.lr_factor_of(ckey, e.storage, matrix_lr)
        shares[frame].append((e, b))
        kinds[frame] = frame_kind(part, e.storage)
    return [(kinds[i], n, shares[i]) for i, n in enumerate(frame_values)]


def predict(env: Mapping[str, str], script: str | Path | None = None,
            calibration: Calibration | None = None) -> Prediction:
    """Predict the artifact of the trainer run with `env` (raises ValueError on a bad setting)."""
    import pgolf.train_gpt as tg

    hp = tg.Hyperparameters.from_env({k: str(v) for k, v in env.items()})
    hp.validate()
    cal = calibration or load_calibration()
    ckey = cal.compressor_key(hp.compressor, hp.compressor_level)
    entries, model_obj, records, frame_values = _layout(_layout_key(hp))
    groups = dict.fromkeys(GROUPS, 0.0)
    parts: dict[str, float] = {}
    params = dict.fromkeys(GROUPS, 0)
    for e in entries.values():
        if e.storage != "raw":
            params[e.group] += e.numel
    frame_bytes = []
    for kind, n_values, shares in _frame_rates(entries, records, frame_values, cal, ckey, hp.matrix_lr):
        f = 1.0 if kind == "raw" else cal.frame_factor(ckey, kind, math.log2(max(n_values, 1)))
        for e, b in shares:
            groups[e.group] += b * f
            parts[e.storage] = parts.get(e.storage, 0.0) + b * f
        frame_bytes.append(sum(b for _, b in shares) * f + cal.overhead[ckey])
    header = tg.container_header(model_obj, records, [int(round(b)) for b in frame_bytes], hp.compressor)
    container = 8 + len(header) + len(frame_values) * cal.overhead[ckey]
    model = container + int(round(sum(parts.values())))
    code = code_bytes(script)
    return Prediction(total_bytes=model + code, code_bytes=code, model_bytes=model,
                      groups={k: int(round(v)) for k, v in groups.items()}, params=params, parts=parts,
                      compressor=ckey, container_bytes=container)


def predict_bytes(env: Mapping[str, str], script: str | Path | None = None) -> int:
    """The searcher's hook: predicted total artifact bytes (uncorrected; see SizeLearner)."""
    return predict(env, script).total_bytes


# ----------------------------------------------------------------------------- learning from trials

PRIOR_MARGIN_FRACTION = 0.05   # before MIN_ERRORS observations (bench's largest |error| 0.87 %, smoke's 1.28 %)
MARGIN_SAFETY = 1.5            # margin = safety x the largest recent |error|
MARGIN_FLOOR = 0.002           # never below 0.2 %
MIN_ERRORS = 3
ERROR_WINDOW = 20
PRIOR_WEIGHT = 0.25            # ridge weight pulling each correction toward 1 (a quarter observation)
MIN_FIT_TRIALS = 2             # external scripts: no prediction (no pruning) before this many trials


@dataclass
class Observation:
    """One completed trial: what was predicted before it ran and what it measured."""

    env: dict[str, str]
    measured: int
    predicted: int | None
    parts: dict[str, float] = field(default_factory=dict)  # uncorrected bytes per correction key
    fixed: float = 0.0                                    # code (and container) bytes: not corrected
    params: float = 0.0                                   # external scripts: parameter count


class SizeLearner:
    """A predictor that learns from completed trials, with a margin derived from its measured error.

    - Our trainer: `predict` = calibrated `predict()` x one correction per (storage, compressor:level)
      (e.g. `int6|zstd:22`), refitted by ridge least squares on relative errors at every `observe`.
    - External script (`param_count` given): bytes_total = code + a x params + b, fitted by least
      squares over completed trials; `predict` returns None (no pruning) before MIN_FIT_TRIALS trials.
    - `margin_fraction`: PRIOR_MARGIN_FRACTION until MIN_ERRORS out-of-sample errors exist, then
      MARGIN_SAFETY x the largest |error| of the last ERROR_WINDOW trials (floor MARGIN_FLOOR): an
      error of either sign, since the corrections flip the sign of the next ones.
    - `prune(env, budget)`: True when prediction + margin > budget.
    """

    def __init__(self, script: str | Path | None = None,
                 param_count: Callable[[Mapping[str, str]], int | Mapping[str, int]] | None = None,
                 calibration: Calibration | None = None):
        self.script = str(script) if script is not None else None
        self.param_count = param_count
        self.calibration = calibration
        self.observations: list[Observation] = []
        self.errors: list[float] = []
        self.corrections: dict[str, float] = {}
        self.fit: tuple[float, float] | None = None  # external: (bytes per param, intercept)

    # -- prediction
    def _params(self, env: Mapping[str, str]) -> float:
        n = self.param_count(env)
        total = sum(n.values()) if isinstance(n, Mapping) else n
        if not isinstance(total, (int, float)) or total < 0:
            raise ValueError(f"PARAM_COUNT returned {n!r}; it must return a non-negative int (or a dict of them)")
        return float(total)

    def predict(self, env: Mapping[str, str]) -> Prediction | None:
        if self.param_count is not None:
            if self.fit is None:
                return None
            a, b = self.fit
            params = self._params(env)
            code = code_bytes(self.script)
            model = int(round(a * params + b))
            return Prediction(total_bytes=code + model, code_bytes=code, model_bytes=model,
                              groups={"other": model}, params={"other": int(params)}, compressor="fit")
        return self._corrected(predict(env, self.script, self.calibration))

    def _corrected(self, base: Prediction) -> Prediction:
        """The calibrated prediction with this learner's corrections applied to its parts."""
        tensors = sum(self.corrections.get(f"{k}|{base.compressor}", 1.0) * v for k, v in base.parts.items())
        base_tensors = base.model_bytes - base.container_bytes
        ratio = tensors / base_tensors if base_tensors else 1.0
        model_i = base.container_bytes + int(round(tensors))
        return Prediction(total_bytes=base.code_bytes + model_i, code_bytes=base.code_bytes, model_bytes=model_i,
                          groups={k: int(round(v * ratio)) for k, v in base.groups.items()},
                          params=base.params, parts=base.parts, compressor=base.compressor,
                          container_bytes=base.container_bytes)

    def predict_bytes(self, env: Mapping[str, str]) -> int | None:
        p = self.predict(env)
        return None if p is None else p.total_bytes

    # -- margin
    @property
    def margin_fraction(self) -> float:
        if len(self.errors) < MIN_ERRORS:
            return PRIOR_MARGIN_FRACTION
        worst = max(abs(e) for e in self.errors[-ERROR_WINDOW:])
        return max(MARGIN_FLOOR, MARGIN_SAFETY * worst)

    def margin_bytes(self, predicted: int) -> int:
        return int(math.ceil(predicted * self.margin_fraction))

    def prune(self, env: Mapping[str, str], budget: int) -> tuple[bool, int | None, int]:
        """(prune?, predicted bytes or None, margin bytes): prune when predicted + margin > budget."""
        predicted = self.predict_bytes(env)
        if predicted is None:
            return False, None, 0
        margin = self.margin_bytes(predicted)
        return predicted + margin > budget, predicted, margin

    # -- learning
    def observe(self, env: Mapping[str, str], measured_bytes_total: int) -> float | None:
        """Record a completed trial's measured bytes_total; returns the relative error
        (measured - predicted) / predicted of the prediction made before this observation."""
        env = {k: str(v) for k, v in env.items()}
        base = None if self.param_count is not None else predict(env, self.script, self.calibration)
        before = self.predict_bytes(env) if base is None else self._corrected(base).total_bytes
        err = None if before is None else (measured_bytes_total - before) / before
        if err is not None:
            self.errors.append(err)
        if self.param_count is not None:
            obs = Observation(env, int(measured_bytes_total), before, fixed=code_bytes(self.script),
                              params=self._params(env))
        else:
            obs = Observation(env, int(measured_bytes_total), before, fixed=base.code_bytes + base.container_bytes,
                              parts={f"{k}|{base.compressor}": v for k, v in base.parts.items()})
        self.observations.append(obs)
        self._refit()
        return err

    def _refit(self) -> None:
        import numpy as np

        if self.param_count is not None:
            obs = self.observations
            if len(obs) < MIN_FIT_TRIALS:
                self.fit = None
                return
            x = np.array([o.params for o in obs])
            y = np.array([o.measured - o.fixed for o in obs], dtype=float)
            w = 1.0 / np.maximum(y, 1.0)  # relative errors
            cols = [x, np.ones_like(x)] if np.ptp(x) > 0 else [x]  # an intercept once two sizes are seen
            a = np.stack(cols, axis=1) * w[:, None]
            coef = np.linalg.lstsq(a, y * w, rcond=None)[0]
            self.fit = (float(coef[0]), float(coef[1]) if len(coef) > 1 else 0.0)
            return
        keys = sorted({k for o in self.observations for k in o.parts})
        if not keys:
            return
        rows, rhs = [], []
        for o in self.observations:  # sum_k c_k part_k + fixed = measured, scaled to relative error
            rows.append([o.parts.get(k, 0.0) / o.measured for k in keys])
            rhs.append((o.measured - o.fixed) / o.measured)
        lam = math.sqrt(PRIOR_WEIGHT)
        # prior sum_k share_k (c_k - 1)^2: one observation moves every key by the same factor; keys
        # whose shares differ between trials are then told apart by the data
        root = np.sqrt(np.maximum(np.array(rows).mean(axis=0), 1e-9))
        a = np.vstack([np.array(rows), np.diag(lam * root)])
        b = np.concatenate([np.array(rhs), lam * root])
        coef = np.linalg.lstsq(a, b, rcond=None)[0]
        self.corrections = {k: float(c) for k, c in zip(keys, coef)}

    # -- persistence
    def to_json(self) -> dict:
        return {"script": self.script, "external": self.param_count is not None,
                "observations": [asdict(o) for o in self.observations], "errors": self.errors,
                "corrections": self.corrections, "fit": self.fit, "margin_fraction": self.margin_fraction}

    def save(self, path: str | Path) -> None:
        tmp = Path(str(path) + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, param_count=None, calibration: Calibration | None = None) -> "SizeLearner":
        """A learner restored from `save()` (pass the same param_count for an external script)."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("external") and param_count is None:
            raise ValueError(f"{path} was saved for an external script; pass its PARAM_COUNT function")
        self = cls(data.get("script"), param_count, calibration)
        self.observations = [Observation(**o) for o in data.get("observations", [])]
        self.errors = list(data.get("errors", []))
        self._refit()
        return self


# ----------------------------------------------------------------------------- calibration run

def _short_train(cfg: Mapping[str, str], out_dir: Path, script: Path, extra: Mapping[str, str]) -> dict:
    """Train the trainer briefly on CPU with cfg (data prepared for its vocab); returns metrics.json."""
    from pgolf.data import prepare

    data = prepare(int(cfg.get("VOCAB_SIZE", "1024")), quiet=True)
    env = {**os.environ, **SHORT_TRAINING, **data.env(), **cfg, **extra, "OUT_DIR": str(out_dir),
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"training {dict(cfg)} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}")
    return json.loads((out_dir / "metrics.json").read_text(encoding="utf-8"))


def _sample_rows(q, n_values: int):
    """Evenly strided rows of a 2-D tensor holding about n_values values (all rows if fewer)."""
    step = max(1, q.shape[0] * q.shape[1] // n_values)
    return q[::step]


def _train_for_calibration(i: int | str, cfg: Mapping[str, str], tmp: str, log) -> tuple:
    import pgolf.train_gpt as tg

    t0 = time.time()
    # bits 16 everywhere: the model file then holds the trained weights themselves (fp16)
    metrics = _short_train(cfg, Path(tmp) / f"m{i}", DEFAULT_SCRIPT, {"MLP_BITS": "16", "ATTN_BITS": "16",
                                                                     "EMBED_BITS": "16", "COMPRESSOR": "zlib",
                                                                     "COMPRESSOR_LEVEL": "1"})
    obj = tg.deserialize(Path(metrics["model_path"]).read_bytes())
    state = {n: t.float() for n, t in obj["float"].items()}
    log(f"calibrate: trained model {i} {dict(cfg)} in {time.time() - t0:.0f}s")
    return cfg, tg.Hyperparameters.from_env({**SHORT_TRAINING, **cfg}), state


def frame_overhead(compressor: str, level: int) -> int:
    """Bytes the compressor spends on an empty frame (its container's fixed cost)."""
    import pgolf.train_gpt as tg

    return len(tg.compress(b"", compressor, level))


def _measure_rates(models, compressors, levels, overhead, log, unpooled=()) -> tuple[dict, dict]:
    """Per (compressor, storage, role): bytes per value of strided row samples compressed alone
    (less the frame overhead). Role `*` pools the roles of `models`; `unpooled` models (e.g. the
    embedding grid's, one role each) add to their own roles only."""
    import numpy as np
    import torch

    import pgolf.train_gpt as tg

    samples: dict[str, dict[str, dict[str, list]]] = {}
    pooled: dict[str, dict[str, list]] = {}
    scale_samples: dict[str, dict[str, list]] = {}

    def add(ck: str, storage: str, role: str, point: tuple, pool: bool) -> None:
        samples.setdefault(ck, {}).setdefault(storage, {}).setdefault(role, []).append(point)
        if pool:
            pooled.setdefault(ck, {}).setdefault(storage, []).append(point)

    def rate(data: bytes, n: int, c: str) -> float:
        return (len(tg.compress(data, c, levels[c])) - overhead[f"{c}:{levels[c]}"]) / n

    for (cfg, hp, state), pool in [(m, True) for m in models] + [(m, False) for m in unpooled]:
        by_role: dict[tuple[str, str], list] = {}
        for name, t in state.items():
            kind = "fp32" if any(part in name for part in tg.CONTROL_NAME_PARTS) else "fp16"
            by_role.setdefault((tensor_role(name, hp.tie_embeddings, hp.vocab_size), kind), []).append(t)
        for (role, kind), ts in by_role.items():
            if not any(t.numel() for t in ts):  # e.g. a 1-layer model's (0, d) skip weights
                continue
            row_len = ts[0].shape[-1] if ts[0].ndim else 1
            x = math.log2(max(row_len, 1))
            flat = [t.reshape(-1, row_len) if t.ndim else t.reshape(1, 1) for t in ts]
            if kind == "fp32":
                vals = torch.cat([f.reshape(-1) for f in flat]).numpy().astype(np.float32)
                for c in compressors:
                    add(f"{c}:{levels[c]}", "fp32", "*", (x, rate(vals.tobytes(), vals.size, c), vals.size), False)
                continue
            rows = torch.cat([_sample_rows(f, SAMPLE_VALUES // len(flat)) for f in flat])
            v16 = rows.to(torch.float16).numpy()
            quantized = {}
            if rows.shape[1] >= 2:
                for bits in QUANT_BITS:
                    q, _ = tg.quantize_rows(rows, bits)
                    scales = torch.cat([tg.quantize_rows(f, bits)[1] for f in flat]).numpy()
                    quantized[bits] = (q.numpy().tobytes(), q.numel(), scales.tobytes(), scales.size)
            for c in compressors:
                ck = f"{c}:{levels[c]}"
                add(ck, "fp16", role, (x, rate(v16.tobytes(), v16.size, c), v16.size), pool)
                for bits, (qb, qn, sb, sn) in quantized.items():
                    add(ck, f"int{bits}", role, (x, rate(qb, qn, c), qn), pool)
                    if pool:
                        scale_samples.setdefault(ck, {}).setdefault(f"int{bits}", []).append((rate(sb, sn, c), sn))
        log(f"calibrate: measured rates of {dict(cfg)}")
    rates: dict = {}
    for ck, tab in samples.items():
        rates[ck] = {}
        for storage, by_role in tab.items():
            rates[ck][storage] = {role: _merge_points(pts) for role, pts in by_role.items()}
            if storage != "fp32":
                rates[ck][storage]["*"] = _merge_points(pooled[ck][storage])
    scale = {ck: {st: sum(r * w for r, w in v) / sum(w for _, w in v) for st, v in tab.items()}
             for ck, tab in scale_samples.items()}
    return rates, scale


def embedding_grid(configs=CALIBRATION_CONFIGS) -> list[dict[str, str]]:
    """The tied-embedding grid's configurations not already among `configs`."""
    grid = [{"VOCAB_SIZE": str(v), "MODEL_DIM": str(d), **EMBED_GRID_SHAPE}
            for v in EMBED_GRID_VOCABS for d in EMBED_GRID_DIMS]
    return [g for g in grid if g not in configs]


def _train_embedding_grid(grid, tmp: str, log) -> list[tuple]:
    """The grid's models, each reduced to its tied embedding (the only role measured from them)."""
    out = []
    for i, cfg in enumerate(grid):
        c, hp, state = _train_for_calibration(f"emb{i}", cfg, tmp, log)
        out.append((c, hp, {"tok_emb.weight": state["tok_emb.weight"]}))
    return out


def _measure_frame_factors(models, compressors, levels, cal: "Calibration", log,
                           factor_bits: tuple[int, ...] = FACTOR_BITS) -> dict:
    """Per (compressor, frame kind): real `serialize()` frame bytes / the rates' prediction of that
    frame (both without the frame overhead), against log2(frame values). A row sample is not the
    whole tensor (blocks, adaptive models and match finders see more data in a whole frame)."""
    import pgolf.train_gpt as tg

    raw: dict[str, dict[str, list]] = {}
    for cfg, hp, state in models:
        for c in compressors:
            ck = f"{c}:{levels[c]}"
            for bits in factor_bits:
                env = {**SHORT_TRAINING, **cfg, "COMPRESSOR": c, "MLP_BITS": str(bits), "ATTN_BITS": str(bits),
                       "EMBED_BITS": str(bits)}
                if int(cfg.get("MODEL_DIM", "512")) <= 128:
                    env["KEEP_FLOAT_MAX_NUMEL"] = "1024"  # smoke-sized: quantize the small matrices too
                h = tg.Hyperparameters.from_env(env)
                real_frames = tg.read_header(tg.serialize(tg.quantize_state_dict(state, h), h))[0]["frames"]
                entries, _, records, values = _layout(_layout_key(h))
                for (kind, n_values, shares), real in zip(_frame_rates(entries, records, values, cal, ck),
                                                          real_frames):
                    predicted = sum(b for _, b in shares)
                    if kind == "raw" or predicted <= 0:
                        continue
                    raw.setdefault(ck, {}).setdefault(kind, []).append(
                        (math.log2(max(n_values, 1)), (real - cal.overhead[ck]) / predicted, n_values))
            log(f"calibrate: frame factors of {dict(cfg)} with {c}")
    return {ck: {kind: _merge_points(pts) for kind, pts in tab.items()} for ck, tab in raw.items()}


def _muon_only(model: tuple) -> tuple:
    """A trained calibration model reduced to its Muon-trained tensors (the only ones the MATRIX_LR
    factor measures: compressing the others at every width and compressor would be wasted)."""
    cfg, hp, state = model
    names = {e.name for e in stored_entries(hp) if muon_updated(e)}
    return cfg, hp, {n: t for n, t in state.items() if n in names}


def calibrate_lr(path: str | Path = CALIBRATION_PATH, models: tuple[int, ...] = LR_MODELS,
                 lrs: tuple[float, ...] = LR_POINTS, configs=CALIBRATION_CONFIGS,
                 log: Callable[[str], None] = lambda m: print(m, flush=True),
                 trained: Mapping[int | str, tuple] | None = None) -> Calibration:
    """Add the MATRIX_LR factor to the table at `path`: the calibration models in `models`, trained
    at the default MATRIX_LR and at each of `lrs`; per (compressor, storage), the mean over their
    Muon-trained roles and row lengths of (bytes per value at that rate) / (at the default).
    trained: models `calibrate` already trained at the default rate (index -> model), reused."""
    import pgolf.train_gpt as tg

    cal = Calibration.load(path)
    levels = {c: tg.COMPRESSORS[c][2] for c in ("zstd", "lzma", "zlib")}
    default_lr = tg.Hyperparameters().matrix_lr
    t_start = time.time()
    sums: dict[str, dict[str, dict[float, list[float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="pgolf_size_lr_") as tmp:
        for i in models:
            base = _muon_only((trained or {}).get(i) or _train_for_calibration(f"{i}", configs[i], tmp, log))
            ref, _ = _measure_rates([base], tuple(levels), levels, cal.overhead, lambda m: None)
            for lr in lrs:
                at_lr = _train_for_calibration(f"{i}_lr{lr}", {**configs[i], "MATRIX_LR": str(lr)}, tmp, log)
                got, _ = _measure_rates([_muon_only(at_lr)], tuple(levels), levels, cal.overhead, lambda m: None)
                for ck, tab in got.items():
                    for storage, by_role in tab.items():
                        if not storage.startswith("int"):
                            continue
                        for role in set(by_role) - {"*"}:
                            for x, y in by_role[role]:
                                r = y / _interp(ref[ck][storage][role], x)
                                acc = sums.setdefault(ck, {}).setdefault(storage, {}).setdefault(lr, [0.0, 0.0])
                                acc[0] += r
                                acc[1] += 1.0
                log(f"calibrate: MATRIX_LR={lr} rates of {dict(configs[i])}")
    cal.lr_factor = {ck: {st: sorted([[math.log2(default_lr), 1.0]] + [[math.log2(lr), a / w] for lr, (a, w) in by_lr.items()])
                          for st, by_lr in tab.items()} for ck, tab in sums.items()}
    cal.meta["lr_factor"] = {"models": list(models), "matrix_lrs": list(lrs), "default_matrix_lr": default_lr,
                             "seconds": round(time.time() - t_start),
                             "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    cal.save(path)
    log(f"calibrate: MATRIX_LR factors written to {path} in {time.time() - t_start:.0f}s")
    return cal


def calibrate(out: str | Path = CALIBRATION_PATH, configs=CALIBRATION_CONFIGS,
              factor_models: tuple[int, ...] = FACTOR_MODELS, compressors: tuple[str, ...] = ("zstd", "lzma", "zlib"),
              rates_from: str | Path | None = None, factor_bits: tuple[int, ...] = FACTOR_BITS,
              grid: list[dict[str, str]] | None = None,
              log: Callable[[str], None] = lambda m: print(m, flush=True)) -> Calibration:
    """Build the calibration table from short real trainings (see the module docstring).

    rates_from: reuse the per-tensor rates (and the frame factors of widths not in factor_bits) of an
    earlier table made with the same configs; only the factor models are trained again.
    grid: the tied-embedding models (default: `embedding_grid()` with the default configs, else none)."""
    import torch
    import zstandard

    import pgolf.train_gpt as tg

    levels = {c: tg.COMPRESSORS[c][2] for c in compressors}
    overhead = {f"{c}:{levels[c]}": frame_overhead(c, levels[c]) for c in compressors}
    if grid is None:
        grid = embedding_grid(configs) if configs is CALIBRATION_CONFIGS else []
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="pgolf_size_cal_") as tmp:
        wanted = set(factor_models) if rates_from else set(range(len(configs)))
        models = {i: _train_for_calibration(i, cfg, tmp, log) for i, cfg in enumerate(configs) if i in wanted}
        if rates_from:
            old = Calibration.load(rates_from)
            rates, scale, how_rates = old.rates, old.scale, old.meta.get("rates", {})
        else:
            rates, scale = _measure_rates(list(models.values()), compressors, levels, overhead, log,
                                          unpooled=_train_embedding_grid(grid, tmp, log))
            how_rates = {"made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "seconds": round(time.time() - t_start)}
        kept = {ck: {kind: pts for kind, pts in tab.items() if kind.startswith("int") and int(kind[3:]) not in factor_bits}
                for ck, tab in (old.factor.items() if rates_from else [])}
        measured = _measure_frame_factors([models[i] for i in factor_models], compressors, levels,
                                          Calibration(rates, scale, {}, overhead), log, factor_bits)
        cal = Calibration(rates, scale, {ck: {**kept.get(ck, {}), **tab} for ck, tab in measured.items()}, overhead)
    cal.meta = {
        "made_by": "python -m pgolf.size calibrate",
        "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "how": ("each config trained by pgolf/train_gpt.py on CPU with SHORT_TRAINING at bits 16 (the model "
                "file then holds the trained fp16 weights). rates: per (role, storage) rows strided to about "
                f"{SAMPLE_VALUES} values, quantized with quantize_rows and compressed alone, less the empty-frame overhead "
                "(the embedding_grid models add their tied embedding's rates only, keyed by vocabulary); "
                "factor: the real frames of serialize() of the factor models at every width in FACTOR_BITS over "
                "the rates' prediction of each frame"),
        "rates": how_rates, "factor_seconds": round(time.time() - t_start),
        "short_training": SHORT_TRAINING, "configs": list(configs), "factor_models": list(factor_models),
        "embedding_grid": old.meta.get("embedding_grid", []) if rates_from else list(grid),
        "factor_bits": sorted({*factor_bits, *(old.meta.get("factor_bits", []) if rates_from else [])}),
        "versions": {"torch": torch.__version__, "zstandard": zstandard.__version__},
    }
    cal.save(out)
    log(f"calibrate: wrote {out} in {time.time() - t_start:.0f}s")
    return calibrate_lr(out, configs=configs, log=log, trained=models) if configs is CALIBRATION_CONFIGS else cal


# ----------------------------------------------------------------------------- CLI

def parse_settings(args: list[str]) -> dict[str, str]:
    """KEY=VALUE arguments -> env dict; ValueError naming the bad argument and the fix. A KEY the
    trainer does not read is refused with the nearest name (a typo would predict the default)."""
    import difflib
    from dataclasses import fields

    import pgolf.train_gpt as tg

    known = sorted(f.name.upper() for f in fields(tg.Hyperparameters))
    env = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise ValueError(f"{arg!r} is not KEY=VALUE with an upper-case KEY (pass settings like NUM_LAYERS=11)")
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            raise ValueError(f"{key} is not a setting of pgolf/train_gpt.py ("
                             + (f"did you mean {close[0]}?)" if close else "see its Hyperparameters)"))
        env[key] = value
    return env


def format_prediction(p: Prediction) -> str:
    names = {"embed": "embeddings", "attn": "attention", "mlp": "MLP", "other": "other"}
    lines = [f"predicted total {p.total_bytes} bytes = code {p.code_bytes} + model {p.model_bytes} ({p.compressor})"]
    for g in GROUPS:
        lines.append(f"  {names[g]:<11s} {p.groups.get(g, 0):>12d} bytes  {p.params.get(g, 0):>12d} params")
    lines.append(f"  {'container':<11s} {p.container_bytes:>12d} bytes  (header and frame overheads)")
    lines.append(f"  {'code':<11s} {p.code_bytes:>12d} bytes")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "calibrate":
        if len(args) > 1:
            print("error: `calibrate` takes no arguments (it rebuilds pgolf/size_calibration.json)", file=sys.stderr)
            return 2
        calibrate()
        return 0
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    try:
        p = predict(parse_settings(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_prediction(p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
