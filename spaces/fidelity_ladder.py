"""Depth, width and bit width on a fidelity ladder: cheap short trainings first, the best promoted.

Every proposal trains first at the ladder's cheapest rung (600 steps); as
trainings finish, the best third of each rung by Pareto rank over (val_bpb,
bytes) among the feasible ones is trained again at the next rung (1,800 steps,
then the full 4,950). Only the top rung's trainings are results: the front,
the best and `search.promote` read them. `python -m search.pareto` shows how far
the cheap rung's ranking agrees with the expensive one's (Spearman), which is
what tells you whether the ladder can be trusted for your space.

Run:    python -m search.run spaces/fidelity_ladder.py
Smoke:  python -m search.run spaces/fidelity_ladder.py --smoke   (rungs of 10 and 30 steps on CPU)

A rung may also run on fewer GPUs ("GPUS_PER_TRIAL": 2): our trainer, like
upstream's, keeps the global batch and accumulates more micro-batches per GPU.
Architecture changes transferred from 2 to 8 GPUs in the competition; EMA and
batch size did not (PRs #2005, #393): check the rank agreement before you trust it.
"""

SCRIPT = "pgolf/train_gpt.py"
BUDGET_BYTES = 16_000_000
GPUS_PER_TRIAL = 8
CPUS_PER_TRIAL = 8

FIXED_ENV = {
    "DATA_PATH": "./data/datasets/fineweb10B_sp1024",
    "TOKENIZER_PATH": "./data/tokenizers/fineweb_1024_bpe.model",
    "VOCAB_SIZE": 1024,
    "MAX_WALLCLOCK_SECONDS": 0,
    "NUM_HEADS": 8,
    "EMBED_BITS": 8,
}

# Cheapest first; each rung is laid over the trial's environment. The warmdown keeps its share of the run.
FIDELITIES = [
    {"ITERATIONS": 600, "WARMDOWN_ITERS": 150},
    {"ITERATIONS": 1800, "WARMDOWN_ITERS": 450},
    {"ITERATIONS": 4950, "WARMDOWN_ITERS": 1200},
]
PROMOTE_FRACTION = 1 / 3

POINTS_TO_EVALUATE = [{"NUM_LAYERS": 9, "MODEL_DIM": 512, "MLP_MULT": 2.0, "MLP_BITS": 6}]


def space(trial):
    bits = trial.suggest_categorical("MLP_BITS", [5, 6, 8])
    return {
        "NUM_LAYERS": trial.suggest_int("NUM_LAYERS", 6, 13),
        "MODEL_DIM": trial.suggest_int("MODEL_DIM", 384, 768, step=64),
        "MLP_MULT": trial.suggest_float("MLP_MULT", 1.5, 4.0, step=0.5),
        "MLP_BITS": bits,
        "ATTN_BITS": bits,
    }


# --smoke: the same knobs shrunk to seconds-long CPU trainings, on a ladder of 10 and 30 steps.
SMOKE_ENV = {
    "VOCAB_SIZE": 512, "NUM_HEADS": 4, "NUM_KV_HEADS": 2, "WARMUP_STEPS": 0,
    "TRAIN_BATCH_TOKENS": 2048, "TRAIN_SEQ_LEN": 128, "MICRO_BATCHES": 1,
    "VAL_BATCH_SIZE": 8192, "VAL_MAX_TOKENS": 8192, "VAL_LOSS_EVERY": 0, "TRAIN_LOG_EVERY": 10,
    "TORCH_COMPILE": 0, "EMBED_BITS": 6, "CPU_THREADS": 1,
}
SMOKE_FIDELITIES = [
    {"ITERATIONS": 10, "WARMDOWN_ITERS": 3},
    {"ITERATIONS": 30, "WARMDOWN_ITERS": 9},
]
SMOKE_BUDGET_BYTES = 200_000
SMOKE_POINTS_TO_EVALUATE = [{"NUM_LAYERS": 2, "MODEL_DIM": 32, "MLP_MULT": 2.0, "MLP_BITS": 6}]


def smoke_space(trial):
    bits = trial.suggest_categorical("MLP_BITS", [4, 6, 8])
    return {
        "NUM_LAYERS": trial.suggest_int("NUM_LAYERS", 1, 3),
        "MODEL_DIM": trial.suggest_int("MODEL_DIM", 32, 96, step=32),
        "MLP_MULT": trial.suggest_float("MLP_MULT", 1.0, 3.0, step=0.5),
        "MLP_BITS": bits,
        "ATTN_BITS": bits,
    }
