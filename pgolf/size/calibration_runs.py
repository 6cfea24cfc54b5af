"""`python -m pgolf.size calibrate`: the short real trainings and measurements that make the
calibration table."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping

from pgolf.size.layout import (CALIBRATION_PATH, DEFAULT_SCRIPT, QUANT_BITS, container_layout, layout_key,
                               muon_updated, stored_entries, tensor_role)
from pgolf.size.calibration import Calibration, interp, merge_points
from pgolf.size.prediction import frame_rates



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


def short_train(cfg: Mapping[str, str], out_dir: Path, script: Path, extra: Mapping[str, str]) -> dict:
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


def train_for_calibration(i: int | str, cfg: Mapping[str, str], tmp: str, log) -> tuple:
    import pgolf.train_gpt as tg

    t0 = time.time()
    # bits 16 everywhere: the model file then holds the trained weights themselves (fp16)
    metrics = short_train(cfg, Path(tmp) / f"m{i}", DEFAULT_SCRIPT, {"MLP_BITS": "16", "ATTN_BITS": "16",
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


def measure_rates(models, compressors, levels, overhead, log, unpooled=()) -> tuple[dict, dict]:
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
            rates[ck][storage] = {role: merge_points(pts) for role, pts in by_role.items()}
            if storage != "fp32":
                rates[ck][storage]["*"] = merge_points(pooled[ck][storage])
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
        c, hp, state = train_for_calibration(f"emb{i}", cfg, tmp, log)
        out.append((c, hp, {"tok_emb.weight": state["tok_emb.weight"]}))
    return out


def measure_frame_factors(models, compressors, levels, cal: "Calibration", log,
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
                entries, _, records, values = container_layout(layout_key(h))
                for (kind, n_values, shares), real in zip(frame_rates(entries, records, values, cal, ck),
                                                          real_frames):
                    predicted = sum(b for _, b in shares)
                    if kind == "raw" or predicted <= 0:
                        continue
                    raw.setdefault(ck, {}).setdefault(kind, []).append(
                        (math.log2(max(n_values, 1)), (real - cal.overhead[ck]) / predicted, n_values))
            log(f"calibrate: frame factors of {dict(cfg)} with {c}")
    return {ck: {kind: merge_points(pts) for kind, pts in tab.items()} for ck, tab in raw.items()}


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
            base = _muon_only((trained or {}).get(i) or train_for_calibration(f"{i}", configs[i], tmp, log))
            ref, _ = measure_rates([base], tuple(levels), levels, cal.overhead, lambda m: None)
            for lr in lrs:
                at_lr = train_for_calibration(f"{i}_lr{lr}", {**configs[i], "MATRIX_LR": str(lr)}, tmp, log)
                got, _ = measure_rates([_muon_only(at_lr)], tuple(levels), levels, cal.overhead, lambda m: None)
                for ck, tab in got.items():
                    for storage, by_role in tab.items():
                        if not storage.startswith("int"):
                            continue
                        for role in set(by_role) - {"*"}:
                            for x, y in by_role[role]:
                                r = y / interp(ref[ck][storage][role], x)
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
        models = {i: train_for_calibration(i, cfg, tmp, log) for i, cfg in enumerate(configs) if i in wanted}
        if rates_from:
            old = Calibration.load(rates_from)
            rates, scale, how_rates = old.rates, old.scale, old.meta.get("rates", {})
        else:
            rates, scale = measure_rates(list(models.values()), compressors, levels, overhead, log,
                                          unpooled=_train_embedding_grid(grid, tmp, log))
            how_rates = {"made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         "seconds": round(time.time() - t_start)}
        kept = {ck: {kind: pts for kind, pts in tab.items() if kind.startswith("int") and int(kind[3:]) not in factor_bits}
                for ck, tab in (old.factor.items() if rates_from else [])}
        measured = measure_frame_factors([models[i] for i in factor_models], compressors, levels,
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
    if configs is not CALIBRATION_CONFIGS:
        return cal
    return calibrate_lr(out, configs=configs, log=log, trained=models)
