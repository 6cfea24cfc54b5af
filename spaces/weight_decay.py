"""Weight decay and learning rate: smaller weights quantize and compress better.

Records use Muon weight decay around 0.04 and AdamW 0.01; decay shrinks the
weights' range, which lowers the int-quantization error and the compressed
size. The architecture is the baseline's (stored in int6), so the byte cost
barely moves and the search is about val_bpb. Same conventions as tokenizer_width_depth.py.
"""

SCRIPT = "pgolf/train_gpt.py"
BUDGET_BYTES = 16_000_000
GPUS_PER_TRIAL = 8
CPUS_PER_TRIAL = 8

FIXED_ENV = {
    "DATA_PATH": "./data/datasets/fineweb10B_sp1024",
    "TOKENIZER_PATH": "./data/tokenizers/fineweb_1024_bpe.model",
    "VOCAB_SIZE": 1024,
    "ITERATIONS": 4950,
    "MAX_WALLCLOCK_SECONDS": 0,
    "WARMDOWN_ITERS": 1200,
    "MLP_BITS": 6,    # int6 weights as in the records: decay matters most at low bit widths,
    "ATTN_BITS": 6,   # and the int8 baseline does not fit 16 MB with our export
}

POINTS_TO_EVALUATE = [{"MUON_WEIGHT_DECAY": 0.0, "ADAM_WEIGHT_DECAY": 0.0, "MATRIX_LR": 0.04}]
EARLY_STOPPING = {"grace_period": 2, "reduction_factor": 3}


def space(trial):
    return {
        "MUON_WEIGHT_DECAY": trial.suggest_float("MUON_WEIGHT_DECAY", 0.0, 0.1, step=0.01),
        "ADAM_WEIGHT_DECAY": trial.suggest_float("ADAM_WEIGHT_DECAY", 0.0, 0.05, step=0.005),
        "MATRIX_LR": trial.suggest_float("MATRIX_LR", 0.01, 0.1, log=True),
    }


SMOKE_ENV = {
    "VOCAB_SIZE": 512, "NUM_LAYERS": 2, "MODEL_DIM": 64, "NUM_HEADS": 4, "NUM_KV_HEADS": 2,
    "ITERATIONS": 30, "WARMDOWN_ITERS": 10, "WARMUP_STEPS": 0,
    "TRAIN_BATCH_TOKENS": 4096, "TRAIN_SEQ_LEN": 128, "MICRO_BATCHES": 1,
    "VAL_BATCH_SIZE": 8192, "VAL_MAX_TOKENS": 16384, "VAL_LOSS_EVERY": 10, "TRAIN_LOG_EVERY": 10,
    "TORCH_COMPILE": 0, "MAX_WALLCLOCK_SECONDS": 0,
}
SMOKE_BUDGET_BYTES = 300_000
