"""The five seed records as points of our trainer, and a space around them.

The project started from five submissions; each is a RECIPE here (its techniques, switched on in
pgolf/train_gpt.py) plus the shape and export knobs the search moves around it:

- `#465`  10L int5 MLP / int6 attention, SmearGate, BigramHash(4096, 128), OrthoInit, SWA (1.1508)
- `#215`  11L with a low-rank Q of rank 192 (1.1548)
- `#212`  depth recurrence, the write-up's negative findings (1.1329): here a loop of 3 blocks run
          3 times in the middle of the stack (its "3x3 beats 2x5" configuration)
- `#333`  11L XSA on the last 4, SmearGate, BigramHash(2048), OrthoInit, late-K fp16 (the last 2
          layers' K kept in fp16), 3 % magnitude pruning, Overtone embedding init (1.1565)
- `#1319` 11L LeakyReLU², XSA on all layers, GPTQ, late QAT, EMA, LN scale, partial RoPE, int8
          embeddings with int6 blocks, lzma (0.6951 with SLOT, which broke the evaluation time
          limit; run here without it)

The recipes name techniques, not every optimizer setting of each record: a search varies depth,
width, MLP width, bit widths per group, quantizer, Q rank and Muon weight decay around them.

Run:    python -m search.run spaces/seeds.py            (8 GPUs per trial, FineWeb sp1024)
Smoke:  python -m search.run spaces/seeds.py --smoke --num-samples 5
        (each seed as a tiny CPU training on the bundled corpus: its recipe at a small shape)
"""

SCRIPT = "pgolf/train_gpt.py"
BUDGET_BYTES = 16_000_000
GPUS_PER_TRIAL = 8
CPUS_PER_TRIAL = 8

FIXED_ENV = {
    "DATA_PATH": "./data/datasets/fineweb10B_sp1024",
    "TOKENIZER_PATH": "./data/tokenizers/fineweb_1024_bpe.model",
    "VOCAB_SIZE": 1024, "NUM_HEADS": 8, "NUM_KV_HEADS": 4,
    "ITERATIONS": 20000, "MAX_WALLCLOCK_SECONDS": 600, "WARMDOWN_ITERS": 3000,
    "MUON_MOMENTUM": 0.99, "MUON_MOMENTUM_WARMUP_START": 0.92, "MUON_MOMENTUM_WARMUP_STEPS": 1500,
    "GRAD_CLIP_NORM": 0.3, "EVAL_STRIDE": 64,
}

# Each recipe's techniques (environment of pgolf/train_gpt.py); `smoke` shrinks the table sizes.
RECIPES = {
    "#465": {"SMEAR_GATE": 1, "BIGRAM_BUCKETS": 4096, "BIGRAM_DIM": 128, "ORTHO_INIT": 1,
             "SWA_EVERY": 50, "SWA_START_FRAC": 0.4},
    "#215": {},
    "#212": {"NUM_LOOPS": 2},  # LOOP_START/LOOP_END: the middle 3 layers (set in recipe_env)
    "#333": {"XSA_LAST_N": 4, "SMEAR_GATE": 1, "BIGRAM_BUCKETS": 2048, "BIGRAM_DIM": 128, "ORTHO_INIT": 1,
             "KEEP_FLOAT_LAST": 2, "KEEP_FLOAT_TENSORS": "attn.c_k", "PRUNE_FRAC": 0.03, "OVERTONE_INIT": 1},
    "#1319": {"MLP_ACTIVATION": "leaky_relu2", "MLP_LEAKY_SLOPE": 0.5, "XSA_LAST_N": -1,
              "QAT_START_FRAC": 0.15, "EMA_DECAY": 0.997, "LN_SCALE": 1, "ROPE_DIMS": 16,
              "COMPRESSOR": "lzma", "GPTQ_CALIBRATION_BATCHES": 64},
}

# The seeds themselves, first (full scale).
POINTS_TO_EVALUATE = [
    {"RECIPE": "#465", "NUM_LAYERS": 10, "MODEL_DIM": 512, "MLP_MULT": 3.0, "MLP_BITS": 5, "ATTN_BITS": 6,
     "EMBED_BITS": 16, "QUANTIZER": "rtn", "Q_RANK": 0, "MUON_WEIGHT_DECAY": 0.04},
    {"RECIPE": "#215", "NUM_LAYERS": 11, "MODEL_DIM": 512, "MLP_MULT": 3.0, "MLP_BITS": 6, "ATTN_BITS": 6,
     "EMBED_BITS": 8, "QUANTIZER": "rtn", "Q_RANK": 192, "MUON_WEIGHT_DECAY": 0.04},
    {"RECIPE": "#212", "NUM_LAYERS": 9, "MODEL_DIM": 512, "MLP_MULT": 3.0, "MLP_BITS": 6, "ATTN_BITS": 6,
     "EMBED_BITS": 8, "QUANTIZER": "rtn", "Q_RANK": 0, "MUON_WEIGHT_DECAY": 0.04},
    {"RECIPE": "#333", "NUM_LAYERS": 11, "MODEL_DIM": 512, "MLP_MULT": 3.0, "MLP_BITS": 6, "ATTN_BITS": 6,
     "EMBED_BITS": 16, "QUANTIZER": "rtn", "Q_RANK": 0, "MUON_WEIGHT_DECAY": 0.04},
    {"RECIPE": "#1319", "NUM_LAYERS": 11, "MODEL_DIM": 512, "MLP_MULT": 3.0, "MLP_BITS": 6, "ATTN_BITS": 6,
     "EMBED_BITS": 8, "QUANTIZER": "gptq", "Q_RANK": 0, "MUON_WEIGHT_DECAY": 0.04},
]


def recipe_env(name: str, num_layers: int, smoke: bool = False) -> dict:
    """The recipe's techniques for a model of `num_layers` layers (tables shrunk for --smoke)."""
    env = dict(RECIPES[name])
    if env.get("XSA_LAST_N") == -1:
        env["XSA_LAST_N"] = num_layers
    env["XSA_LAST_N"] = min(env.get("XSA_LAST_N", 0), num_layers)
    env["KEEP_FLOAT_LAST"] = min(env.get("KEEP_FLOAT_LAST", 0), num_layers)
    if env.get("NUM_LOOPS"):
        start = max(0, (num_layers - 3) // 2)
        env["LOOP_START"], env["LOOP_END"] = start, min(num_layers - 1, start + 2)
    if smoke:
        if "BIGRAM_BUCKETS" in env:
            env["BIGRAM_BUCKETS"], env["BIGRAM_DIM"] = env["BIGRAM_BUCKETS"] // 32, 16
        if "SWA_EVERY" in env:
            env["SWA_EVERY"] = 4
        if "ROPE_DIMS" in env:
            env["ROPE_DIMS"] = 8
        if "GPTQ_CALIBRATION_BATCHES" in env:
            env["GPTQ_CALIBRATION_BATCHES"] = 4
        if "EMA_DECAY" in env:
            env["EMA_DECAY"] = 0.9  # 30 steps: an average over about the last 10
    return env


def _space(trial, layers, dims, mlp, q_ranks, smoke):
    name = trial.suggest_categorical("RECIPE", list(RECIPES))
    env = {
        "NUM_LAYERS": trial.suggest_int("NUM_LAYERS", *layers),
        "MODEL_DIM": trial.suggest_categorical("MODEL_DIM", dims),
        "MLP_MULT": trial.suggest_float("MLP_MULT", *mlp, step=0.5),
        "MLP_BITS": trial.suggest_int("MLP_BITS", 4, 8),
        "ATTN_BITS": trial.suggest_int("ATTN_BITS", 4, 8),
        "EMBED_BITS": trial.suggest_categorical("EMBED_BITS", [6, 8, 16]),
        "QUANTIZER": trial.suggest_categorical("QUANTIZER", ["rtn", "gptq"]),
        "Q_RANK": trial.suggest_categorical("Q_RANK", q_ranks),
        "MUON_WEIGHT_DECAY": trial.suggest_float("MUON_WEIGHT_DECAY", 0.0, 0.08, step=0.02),
    }
    return {**env, **recipe_env(name, env["NUM_LAYERS"], smoke)}


def space(trial):
    return _space(trial, (8, 13), [448, 512, 576], (2.0, 4.0), [0, 128, 192, 256], smoke=False)


# --smoke: each seed's recipe at a tiny shape (vocab 512, width 64, 2-5 layers), seconds per training.
SMOKE_ENV = {
    "VOCAB_SIZE": 512, "NUM_HEADS": 4, "NUM_KV_HEADS": 2,
    "ITERATIONS": 30, "WARMDOWN_ITERS": 10, "WARMUP_STEPS": 0,
    "TRAIN_BATCH_TOKENS": 4096, "TRAIN_SEQ_LEN": 128, "MICRO_BATCHES": 1,
    "VAL_BATCH_SIZE": 8192, "VAL_MAX_TOKENS": 16384, "VAL_LOSS_EVERY": 10, "TRAIN_LOG_EVERY": 10,
    "TORCH_COMPILE": 0, "MAX_WALLCLOCK_SECONDS": 0, "KEEP_FLOAT_MAX_NUMEL": 1024,
}
SMOKE_BUDGET_BYTES = 260_000
SMOKE_POINTS_TO_EVALUATE = [
    {**p, "NUM_LAYERS": layers, "MODEL_DIM": 64, "MLP_MULT": 2.0, "Q_RANK": 16 if p["Q_RANK"] else 0}
    for p, layers in zip(POINTS_TO_EVALUATE, (3, 4, 5, 4, 4))
]


def smoke_space(trial):
    return _space(trial, (2, 5), [32, 64], (1.0, 3.0), [0, 8, 16], smoke=True)
