"""How much score does each quantizer lose? The round-trip gap of RTN, RTN with clip search and GPTQ.

For each seed, trains one model on CPU with the real trainer (bundled corpus, vocab 512, width 256
so that every block matrix is quantized), then, from its trained weights, quantizes the block
matrices with each method at int5, int6 and int8 (the export path of pgolf/train_gpt.py:
`quantize_state_dict`, GPTQ's Hessians from training batches by `collect_hessians`), reloads the
dequantized weights and scores them. The gap is round-trip val_bpb - pre-quantization val_bpb, both
scored here on the same validation tokens. Prints one row per (method, bits) with the mean gap and
its spread over the seeds; the last line is `gptq/rtn round-trip gap at int5: R` (ratio of means).

    .venv/bin/python bench/quant.py [--seeds 3] [--iterations 300] [--val-tokens 65536]

One training thread; the committed bench/results/quant.txt took 849 s (14 minutes) on this shared 2-core
machine while other benchmarks ran (most of it the three 300-step trainings).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pgolf.train_gpt as tg  # noqa: E402
from pgolf.size import short_train  # noqa: E402
from pgolf.size.forms import training_hessians  # noqa: E402

SCRIPT = ROOT / "pgolf" / "train_gpt.py"
METHODS = {"rtn": {}, "rtn+clip": {"CLIP_SEARCH": "1"}, "gptq": {"QUANTIZER": "gptq"}}
BITS = (5, 6, 8)
MODEL = {"NUM_LAYERS": "2", "MODEL_DIM": "256", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "MLP_MULT": "2",
         "TRAIN_BATCH_TOKENS": "4096", "TRAIN_SEQ_LEN": "128", "MICRO_BATCHES": "1", "WARMUP_STEPS": "0",
         "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "0", "TORCH_COMPILE": "0", "MAX_WALLCLOCK_SECONDS": "0",
         "VAL_BATCH_SIZE": "16384", "EMBED_BITS": "16", "CPU_THREADS": "1"}


def train(seed: int, iterations: int, data_env: dict[str, str], out: Path) -> dict[str, "tg.Tensor"]:
    """Train with the real trainer (`pgolf.size.short_train`); its model file at bits 16 holds the
    trained weights (fp16)."""
    cfg = {**MODEL, "VOCAB_SIZE": data_env["VOCAB_SIZE"], "SEED": str(seed), "ITERATIONS": str(iterations),
           "WARMDOWN_ITERS": str(iterations // 4), "VAL_MAX_TOKENS": "1024"}
    bits16 = {"MLP_BITS": "16", "ATTN_BITS": "16", "COMPRESSOR": "zlib", "COMPRESSOR_LEVEL": "1"}
    try:
        metrics = short_train(cfg, out, SCRIPT, bits16)
    except RuntimeError as exc:
        raise SystemExit(f"error: training seed {seed} failed: {exc}") from None
    return tg.dequantize_state_dict(tg.deserialize(Path(metrics["model_path"]).read_bytes()))


def gaps_of_seed(seed: int, args, data_env: dict[str, str], tmp: Path) -> dict[tuple[str, int], float]:
    import sentencepiece as spm

    state = {k: v.float() for k, v in train(seed, args.iterations, data_env, tmp / f"s{seed}").items()}
    base = tg.Hyperparameters.from_env({**MODEL, **data_env})
    model = tg.build_model(base)
    model.load_state_dict(state)
    val = tg.load_val_tokens(base.val_pattern, base.train_seq_len, args.val_tokens)
    luts = tg.token_byte_luts(spm.SentencePieceProcessor(model_file=base.tokenizer_path), base.vocab_size)
    prequant = tg.eval_val(base, model, val, luts)[1]
    hessians = training_hessians(model, base, n_batches=16, batch_tokens=4096)
    gaps = {}
    for method, extra in METHODS.items():
        for bits in BITS:
            hp = tg.Hyperparameters.from_env({**MODEL, **data_env, **extra, "MLP_BITS": str(bits),
                                              "ATTN_BITS": str(bits)})
            obj = tg.quantize_state_dict(state, hp, hessians if hp.quantizer == "gptq" else None)
            model.load_state_dict(tg.dequantize_state_dict(obj))
            gaps[method, bits] = tg.eval_val(hp, model, val, luts)[1] - prequant
        model.load_state_dict(state)
    print(f"seed {seed}: pre-quantization val_bpb {prequant:.4f}; " +
          " ".join(f"{m}@{b}:{g:+.4f}" for (m, b), g in gaps.items()), flush=True)
    return gaps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="trainings, seeds 1..N (default 3)")
    ap.add_argument("--iterations", type=int, default=300, help="training steps per model (default 300)")
    ap.add_argument("--val-tokens", type=int, default=65536, help="validation tokens scored (default 65536)")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.iterations < 1 or args.val_tokens < 128:
        print("error: --seeds and --iterations must be >= 1 and --val-tokens >= 128", file=sys.stderr)
        return 2
    import torch

    from pgolf.data import prepare

    torch.set_num_threads(1)  # two threads on a shared 2-core machine ran 8 x slower
    data_env = prepare(512, quiet=True).env()
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="bench_quant_") as tmp:
        per_seed = [gaps_of_seed(s, args, data_env, Path(tmp)) for s in range(1, args.seeds + 1)]
    print(f"\nround-trip gap (val_bpb after quantization - before), {args.seeds} seed(s), "
          f"{args.iterations} steps at width 256, {time.time() - t0:.0f}s")
    print(f"{'method':<10} {'bits':>4} {'mean gap':>10} {'min':>9} {'max':>9}")
    means = {}
    for method in METHODS:
        for bits in BITS:
            g = [s[method, bits] for s in per_seed]
            means[method, bits] = statistics.fmean(g)
            print(f"{method:<10} {bits:>4} {means[method, bits]:>+10.4f} {min(g):>+9.4f} {max(g):>+9.4f}")
    print(f"gptq/rtn round-trip gap at int5: {means['gptq', 5] / means['rtn', 5]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
