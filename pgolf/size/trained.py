"""The trained-weights regime: how weights trained 10 minutes on 8xH100 compress, fitted on the
competition's records (`pgolf/size_trained.json`, made by `python -m pgolf.size calibrate-records`).

Why a model and not a factor per record: a record is one training, so a factor per record learns
nothing about the next configuration. What the records show is that trained weights, quantized
per row by their maximum as our trainer does, compress like rows drawn from one heavy-tailed
distribution: Student-t with `nu` degrees of freedom (nu -> infinity is Gaussian; CPU-calibration
weights, near their initialisation, are lighter-tailed still). One number, fitted on the records,
then gives every bit width, row length and compressor:

- the bytes per stored value of `int<b>` (our trainer's `quantize_rows` on synthetic rows of that
  length, compressed by the trainer's own `compress`) and of fp16 values, tabulated at row lengths
  ROW_LENGTHS and interpolated in log2(row length);
- row scales, fp32 control tensors and the container come from the CPU calibration (they do not
  depend on how far the weights were trained, and are under 1 % of a record's bytes);
- stored forms (GPTQ, clip search, pruning) keep their measured ratios (`pgolf.size.forms`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pgolf.size.calibration import interp
from pgolf.size.layout import PGOLF, QUANT_BITS

TRAINED_PATH = PGOLF / "size_trained.json"
ROW_LENGTHS = (128, 256, 512, 1024, 2048, 4096)
SIM_VALUES = 1 << 18           # values per simulated tensor (512 rows of 512)
SIM_SEED = 20260320
NU_RANGE = (2.5, 1000.0)       # searched in log(nu); 1000 is Gaussian for these purposes
STORAGES = tuple(f"int{b}" for b in QUANT_BITS) + ("fp16",)
CKEYS = ("zlib:9", "zstd:22", "lzma:9", "brotli:11")
ROW_STD = 0.02                 # fp16 values' scale (their exponent pattern, not their bytes, depends on it)


@lru_cache(maxsize=len(ROW_LENGTHS))
def _synthetic(nu: float, row_len: int, seed: int):
    """SIM_VALUES values in rows of row_len, Student-t(nu) (Gaussian from 1000 on); cached for the other
    storages and compressors of one nu (read only: quantized and cast into new tensors)."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    shape = (max(1, SIM_VALUES // row_len), row_len)
    x = rng.standard_normal(shape) if nu >= NU_RANGE[1] else rng.standard_t(nu, shape)
    return torch.from_numpy((x * ROW_STD).astype("float32"))


@lru_cache(maxsize=4096)
def simulated_rate(nu: float, storage: str, ckey: str, row_len: int) -> float:
    """Compressed bytes per value of `storage` for synthetic trained rows (values only, no scales)."""
    import pgolf.train_gpt as tg

    w = _synthetic(nu, row_len, SIM_SEED + row_len)
    compressor, level = ckey.split(":")
    if storage == "fp16":
        data = w.to(dtype=__import__("torch").float16).numpy().tobytes()
    else:
        q, _ = tg.quantize_rows(w, int(storage[3:]))
        data = q.numpy().tobytes()
    return len(tg.compress(data, compressor, int(level))) / w.numel()


def _rate_points(nu: float, storage: str, ckey: str) -> list[list[float]]:
    """[log2(row length), bytes per value] of `storage` under `ckey` at every ROW_LENGTHS."""
    return [[math.log2(n), simulated_rate(nu, storage, ckey, n)] for n in ROW_LENGTHS]


class _OnDemandRates(dict):
    """storage -> rate points of one compressor at one nu, simulated on first `get`."""

    def __init__(self, nu: float, ckey: str):
        super().__init__()
        self.nu, self.ckey = nu, ckey

    def get(self, storage, default=None):
        if storage not in self and storage in STORAGES:
            self[storage] = _rate_points(self.nu, storage, self.ckey)
        return super().get(storage, default)


@dataclass
class TrainedRegime:
    """rates[ckey][storage] = sorted [log2(row length), bytes per value] points at the fitted nu."""

    nu: float
    rates: dict[str, dict[str, list[list[float]]]]
    margin: float = 0.05             # our trainer's prior margin: 1.5 x the largest |error| of a record's run
    external_margin: float = 0.1     # the prior's measured error for scripts pgolf.size cannot build
    meta: dict = field(default_factory=dict)

    def value_bytes(self, ckey: str, storage: str, row_len: int) -> float:
        by_storage = self.rates.get(ckey)
        if by_storage is None:
            by_storage = self.rates[_nearest_ckey(self.rates, ckey)]
        points = by_storage.get(storage)
        if points is None:
            raise ValueError(f"storage {storage} is not in the trained-weights table {TRAINED_PATH.name}; "
                             "rebuild it with `python -m pgolf.size calibrate-records`")
        return interp(points, math.log2(max(row_len, 1)))

    @staticmethod
    def ckey_of(env) -> str:
        """`compressor:level` of a configuration of our trainer."""
        import pgolf.train_gpt as tg

        hp = tg.Hyperparameters.from_env({k: str(v) for k, v in env.items()})
        return f"{hp.compressor}:{hp.compressor_level}"

    @classmethod
    def build(cls, nu: float, ckeys=CKEYS, storages=STORAGES, **kw) -> "TrainedRegime":
        return cls(nu=nu, rates={c: {s: _rate_points(nu, s, c) for s in storages} for c in ckeys}, **kw)

    @classmethod
    def on_demand(cls, nu: float, ckeys=CKEYS) -> "TrainedRegime":
        """The regime at nu with each storage's rates simulated when a prediction first asks for them: the
        fit of nu predicts a few records, which read a few storages (`build` tabulates them all)."""
        return cls(nu=nu, rates={c: _OnDemandRates(nu, c) for c in ckeys})

    def save(self, path: str | Path = TRAINED_PATH) -> None:
        Path(path).write_text(json.dumps({"meta": self.meta, "nu": self.nu, "margin": self.margin,
                                          "external_margin": self.external_margin, "rates": self.rates},
                                         indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path = TRAINED_PATH) -> "TrainedRegime":
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"trained-weights table {p} is missing; rebuild it with `python -m pgolf.size "
                             "calibrate-records ../shared/conformance/records` (or predict with --smoke)")
        data = json.loads(p.read_text(encoding="utf-8"))
        return cls(nu=data["nu"], rates=data["rates"], margin=data.get("margin", 0.05),
                   external_margin=data.get("external_margin", 0.1), meta=data.get("meta", {}))

    def prior_model_bytes(self, params: float, bits: int, ckey: str, row_len: int = 512) -> int:
        """Model bytes of a script pgolf.size cannot build, before any trial: every parameter an
        int<bits> value in rows of row_len with one fp16 scale per row (nearly every record's export)."""
        per_value = self.value_bytes(ckey, f"int{bits}", row_len) + 2.0 / row_len
        return int(round(params * per_value))


def _nearest_ckey(rates: dict, ckey: str) -> str:
    name, _, level = ckey.partition(":")
    same = [k for k in rates if k.split(":")[0] == name]
    if not same:
        raise ValueError(f"compressor {name!r} is not in the trained-weights table; use one of "
                         f"{sorted(k.split(':')[0] for k in rates)}")
    return min(same, key=lambda k: abs(int(k.split(":")[1]) - int(level or 0)))


@lru_cache(maxsize=4)
def _cached(path: str, mtime: float) -> TrainedRegime:
    return TrainedRegime.load(path)


def load_trained(path: str | Path = TRAINED_PATH) -> TrainedRegime:
    """The trained-weights table (read once per file version)."""
    p = Path(path)
    return _cached(str(p), p.stat().st_mtime if p.exists() else 0.0)
