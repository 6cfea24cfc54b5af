"""Predicted artifact bytes of a configuration, before anything is trained.

First, simple version: the trainer's model is built on the `meta` device
from the configuration's environment (`pgolf.train_gpt.Hyperparameters`), so
the parameter counts are exact, and each state-dict entry is counted the way
`pgolf.train_gpt.quantize_state_dict` stores it: large 2-D tensors at their
group's bit width plus one fp16 scale per row, control tensors in fp32, other
small tensors in fp16. One constant, `COMPRESSED_FRACTION`, accounts for the
compressor (taken from the public baseline: 17,059,912 int8 parameters gave
15,815,847 model bytes with zlib). Code bytes are the script's size.

The search calls it through `predict(env).total_bytes`; a calibrated
predictor can replace the internals while keeping this API.

    python -m pgolf.size NUM_LAYERS=11 MODEL_DIM=512 MLP_BITS=6
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

COMPRESSED_FRACTION = 0.927
DEFAULT_SCRIPT = Path(__file__).with_name("train_gpt.py")


@dataclass(frozen=True)
class Prediction:
    """Predicted artifact bytes, split into code and model, and model bytes per group."""

    total_bytes: int
    code_bytes: int
    model_bytes: int
    groups: dict[str, int] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)


def _stored_bytes(name: str, shape: tuple[int, ...], is_float: bool, itemsize: int, hp, tg) -> float:
    numel = 1
    for d in shape:
        numel *= d
    bits = tg.group_bits(name, hp)
    if is_float and len(shape) == 2 and numel > hp.keep_float_max_numel and bits != 16:
        return numel * bits / 8 * COMPRESSED_FRACTION + shape[0] * 2
    if is_float and any(part in name for part in tg.CONTROL_NAME_PARTS):
        return numel * 4
    if is_float:
        return numel * 2
    return numel * itemsize


def predict(env: Mapping[str, str], script: str | Path | None = None) -> Prediction:
    """Predict the artifact of the trainer run with `env` (raises ValueError on a bad setting)."""
    import torch

    import pgolf.train_gpt as tg

    hp = tg.Hyperparameters.from_env(env)
    hp.validate()
    with torch.device("meta"):
        model = tg.build_model(hp)
    groups = {"embed": 0.0, "attn": 0.0, "mlp": 0.0, "other": 0.0}
    for name, t in model.state_dict().items():
        groups[tg.param_group(name)] += _stored_bytes(name, tuple(t.shape), t.is_floating_point(),
                                                      t.element_size(), hp, tg)
    model_bytes = int(round(sum(groups.values())))
    code_bytes = len(Path(script or DEFAULT_SCRIPT).read_bytes())
    return Prediction(total_bytes=model_bytes + code_bytes, code_bytes=code_bytes, model_bytes=model_bytes,
                      groups={k: int(round(v)) for k, v in groups.items()}, params=tg.count_params(model))


def predict_bytes(env: Mapping[str, str], script: str | Path | None = None) -> int:
    """The searcher's hook: predicted total artifact bytes."""
    return predict(env, script).total_bytes


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    env = {}
    for arg in args:
        if "=" not in arg:
            print(f"error: {arg!r} is not NAME=VALUE (pass settings like NUM_LAYERS=11)", file=sys.stderr)
            return 2
        key, value = arg.split("=", 1)
        env[key] = value
    try:
        p = predict(env)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"total {p.total_bytes} bytes = code {p.code_bytes} + model {p.model_bytes}")
    for group, size in p.groups.items():
        print(f"  {group:6s} {size:>12d} bytes  {p.params.get(group, 0):>12d} params")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
