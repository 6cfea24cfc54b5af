"""Predicted artifact bytes of a configuration, before anything is trained, and a learner that
corrects the prediction from completed trials.

Why: a full trial costs 8 GPUs x 10+ minutes, so the search prunes configurations whose artifact
(code bytes + compressed model) would exceed the budget before launching them. A timid estimate
loses records, a loose one wastes money; this module makes the estimate measured and self-correcting.

How `predict(env)` works (our trainer, `pgolf/train_gpt.py`):
- the trainer's own model is built on the `meta` device (no weights allocated) from
  `Hyperparameters.from_env(env)`, so every state-dict entry's shape is exact;
- each entry gets the stored form `quantize_state_dict` gives it (per-row int<b> values with one
  fp16 scale per row, fp16 small tensors, fp32 control tensors);
- the trainer's container compresses every quantized tensor alone, all row scales in one frame and
  the float tensors in one frame per dtype, behind a JSON header (`tg.frame_layout`). The header is
  rebuilt here from the exact layout (exact up to the digits of the frame lengths), and each frame
  costs the compressor's fixed frame overhead plus its values;
- each stored value costs a *measured* number of compressed bytes, looked up in the calibration
  table `pgolf/size_calibration.json` by (compressor:level, storage, tensor role, row length),
  interpolated in log2(row length); the tied embedding's rate also in log2(vocab), from a grid of
  tied models (a short training leaves a larger vocabulary's embedding more compressible). The table
  is made by `python -m pgolf.size calibrate`: short real CPU trainings of the trainer, whose
  weights are quantized at every bit width and compressed with every compressor, strided row
  samples of each role alone;
- a whole frame is not exactly its row sample scaled up, so each frame's bytes are multiplied by a
  measured frame factor per (compressor, frame kind), interpolated in log2(frame values): real
  `serialize()` frames of calibration models over the rates' prediction;
- code bytes are the script's size.

`SizeLearner` wraps it for a search: `observe(env, measured_bytes_total)` after each completed
trial refits one correction factor per (storage, compressor), and `margin_bytes()` gives the
safety margin from the observed (out-of-sample) relative errors. For an external training script
the package cannot build, a `param_count(env)` function (from the space file) plus a
least-squares bytes-per-parameter fit over completed trials replaces the calibrated predictor.

    python -m pgolf.size NUM_LAYERS=11 MODEL_DIM=512 MLP_BITS=6
    python -m pgolf.size calibrate        # rebuild the calibration table (minutes)

Two regimes: the CPU calibration above describes weights after a short CPU training (`--smoke`);
weights trained 10 minutes on 8xH100 compress better, and `predict(env, regime=load_trained())`
prices them with `pgolf/size_trained.json`, fitted on the competition's records
(`python -m pgolf.size calibrate-records DIR`; `records`, `trained`, `calibrate_records`).

One module per concern: `layout` (stored form of each tensor, container layout), `calibration`
(the table), `prediction` (`predict`), `learner` (`SizeLearner`), `calibration_runs` (the
trainings and measurements behind the table), `records` (record folders as measurements),
`trained` (the trained-weights regime), `calibrate_records` (its fit), `cli`. Everything public is
re-exported here.
"""

from __future__ import annotations

from pgolf.size.calibration import Calibration, interp, load_calibration, merge_points
from pgolf.size.calibration_runs import (CALIBRATION_CONFIGS, EMBED_GRID_DIMS, EMBED_GRID_SHAPE, EMBED_GRID_VOCABS,
                                         FACTOR_BITS, FACTOR_MODELS, LR_MODELS, LR_POINTS, SAMPLE_VALUES,
                                         SHORT_TRAINING, calibrate, calibrate_lr, embedding_grid, frame_overhead,
                                         short_train, train_for_calibration)
from pgolf.size.cli import format_prediction, main, parse_settings
from pgolf.size.layout import (CALIBRATION_PATH, DEFAULT_SCRIPT, GROUPS, QUANT_BITS, Entry, container_layout,
                               frame_kind, layout_key, model_shapes, muon_updated, read_container_header,
                               stored_entries, tensor_role)
from pgolf.size.learner import (ERROR_WINDOW, MARGIN_FLOOR, MARGIN_SAFETY, MIN_ERRORS, MIN_FIT_TRIALS,
                                PRIOR_MARGIN_FRACTION, PRIOR_WEIGHT, RECENT_ERRORS, Observation, SizeLearner,
                                parse_format)
from pgolf.size.trained import TRAINED_PATH, TrainedRegime, load_trained
from pgolf.size.prediction import Prediction, code_bytes, frame_rates, predict, predict_bytes

__all__ = [
    "CALIBRATION_CONFIGS", "CALIBRATION_PATH", "Calibration", "DEFAULT_SCRIPT", "EMBED_GRID_DIMS",
    "EMBED_GRID_SHAPE", "EMBED_GRID_VOCABS", "ERROR_WINDOW", "Entry", "FACTOR_BITS", "FACTOR_MODELS", "GROUPS",
    "LR_MODELS", "LR_POINTS", "MARGIN_FLOOR", "MARGIN_SAFETY", "MIN_ERRORS", "MIN_FIT_TRIALS", "Observation",
    "PRIOR_MARGIN_FRACTION", "PRIOR_WEIGHT", "Prediction", "QUANT_BITS", "SAMPLE_VALUES", "SHORT_TRAINING",
    "SizeLearner", "calibrate", "calibrate_lr", "code_bytes", "container_layout", "embedding_grid",
    "format_prediction", "frame_kind", "frame_overhead", "frame_rates", "interp", "layout_key",
    "load_calibration", "main", "merge_points", "model_shapes", "muon_updated", "parse_settings", "predict",
    "RECENT_ERRORS", "TRAINED_PATH", "TrainedRegime", "load_trained", "parse_format",
    "predict_bytes", "read_container_header", "short_train", "stored_entries", "tensor_role",
    "train_for_calibration",
]
