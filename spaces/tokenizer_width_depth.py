"""Tokenizer size, depth and width: the trade-off between vocabulary and model bytes.

A bigger vocabulary compresses text into fewer tokens but its embedding costs
bytes that the 16 MB budget then takes from the layers. This space lets the
search trade vocab (1024-8192), layers, model width, MLP width and KV heads.

Run:    python -m search.run spaces/tokenizer_width_depth.py
Smoke:  python -m search.run spaces/tokenizer_width_depth.py --smoke
        (tiny CPU trainings on the bundled corpus; DATA_PATH/TOKENIZER_PATH are
        then prepared for each trial's VOCAB_SIZE automatically)

Data: FIXED_ENV points at the FineWeb exports under ./data (download them with
`python -m pgolf.data`); `{VOCAB_SIZE}` is filled with the trial's value. Only
sp1024 is published: for the other vocabs, set DOCS below to the competition's
documents (`python -m pgolf.data download --with-docs`) and the search prepares
each vocab once, by the competition's own recipe, before its first trial.
Copy this file and edit it to make your own space (see README, "Running a search").
"""

SCRIPT = "pgolf/train_gpt.py"
BUDGET_BYTES = 16_000_000
GPUS_PER_TRIAL = 8
CPUS_PER_TRIAL = 8

# Every trial: fixed-step proxy training (comparable across trials), data for its vocab.
FIXED_ENV = {
    "DATA_PATH": "./data/datasets/fineweb10B_sp{VOCAB_SIZE}",
    "TOKENIZER_PATH": "./data/tokenizers/fineweb_{VOCAB_SIZE}_bpe.model",
    "ITERATIONS": 4950,
    "MAX_WALLCLOCK_SECONDS": 0,
    "WARMDOWN_ITERS": 1200,
    "NUM_HEADS": 8,
    "MLP_BITS": 6,    # int6 attention and MLP, as the records store them; int8 embeddings
    "ATTN_BITS": 6,
    "EMBED_BITS": 8,
}

# The public baseline's shape first: 9 x 512, 4 KV heads, MLP 2x, sp1024.
# DOCS = "./data/docs_selected.jsonl"  # prepare each vocab's data during the search (docs/guide/data.md)

POINTS_TO_EVALUATE = [
    {"VOCAB_SIZE": 1024, "NUM_LAYERS": 9, "MODEL_DIM": 512, "NUM_KV_HEADS": 4, "MLP_MULT": 2.0},
]

EARLY_STOPPING = None  # e.g. {"grace_period": 2, "reduction_factor": 3} to stop poor trials early


def space(trial):
    return {
        "VOCAB_SIZE": trial.suggest_categorical("VOCAB_SIZE", [1024, 2048, 4096, 8192]),
        "NUM_LAYERS": trial.suggest_int("NUM_LAYERS", 6, 13),
        "MODEL_DIM": trial.suggest_int("MODEL_DIM", 384, 768, step=64),  # /8 heads: even head dims
        "NUM_KV_HEADS": trial.suggest_categorical("NUM_KV_HEADS", [1, 2, 4, 8]),
        "MLP_MULT": trial.suggest_float("MLP_MULT", 1.5, 4.0, step=0.5),
    }


# --smoke: the same knobs, shrunk to models that train in seconds on one CPU core.
SMOKE_ENV = {
    "NUM_HEADS": 4, "ITERATIONS": 30, "WARMDOWN_ITERS": 10, "WARMUP_STEPS": 0,
    "TRAIN_BATCH_TOKENS": 4096, "TRAIN_SEQ_LEN": 128, "MICRO_BATCHES": 1,
    "VAL_BATCH_SIZE": 8192, "VAL_MAX_TOKENS": 16384, "VAL_LOSS_EVERY": 10, "TRAIN_LOG_EVERY": 10,
    "TORCH_COMPILE": 0, "MAX_WALLCLOCK_SECONDS": 0,
}
SMOKE_BUDGET_BYTES = 300_000
SMOKE_POINTS_TO_EVALUATE = [
    {"VOCAB_SIZE": 512, "NUM_LAYERS": 2, "MODEL_DIM": 64, "NUM_KV_HEADS": 2, "MLP_MULT": 2.0},
]


def smoke_space(trial):
    return {
        "VOCAB_SIZE": trial.suggest_categorical("VOCAB_SIZE", [512, 768, 1024]),
        "NUM_LAYERS": trial.suggest_int("NUM_LAYERS", 1, 3),
        "MODEL_DIM": trial.suggest_int("MODEL_DIM", 32, 96, step=32),
        "NUM_KV_HEADS": trial.suggest_categorical("NUM_KV_HEADS", [1, 2, 4]),
        "MLP_MULT": trial.suggest_float("MLP_MULT", 1.0, 3.0, step=0.5),
    }
