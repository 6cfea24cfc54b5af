"""Low-rank Q projection: spend fewer bytes on attention queries, more on depth.

Records factor W_q (dim x dim) as two thin matrices of rank `Q_RANK`
(e.g. 192 of 512); the bytes saved can buy an extra layer or a wider MLP.
`Q_RANK=0` is the full-rank baseline. Same conventions as
tokenizer_width_depth.py (data under ./data, `--smoke` for tiny CPU trials).
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
    "ITERATIONS": 4950,
    "MAX_WALLCLOCK_SECONDS": 0,
    "WARMDOWN_ITERS": 1200,
    "MLP_BITS": 6,   # records pair low-rank Q with int6 weights
    "ATTN_BITS": 6,
}

POINTS_TO_EVALUATE = [{"Q_RANK": 0, "NUM_LAYERS": 9, "MLP_MULT": 2.0}]


def space(trial):
    return {
        "Q_RANK": trial.suggest_categorical("Q_RANK", [0, 64, 128, 192, 256, 320]),
        "NUM_LAYERS": trial.suggest_int("NUM_LAYERS", 9, 12),
        "MLP_MULT": trial.suggest_float("MLP_MULT", 2.0, 3.0, step=0.25),
    }


SMOKE_ENV = {
    "VOCAB_SIZE": 512, "MODEL_DIM": 64, "NUM_HEADS": 4, "NUM_KV_HEADS": 2,
    "ITERATIONS": 30, "WARMDOWN_ITERS": 10, "WARMUP_STEPS": 0,
    "TRAIN_BATCH_TOKENS": 4096, "TRAIN_SEQ_LEN": 128, "MICRO_BATCHES": 1,
    "VAL_BATCH_SIZE": 8192, "VAL_MAX_TOKENS": 16384, "VAL_LOSS_EVERY": 10, "TRAIN_LOG_EVERY": 10,
    "TORCH_COMPILE": 0, "MAX_WALLCLOCK_SECONDS": 0,
}
SMOKE_BUDGET_BYTES = 260_000
SMOKE_POINTS_TO_EVALUATE = [{"Q_RANK": 0, "NUM_LAYERS": 2, "MLP_MULT": 2.0}]


def smoke_space(trial):
    return {
        "Q_RANK": trial.suggest_categorical("Q_RANK", [0, 8, 16, 32]),
        "NUM_LAYERS": trial.suggest_int("NUM_LAYERS", 1, 4),
        "MLP_MULT": trial.suggest_float("MLP_MULT", 1.0, 3.0, step=0.5),
    }
