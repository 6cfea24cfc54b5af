"""Bit widths per weight group: fewer bits per value, more parameters per byte.

Records store MLP weights in int5, attention in int6 and the embedding in
int6/int8/fp16, each row with an fp16 scale; the bytes saved buy depth or MLP
width. Same conventions as tokenizer_width_depth.py.
"""

SCRIPT = "pgolf/train_gpt.py"
BUDGET_BYTES = 16_000_000
GPUS_PER_TRIAL = 8
CPUS_PER_TRIAL = 8

FIXED_ENV = {
    "DATA_PATH": "./data/datasets/fineweb10B_sp1024",
    "TOKENIZER_PATH": "./data/tokenizers/fineweb_1024_bpe.model",
    "VOCAB_SIZE": 1024,
    "MODEL_DIM": 512,
    "NUM_HEADS": 8,
    "NUM_KV_HEADS": 4,
    "ITERATIONS": 4950,
    "MAX_WALLCLOCK_SECONDS": 0,
    "WARMDOWN_ITERS": 1200,
    "COMPRESSOR": "zstd",
}

POINTS_TO_EVALUATE = [
    {"MLP_BITS": 6, "ATTN_BITS": 8, "EMBED_BITS": 8, "NUM_LAYERS": 9, "MLP_MULT": 2.0},
    {"MLP_BITS": 6, "ATTN_BITS": 6, "EMBED_BITS": 8, "NUM_LAYERS": 11, "MLP_MULT": 2.0},
]


def space(trial):
    return {
        "MLP_BITS": trial.suggest_int("MLP_BITS", 4, 8),
        "ATTN_BITS": trial.suggest_int("ATTN_BITS", 4, 8),
        "EMBED_BITS": trial.suggest_categorical("EMBED_BITS", [6, 8, 16]),
        "NUM_LAYERS": trial.suggest_int("NUM_LAYERS", 9, 14),
        "MLP_MULT": trial.suggest_float("MLP_MULT", 2.0, 3.5, step=0.5),
    }


SMOKE_ENV = {
    "VOCAB_SIZE": 512, "MODEL_DIM": 128, "NUM_HEADS": 4, "NUM_KV_HEADS": 2,
    "ITERATIONS": 30, "WARMDOWN_ITERS": 10, "WARMUP_STEPS": 0,
    "TRAIN_BATCH_TOKENS": 4096, "TRAIN_SEQ_LEN": 128, "MICRO_BATCHES": 1,
    "VAL_BATCH_SIZE": 8192, "VAL_MAX_TOKENS": 16384, "VAL_LOSS_EVERY": 10, "TRAIN_LOG_EVERY": 10,
    "TORCH_COMPILE": 0, "MAX_WALLCLOCK_SECONDS": 0, "KEEP_FLOAT_MAX_NUMEL": 4096,
}
SMOKE_BUDGET_BYTES = 400_000
SMOKE_POINTS_TO_EVALUATE = [{"MLP_BITS": 8, "ATTN_BITS": 8, "EMBED_BITS": 8, "NUM_LAYERS": 2, "MLP_MULT": 2.0}]


def smoke_space(trial):
    return {
        "MLP_BITS": trial.suggest_int("MLP_BITS", 4, 8),
        "ATTN_BITS": trial.suggest_int("ATTN_BITS", 4, 8),
        "EMBED_BITS": trial.suggest_categorical("EMBED_BITS", [6, 8, 16]),
        "NUM_LAYERS": trial.suggest_int("NUM_LAYERS", 1, 4),
        "MLP_MULT": trial.suggest_float("MLP_MULT", 1.0, 3.0, step=0.5),
    }
