"""`predict(env)`: the artifact bytes of one configuration of our trainer, from its exact layout and
the calibration table."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from pgolf.size.layout import (DEFAULT_SCRIPT, Entry, GROUPS, container_layout, layout_key, frame_kind,
                               muon_updated)
from pgolf.size.calibration import Calibration, form_factor, is_linear, load_calibration
from typing import Mapping



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


def frame_rates(entries: Mapping[str, Entry], records: list[list], frame_values: list[int], cal: Calibration,
                 ckey: str, hp=None, regime=None) -> list[tuple[str, int, list[tuple[Entry, float]]]]:
    """Per frame of the layout: (kind, values, [(entry, bytes by the rates)]), before the frame
    factor and without the frame overhead. With the settings `hp`: Muon-trained values scaled by the
    factor of its MATRIX_LR, int values by their stored form's ratio (QUANTIZER, CLIP_SEARCH, PRUNE_FRAC).
    With a `TrainedRegime`, int and fp16 values cost its rates (no MATRIX_LR factor: the records were
    trained at their own rates; scales and fp32 tensors keep the CPU calibration's)."""

    shares: list[list[tuple[Entry, float]]] = [[] for _ in frame_values]
    kinds = [""] * len(frame_values)
    for name, part, _dtype, shape, frame, _offset in records:
        e = entries[name]
        n = math.prod(shape)
        if e.storage == "raw":
            b = float(n * e.itemsize)
        elif part == "scale":
            b = n * cal.scale[ckey][e.storage]
        elif regime is not None and (e.storage.startswith("int") or e.storage == "fp16"):
            b = n * regime.value_bytes(ckey, e.storage, e.row_len)
            if hp is not None and e.storage.startswith("int"):
                b *= form_factor(cal, ckey, e.storage, is_linear(e.name), hp.quantizer, hp.clip_search, hp.prune_frac)
        else:
            b = n * cal.value_bytes(ckey, e.storage, e.role, e.row_len)
            if hp is not None and muon_updated(e):
                b *= cal.lr_factor_of(ckey, e.storage, hp.matrix_lr)
            if hp is not None and e.storage.startswith("int"):
                b *= form_factor(cal, ckey, e.storage, is_linear(e.name), hp.quantizer, hp.clip_search, hp.prune_frac)
        shares[frame].append((e, b))
        kinds[frame] = frame_kind(part, e.storage)
    return [(kinds[i], n, shares[i]) for i, n in enumerate(frame_values)]


def predict(env: Mapping[str, str], script: str | Path | None = None,
            calibration: Calibration | None = None, regime=None,
            stored: Mapping[str, str] | None = None) -> Prediction:
    """Predict the artifact of the trainer run with `env` (raises ValueError on a bad setting).

    regime: None for the CPU calibration (short CPU trainings: `--smoke`), a
    `pgolf.size.trained.TrainedRegime` for weights trained at full scale (a real search).
    stored: tensor name -> storage where an export differs from the trainer's (records only)."""
    import pgolf.train_gpt as tg

    hp = tg.Hyperparameters.from_env({k: str(v) for k, v in env.items()})
    hp.validate()
    cal = calibration or load_calibration()
    ckey = cal.compressor_key(hp.compressor, hp.compressor_level)
    entries, model_obj, records, frame_values = container_layout(layout_key(hp), tuple(sorted((stored or {}).items())))
    groups = dict.fromkeys(GROUPS, 0.0)
    parts: dict[str, float] = {}
    params = dict.fromkeys(GROUPS, 0)
    for e in entries.values():
        if e.storage != "raw":
            params[e.group] += e.numel
    frame_bytes = []
    for kind, n_values, shares in frame_rates(entries, records, frame_values, cal, ckey, hp, regime):
        by_regime = regime is not None and (kind.startswith("int") or kind == "fp16")
        f = 1.0 if kind == "raw" or by_regime else cal.frame_factor(ckey, kind, math.log2(max(n_values, 1)))
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
