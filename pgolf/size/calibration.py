"""The calibration table (`pgolf/size_calibration.json`): measured compressed bytes per stored value,
frame factors and overheads, looked up by compressor, storage, role and row length."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pgolf.size.layout import CALIBRATION_PATH



def interp(points: list[list[float]], x: float) -> float:
    """Piecewise-linear interpolation over sorted [x, y] points, constant beyond the ends."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def merge_points(raw: list[tuple[float, float, float]]) -> list[list[float]]:
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
    forms: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # see pgolf.size.forms
    prune: dict[str, dict[str, list[list[float]]]] = field(default_factory=dict)

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
                   overhead=data["overhead"], lr_factor=data.get("lr_factor", {}), meta=data.get("meta", {}),
                   forms=data.get("forms", {}), prune=data.get("prune", {}))

    def save(self, path: str | Path = CALIBRATION_PATH) -> None:
        Path(path).write_text(json.dumps({"meta": self.meta, "rates": self.rates, "scale": self.scale,
                                          "factor": self.factor, "overhead": self.overhead,
                                          "lr_factor": self.lr_factor, "forms": self.forms,
                                          "prune": self.prune}, indent=1) + "\n",
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
            rows = sorted([math.log2(int(v)), interp(pts, x)] for r, pts in by_role.items()
                          for b, _, v in [r.partition("@V")] if b == base and v)
            if rows:
                return interp(rows, math.log2(int(vocab)))
            role = base
        return interp(by_role.get(role) or by_role["*"], x)

    def lr_factor_of(self, ckey: str, storage: str, matrix_lr: float) -> float:
        """Bytes of Muon-trained values at this MATRIX_LR over those at the calibration's default
        (a short training moves weights further from their init at a larger rate)."""
        points = self.lr_factor.get(ckey, {}).get(storage)
        return interp(points, math.log2(matrix_lr)) if points and matrix_lr > 0 else 1.0

    def frame_factor(self, ckey: str, kind: str, log2_values: float) -> float:
        """Real frame bytes over the rates' prediction (1 before factors are measured; widths not in
        FACTOR_BITS are interpolated linearly between the measured ones)."""
        tab = self.factor.get(ckey, {})
        if kind in tab:
            return interp(tab[kind], log2_values)
        measured = sorted((int(k[3:]), interp(v, log2_values)) for k, v in tab.items() if k.startswith("int"))
        if kind.startswith("int") and measured:  # linear in the bit width between measured widths
            return interp([list(p) for p in measured], float(kind[3:]))
        return 1.0


@lru_cache(maxsize=8)
def _default_calibration(path: str, mtime: float) -> Calibration:
    return Calibration.load(path)


def load_calibration(path: str | Path = CALIBRATION_PATH) -> Calibration:
    """The calibration table (read once per file version)."""
    p = Path(path)
    return _default_calibration(str(p), p.stat().st_mtime if p.exists() else 0.0)


def is_linear(name: str) -> bool:
    """Entries GPTQ quantizes: the linear layers' weights (not the looked-up embedding tables)."""
    return not name.startswith(("tok_emb.", "bigram.table."))


def form_factor(cal: Calibration, ckey: str, storage: str, linear: bool, quantizer: str, clip: bool,
                prune_frac: float) -> float:
    """Bytes of values stored in this form over round-to-nearest ones (1 where nothing was measured)."""
    f = 1.0
    form = "gptq+clip" if quantizer == "gptq" and clip and linear else "gptq" if quantizer == "gptq" and linear \
        else "clip" if clip else ""
    if form:
        f *= cal.forms.get(ckey, {}).get(form, {}).get(storage, _nearest_width(cal.forms.get(ckey, {}).get(form, {}), storage))
    if prune_frac > 0:
        pts = cal.prune.get(ckey, {}).get(storage) or _nearest_width(cal.prune.get(ckey, {}), storage, None)
        f *= interp(pts, prune_frac) if pts else 1.0
    return f


def _nearest_width(tab: dict, storage: str, default=1.0):
    """The entry of the nearest measured width (int7 -> int6 or int8)."""
    widths = [int(k[3:]) for k in tab if k.startswith("int")]
    if not widths or not storage.startswith("int"):
        return default
    return tab[f"int{min(widths, key=lambda w: abs(w - int(storage[3:])))}"]
