"""The stored form of every tensor of our trainer and the container layout around it: what the
artifact holds, entry by entry and frame by frame, before anything is compressed."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path


PGOLF = Path(__file__).resolve().parents[1]
DEFAULT_SCRIPT = PGOLF / "train_gpt.py"
CALIBRATION_PATH = PGOLF / "size_calibration.json"
GROUPS = ("embed", "attn", "mlp", "other")
QUANT_BITS = (4, 5, 6, 7, 8)

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
    "mlp_activation", "mlp_leaky_slope", "ln_scale", "rope_dims", "ema_decay",
    "ortho_init", "overtone_init", "smear_bos_mask", "enable_looping_at", "qat_start_frac", "quantizer",
    "gptq_calibration_batches", "gptq_reserve_seconds", "clip_search", "keep_float_last", "keep_float_tensors", "prune_frac",
})


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
def model_shapes(key: tuple) -> tuple[tuple[str, tuple[int, ...], bool, int, str], ...]:
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
            for n, shape, is_float, itemsize, dtype in model_shapes(_shape_key(hp))]


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
def container_layout(key: tuple, stored: tuple[tuple[str, str], ...] = ()) -> tuple[dict[str, Entry], dict, list[list],
                                                                                   list[int]]:
    """(entries, data-free model, container records, values per frame) of an architecture at its
    widths (cached: building the layout is most of a prediction's cost). `stored`: (tensor name,
    storage) pairs that replace the trainer's own choice (a record's export, `pgolf.size.records`)."""
    from dataclasses import replace

    import pgolf.train_gpt as tg

    hp = tg.Hyperparameters(**dict(key))
    forms = dict(stored)
    entries = {e.name: (replace(e, storage=forms[e.name]) if e.name in forms else e) for e in stored_entries(hp)}
    unknown = sorted(set(forms) - set(entries))
    if unknown:
        raise ValueError(f"no tensor {unknown[0]} in this model (stored forms name state-dict entries)")
    model_obj = _layout_model(list(entries.values()))
    records, frames = tg.frame_layout(model_obj)
    return entries, model_obj, records, [sum(t.numel() for t in ts) for ts in frames]


def layout_key(hp) -> tuple:
    keep = ("mlp_bits", "attn_bits", "embed_bits", "keep_float_max_numel", "keep_float_last", "keep_float_tensors")
    return tuple(sorted({**dict(_shape_key(hp)), **{k: getattr(hp, k) for k in keep}}.items()))


def muon_updated(e: Entry) -> bool:
    """Whether the trainer's Muon optimizer trains this entry (MATRIX_LR applies): the rule of
    `tg.build_optimizers`, checked against it in the tests."""
    return (len(e.shape) == 2 and not e.name.startswith(("tok_emb.", "bigram.table.", "lm_head."))
            and e.storage != "fp32")


def frame_kind(part: str, storage: str) -> str:
    """The factor key of a frame: its tensors' storage (`int6`, `fp16`, `fp32`, `raw`) or `scale`."""
    return "scale" if part == "scale" else storage
