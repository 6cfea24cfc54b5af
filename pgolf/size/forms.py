"""The stored forms beyond round-to-nearest: GPTQ'd, clip-searched and pruned values, and brotli.

Why: GPTQ spreads rounding error over the columns, clip search narrows the steps and clips the
outliers, pruning adds zeros: each changes how well the same int<b> values compress. And brotli is a
compressor the rates were not measured with. Rather than recalibrating every rate per form, the table
holds measured ratios (`python -m pgolf.size calibrate-forms`, a few minutes):

- `forms[ckey][form][storage]` = compressed bytes of a linear layer's values quantized with `form`
  (`gptq`, `clip`, `gptq+clip`) over those rounded to nearest, at the same width and compressor;
- `prune[ckey][storage]` = sorted [PRUNE_FRAC, ratio] points (0 -> 1), the same for pruned values;
- `brotli:11`: rates and row-scale bytes measured like the other compressors' (strided row samples
  of every calibration model's roles), frame factors from real `serialize()` frames of the form
  models; its `MATRIX_LR` factor is zstd-22's (not measured for brotli).

Measured on the calibration models' trained weights (GPTQ's Hessians from their training data), on
strided row samples of every block matrix, each form from the same weights. `predict` multiplies the
int values' bytes of the linear layers by the form's ratio (pruning and clip search also those of the
embedding: they apply to every int-stored tensor; GPTQ only to linears).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

from pgolf.size.calibration import Calibration, is_linear
from pgolf.size.calibration_runs import (CALIBRATION_CONFIGS, SAMPLE_VALUES, measure_frame_factors, measure_rates,
                                         train_for_calibration)
from pgolf.size.layout import CALIBRATION_PATH

FORM_MODELS = (0, 1, 5)  # calibration models measured (full-size widths 384 and 768, and a small one)
FORM_BITS = (4, 5, 6, 8)
PRUNE_POINTS = (0.01, 0.03, 0.1)
FORMS = {"gptq": {"quantizer": "gptq"}, "clip": {"clip_search": True}, "gptq+clip": {"quantizer": "gptq", "clip_search": True}}
BROTLI = "brotli:11"


def _int_sample(obj: dict, names: list[str]) -> bytes:
    """Strided rows of the int values of `names` (about SAMPLE_VALUES in all), as stored."""
    per = max(1, SAMPLE_VALUES // max(1, len(names)))
    rows = [obj["quant"][n]["q"][:: max(1, obj["quant"][n]["q"].numel() // per)] for n in names]
    return b"".join(r.contiguous().numpy().tobytes() for r in rows)


def training_hessians(model, hp, n_batches: int = 16, batch_tokens: int = 1024) -> dict:
    """GPTQ's Hessians of a trained `model` from the first `n_batches` micro-batches of its training
    data (`hp.data_path`), as the trainer collects them after training."""
    import torch

    import pgolf.train_gpt as tg

    stream = tg.TokenStream(hp.train_pattern)
    batches = [tg.next_micro_batch(stream, batch_tokens, hp.train_seq_len, 0, 1, torch.device("cpu"))[0]
               for _ in range(n_batches)]
    return tg.collect_hessians(model, batches, hp)


def _hessians(hp, state: dict) -> dict:
    import dataclasses

    import pgolf.train_gpt as tg
    from pgolf.data import prepare

    data = prepare(hp.vocab_size, quiet=True)
    h = dataclasses.replace(hp, data_path=str(data.data_path), tokenizer_path=str(data.tokenizer_path))
    model = tg.build_model(h)
    model.load_state_dict(state)
    return training_hessians(model, h)


def measure_forms(models, compressors: dict[str, int], log) -> tuple[dict, dict, dict]:
    """(forms, prune, brotli_ratio): the ratios above, pooled over models and widths by bytes
    (brotli_ratio, brotli over zstd-22 on the same samples, is recorded in the table's meta only)."""
    import dataclasses

    import torch

    import pgolf.train_gpt as tg

    sums: dict = {}

    def add(key: tuple, num: float, den: float) -> None:
        a = sums.setdefault(key, [0.0, 0.0])
        a[0] += num
        a[1] += den

    for cfg, hp, state in models:
        hessians = _hessians(hp, state)
        for bits in FORM_BITS:
            at_bits = dataclasses.replace(hp, mlp_bits=bits, attn_bits=bits, embed_bits=bits)
            plain = tg.quantize_state_dict(state, at_bits)
            names = [n for n in plain["quant"] if is_linear(n)]
            variants = {form: tg.quantize_state_dict(state, dataclasses.replace(at_bits, **extra),
                                                     hessians if "gptq" in form else None)
                        for form, extra in FORMS.items()}
            for f in PRUNE_POINTS:
                variants[f"prune@{f}"] = tg.quantize_state_dict(state, dataclasses.replace(at_bits, prune_frac=f))
            ref = _int_sample(plain, names)
            floats = b"".join(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
                              for t in plain["float"].values() if t.dtype.is_floating_point and t.element_size() == 2)
            for c, level in compressors.items():
                ck = f"{c}:{level}"
                ref_bytes = len(tg.compress(ref, c, level))
                for form, obj in variants.items():
                    add((ck, form, f"int{bits}"), len(tg.compress(_int_sample(obj, names), c, level)), ref_bytes)
            zstd_ref = len(tg.compress(ref, "zstd", 22))
            add(("brotli", f"int{bits}"), len(tg.compress(ref, "brotli", 11)), zstd_ref)
            if bits == FORM_BITS[0] and floats:
                add(("brotli", "fp16"), len(tg.compress(floats, "brotli", 11)), len(tg.compress(floats, "zstd", 22)))
        log(f"calibrate-forms: measured {dict(cfg)}")
    forms: dict = {}
    prune: dict = {}
    brotli_ratio: dict = {}
    for key, (num, den) in sums.items():
        if key[0] == "brotli":
            brotli_ratio[key[1]] = num / den
        elif key[1].startswith("prune@"):
            prune.setdefault(key[0], {}).setdefault(key[2], [[0.0, 1.0]]).append([float(key[1][6:]), num / den])
        else:
            forms.setdefault(key[0], {}).setdefault(key[1], {})[key[2]] = num / den
    for tab in prune.values():
        for pts in tab.values():
            pts.sort()
    return forms, prune, brotli_ratio


def add_brotli(cal: Calibration, trained_all: list, form_models: list, log) -> None:
    """brotli:11 entries: rates and scales of all calibration models, frame factors of the form models."""
    import pgolf.train_gpt as tg

    level = {"brotli": 11}
    cal.overhead[BROTLI] = len(tg.compress(b"", "brotli", 11))
    rates, scale = measure_rates(trained_all, ("brotli",), level, cal.overhead, log)
    cal.rates[BROTLI], cal.scale[BROTLI] = rates[BROTLI], scale[BROTLI]
    cal.factor[BROTLI] = dict(cal.factor["zstd:22"])  # widths not measured below start as zstd's
    cal.lr_factor[BROTLI] = cal.lr_factor.get("zstd:22", {})
    measured = measure_frame_factors(form_models, ("brotli",), level, cal, log, FORM_BITS)
    cal.factor[BROTLI].update(measured.get(BROTLI, {}))


def calibrate_forms(path: str | Path = CALIBRATION_PATH, models: tuple[int, ...] = FORM_MODELS,
                    configs=CALIBRATION_CONFIGS,
                    log: Callable[[str], None] = lambda m: print(m, flush=True)) -> Calibration:
    """Measure the form ratios (on `models`) and brotli (on all `configs`); write them into the table."""
    import pgolf.train_gpt as tg

    cal = Calibration.load(path)
    t0 = time.time()
    compressors = {c: tg.COMPRESSORS[c][2] for c in ("zstd", "lzma", "zlib", "brotli")}
    with tempfile.TemporaryDirectory(prefix="pgolf_size_forms_") as tmp:
        trained_all = [train_for_calibration(f"cal{i}", cfg, tmp, log) for i, cfg in enumerate(configs)]
        trained = [trained_all[i] for i in models]
        forms, prune, brotli_ratio = measure_forms(trained, compressors, log)
        add_brotli(cal, trained_all, trained, log)
    cal.forms, cal.prune = forms, prune
    cal.meta["forms"] = {"made_by": "python -m pgolf.size calibrate-forms", "models": list(models),
                         "bits": list(FORM_BITS), "prune_points": list(PRUNE_POINTS),
                         "brotli_over_zstd": {k: round(v, 4) for k, v in brotli_ratio.items()},
                         "seconds": round(time.time() - t0),
                         "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    cal.save(path)
    log(f"calibrate-forms: written to {path} in {time.time() - t0:.0f}s")
    return cal
