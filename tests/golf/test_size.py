"""pgolf.size against the real trainer: real tiny trainings, real quantization and compressors."""

from __future__ import annotations

import json
import re
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import pgolf.train_gpt as tg
from pgolf import size

REPO = Path(__file__).resolve().parents[2]

# A smoke-space sized model (the smoke spaces lower KEEP_FLOAT_MAX_NUMEL so its matrices are quantized).
TINY = {"NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "MLP_MULT": "2",
        "KEEP_FLOAT_MAX_NUMEL": "1024"}
TOLERANCE = 0.03  # tiny models: a few KB, where a few hundred bytes of container noise are ~1 %


# the tests that read the two tiny runs share one xdist worker (--dist loadgroup), so they train once
ON_THE_TINY_RUNS = pytest.mark.xdist_group("size_tiny_runs")


@pytest.fixture(scope="module")
def tiny_runs(prepared_512, tmp_path_factory):
    """Two real short trainings (zstd int8, lzma mixed widths) with their envs and metrics."""
    runs = []
    for i, extra in enumerate(({"COMPRESSOR": "zstd"},
                               {"COMPRESSOR": "lzma", "MLP_BITS": "5", "ATTN_BITS": "6", "EMBED_BITS": "8"})):
        env = {**size.SHORT_TRAINING, **prepared_512.env(), **TINY, **extra}
        metrics = size.short_train(env, tmp_path_factory.mktemp(f"size{i}"), size.DEFAULT_SCRIPT, {})
        runs.append((env, metrics))
    return runs


def test_storage_rule_matches_trainer_quantization():
    env = {**TINY, "Q_RANK": "16", "BIGRAM_BUCKETS": "64", "BIGRAM_DIM": "32", "SMEAR_GATE": "1",
           "TIE_EMBEDDINGS": "0", "MLP_BITS": "5", "EMBED_BITS": "16", "KEEP_FLOAT_MAX_NUMEL": "2048"}
    hp = tg.Hyperparameters.from_env(env)
    state = tg.build_model(hp).state_dict()
    obj = tg.quantize_state_dict(state, hp)
    entries = {e.name: e for e in size.stored_entries(hp)}
    assert set(entries) == set(state)
    for name, e in entries.items():
        if name in obj["quant"]:
            assert e.storage == f"int{obj['quant'][name]['bits']}", name
        else:
            assert e.storage == {torch.float32: "fp32", torch.float16: "fp16"}.get(obj["float"][name].dtype, "raw"), name
        assert e.shape == tuple(state[name].shape)


def test_muon_rule_matches_the_trainers_optimizers():
    env = {**TINY, "Q_RANK": "16", "BIGRAM_BUCKETS": "64", "BIGRAM_DIM": "32", "SMEAR_GATE": "1", "TIE_EMBEDDINGS": "0"}
    hp = tg.Hyperparameters.from_env(env)
    model = tg.build_model(hp)
    muon = tg.build_optimizers(model, hp, torch.device("cpu"), 0, 1)[2]
    trained = {id(p) for g in muon.param_groups for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in trained}
    assert names and names == {e.name for e in size.stored_entries(hp) if size.muon_updated(e)}


def test_a_larger_matrix_lr_is_predicted_within_the_calibrated_range():
    cal = size.load_calibration()
    ck = cal.compressor_key("zstd", 22)
    lo, hi = min(size.LR_POINTS), max(size.LR_POINTS)
    assert cal.lr_factor_of(ck, "int6", tg.Hyperparameters().matrix_lr) == pytest.approx(1.0)
    for storage in (f"int{b}" for b in size.QUANT_BITS):
        xs = [x for x, _ in cal.lr_factor[ck][storage]]
        assert min(xs) == pytest.approx(math.log2(lo)) and max(xs) == pytest.approx(math.log2(hi))
    env = {"MLP_BITS": "6", "ATTN_BITS": "6"}
    assert size.predict({**env, "MATRIX_LR": str(hi * 4)}).total_bytes == size.predict({**env, "MATRIX_LR": str(hi)}).total_bytes


def test_predict_params_and_groups_are_exact():
    env = {"NUM_LAYERS": "11", "MODEL_DIM": "512", "MLP_MULT": "3", "MLP_BITS": "6", "ATTN_BITS": "6"}
    p = size.predict(env)
    with torch.device("meta"):
        model = tg.build_model(tg.Hyperparameters.from_env(env))
    assert p.params == tg.count_params(model)
    assert abs(sum(p.groups.values()) + p.container_bytes - p.model_bytes) <= len(p.groups)  # rounding
    assert p.total_bytes == p.model_bytes + p.code_bytes
    assert p.code_bytes == len(size.DEFAULT_SCRIPT.read_bytes())
    assert abs(sum(p.parts.values()) + p.container_bytes - p.model_bytes) <= 1


@pytest.mark.slow
@ON_THE_TINY_RUNS
def test_predicted_container_layout_is_the_real_one(tiny_runs):
    """The header the predictor rebuilds from shapes alone names the same tensors, parts, dtypes,
    shapes, frames and offsets as the trainer's real file, and its length differs only by digits."""
    cal = size.load_calibration()
    for env, m in tiny_runs:
        real = size.read_container_header(m["model_path"])
        hp = tg.Hyperparameters.from_env(env)
        _, _, records, frames = size.container_layout(size.layout_key(hp))  # what predict() uses
        assert records == real["tensors"] and len(frames) == len(real["frames"])
        p = size.predict(env)
        overhead = cal.overhead[p.compressor]
        real_header = len(json.dumps(real, separators=(",", ":")).encode())
        predicted_header = p.container_bytes - 8 - len(frames) * overhead
        assert abs(predicted_header - real_header) <= len(frames), (predicted_header, real_header)


@ON_THE_TINY_RUNS
def test_predict_matches_real_training(tiny_runs):
    for env, m in tiny_runs:
        p = size.predict(env)
        assert p.code_bytes == m["bytes_code"]
        assert abs(p.total_bytes - m["bytes_total"]) / m["bytes_total"] < TOLERANCE, (env, p, m["bytes_total"])


def test_fewer_bits_predict_fewer_bytes():
    sizes = [size.predict({"MLP_BITS": str(b), "ATTN_BITS": str(b), "EMBED_BITS": str(b)}).model_bytes
             for b in size.QUANT_BITS]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


@ON_THE_TINY_RUNS
def test_learner_moves_toward_measurement_and_margin_reacts(tiny_runs, tmp_path):
    learner = size.SizeLearner()
    env, m = tiny_runs[0]
    before = learner.predict_bytes(env)
    assert learner.margin_fraction == size.PRIOR_MARGIN_FRACTION
    err = learner.observe(env, m["bytes_total"])
    assert err == pytest.approx((m["bytes_total"] - before) / before)
    after = learner.predict_bytes(env)
    assert abs(after - m["bytes_total"]) < abs(before - m["bytes_total"]) or after == m["bytes_total"]
    # three observations of a model that is larger than predicted: the margin follows the error
    env2, m2 = tiny_runs[1]
    inflated = int(learner.predict_bytes(env2) * 1.05)
    for _ in range(3):
        learner.observe(env2, inflated)
    assert len(learner.errors) == 4 and len(learner.loo_errors) == 4
    # each trial predicted by the fit made without it (the first, unlike the rest, surprises it), and
    # the last errors as they happened
    recent = learner.loo_errors + learner.learned_errors[-size.RECENT_ERRORS:]
    assert learner.learned_errors == pytest.approx(learner.errors[1:])  # the first was the calibration's alone
    assert learner.margin_fraction == pytest.approx(size.MARGIN_SAFETY * max(map(abs, recent)))
    assert learner.margin_fraction > size.MARGIN_FLOOR
    prune, predicted, margin = learner.prune(env2, budget=learner.predict_bytes(env2) + 1)
    assert prune and margin == learner.margin_bytes(predicted) > 0
    path = tmp_path / "size_learner.json"
    learner.save(path)
    again = size.SizeLearner.load(path)
    assert again.predict_bytes(env2) == learner.predict_bytes(env2)
    assert again.margin_fraction == learner.margin_fraction
    # a consistent over-prediction the corrections have learned: the margin forgives the errors made
    # before (they stay in `errors`), and follows what the corrected predictor still gets wrong
    shrinking = size.SizeLearner()
    for _ in range(size.MIN_ERRORS + 2):
        shrinking.observe(env2, int(size.predict(env2).total_bytes * 0.97))
    assert all(e < 0 for e in shrinking.errors) and abs(shrinking.errors[0]) > 0.025
    assert shrinking.margin_fraction < size.MARGIN_SAFETY * abs(shrinking.errors[0]) / 2
    assert json.loads(path.read_text())["corrections"]


def test_external_script_fit_from_trials():
    def param_count(env):
        return {"body": int(env["N"]) * 1000, "embed": 5000}

    script = size.DEFAULT_SCRIPT
    learner = size.SizeLearner(script=script, param_count=param_count)
    code = len(script.read_bytes())
    assert learner.predict(env={"N": "10"}) is None
    assert learner.prune({"N": "10"}, budget=1)[0] is False  # no fit yet: never prune
    bytes_per_param, overhead = 0.7, 3000  # the "script" stores params at 0.7 B each plus a header
    for n in (10, 20, 40):
        learner.observe({"N": str(n)}, code + int(bytes_per_param * (n * 1000 + 5000) + overhead))
    predicted = learner.predict_bytes({"N": "80"})
    truth = code + bytes_per_param * (80 * 1000 + 5000) + overhead
    assert abs(predicted - truth) / truth < 0.001
    with pytest.raises(ValueError, match="PARAM_COUNT"):
        size.SizeLearner(param_count=lambda env: -1).observe({"N": "1"}, 10)


def test_cli_prints_breakdown(capsys):
    """The command predicts trained weights (the records' regime); --smoke the CPU calibration's."""
    from pgolf.size.trained import load_trained

    env = {"NUM_LAYERS": "3", "MODEL_DIM": "128", "COMPRESSOR": "lzma"}
    assert size.main([f"{k}={v}" for k, v in env.items()]) == 0
    out = capsys.readouterr().out
    trained = size.predict(env, regime=load_trained())
    assert f"predicted total {trained.total_bytes} bytes" in out and "trained weights" in out
    for label in ("embeddings", "attention", "MLP", "other", "container", "code"):
        assert re.search(rf"^\s+{label}\s+\d+ bytes", out, re.M), label
    assert size.main(["--smoke", *[f"{k}={v}" for k, v in env.items()]]) == 0
    out = capsys.readouterr().out
    cpu = size.predict(env)
    assert f"predicted total {cpu.total_bytes} bytes" in out and "--smoke" in out
    assert cpu.total_bytes != trained.total_bytes


@pytest.mark.parametrize("args,named", [(["NUM_LAYERS"], "KEY=VALUE"), (["num_layers=3"], "KEY=VALUE"),
                                        (["NUM_LAYERS=x"], "NUM_LAYERS"), (["COMPRESSOR=bzip2"], "COMPRESSOR")])
def test_cli_bad_setting_one_line_error(args, named):
    proc = subprocess.run([sys.executable, "-m", "pgolf.size", *args], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and named in lines[0]


def test_tied_embedding_rate_is_interpolated_between_calibrated_vocabularies():
    cal = size.load_calibration()
    ck = cal.compressor_key("zstd", 22)
    assert size.tensor_role("tok_emb.weight", tied=True, vocab=8192) == "tok_emb.weight@V8192"
    assert size.tensor_role("tok_emb.weight", tied=False, vocab=8192) == "tok_emb.weight@untied"
    assert {f"tok_emb.weight@V{v}" for v in size.EMBED_GRID_VOCABS} <= set(cal.rates[ck]["int6"])
    assert cal.meta["embedding_grid"] == size.embedding_grid()
    for d in size.EMBED_GRID_DIMS:
        lo, hi = (cal.value_bytes(ck, "int6", f"tok_emb.weight@V{v}", d) for v in (2048, 4096))
        mid = cal.value_bytes(ck, "int6", "tok_emb.weight@V3000", d)
        assert min(lo, hi) <= mid <= max(lo, hi) and lo != hi
    entries = {e.name: e for e in size.stored_entries(tg.Hyperparameters.from_env({"VOCAB_SIZE": "4096"}))}
    assert entries["tok_emb.weight"].role == "tok_emb.weight@V4096"


@pytest.mark.slow
def test_calibration_runs_end_to_end_on_tiny_models(tmp_path):
    """`calibrate` + `calibrate_lr` on tiny real trainings (the shipped table takes ~25 minutes)."""
    shape = {"NUM_LAYERS": "1", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "MLP_MULT": "2"}
    configs = ({"VOCAB_SIZE": "512", "MODEL_DIM": "64", **shape}, {"VOCAB_SIZE": "512", "MODEL_DIM": "32", **shape})
    grid = [{"VOCAB_SIZE": "1024", "MODEL_DIM": "64", **shape}]
    out = tmp_path / "calibration.json"
    quiet = lambda m: None  # noqa: E731
    cal = size.calibrate(out, configs=configs, factor_models=(0,), factor_bits=(6,), grid=grid, log=quiet)
    int6 = cal.rates["zstd:22"]["int6"]
    assert {"tok_emb.weight@V512", "tok_emb.weight@V1024", "*"} <= set(int6) and cal.meta["embedding_grid"] == grid
    assert set(cal.factor["zstd:22"]) >= {"int6", "scale"}
    # the MATRIX_LR factor over two models (one reused from `trained`, one trained again)
    trained = {0: size.train_for_calibration(0, configs[0], str(tmp_path), quiet)}
    cal = size.calibrate_lr(out, models=(0, 1), lrs=(0.1,), configs=configs, log=quiet, trained=trained)
    for ck in ("zstd:22", "lzma:9", "zlib:9"):
        xs = [x for x, _ in cal.lr_factor[ck]["int6"]]
        assert xs == pytest.approx(sorted([math.log2(tg.Hyperparameters().matrix_lr), math.log2(0.1)]))
    env = {**configs[0], "MATRIX_LR": "0.1", "MLP_BITS": "6", "ATTN_BITS": "6", "EMBED_BITS": "6",
           "KEEP_FLOAT_MAX_NUMEL": "1024"}
    assert size.predict(env, calibration=size.Calibration.load(out)).total_bytes > size.code_bytes()


def test_calibration_table_records_how_it_was_made():
    cal = size.load_calibration()
    assert cal.meta["made_by"] == "python -m pgolf.size calibrate"
    for c in ("zstd", "lzma", "zlib"):
        ck = cal.compressor_key(c, tg.COMPRESSORS[c][2])
        assert {f"int{b}" for b in size.QUANT_BITS} | {"fp16", "fp32"} <= set(cal.rates[ck])
        rates = [cal.value_bytes(ck, f"int{b}", "*", 512) for b in size.QUANT_BITS]
        assert rates == sorted(rates) and all(0 < r <= 1.0 + 1e-9 for r in rates) and not any(map(math.isnan, rates))


# ----------------------------------------------------------------------------- stored forms (pgolf.size.forms)

def test_form_factor_reads_the_table_and_interpolates_pruning():
    from pgolf.size.calibration import form_factor

    cal = size.Calibration(rates={}, scale={}, factor={},
                           forms={"zstd:22": {"gptq": {"int6": 1.02, "int8": 1.04}, "clip": {"int6": 1.1}}},
                           prune={"zstd:22": {"int6": [[0.0, 1.0], [0.1, 0.8]]}})
    assert form_factor(cal, "zstd:22", "int6", True, "gptq", False, 0.0) == pytest.approx(1.02)
    assert form_factor(cal, "zstd:22", "int7", True, "gptq", False, 0.0) in (pytest.approx(1.02), pytest.approx(1.04))
    assert form_factor(cal, "zstd:22", "int6", False, "gptq", False, 0.0) == 1.0      # GPTQ leaves embeddings alone
    assert form_factor(cal, "zstd:22", "int6", False, "gptq", True, 0.05) == pytest.approx(1.1 * 0.9)
    assert form_factor(cal, "zstd:22", "int6", True, "rtn", False, 0.0) == 1.0


def test_the_shipped_table_has_the_stored_forms_and_brotli():
    cal = size.load_calibration()
    for ck in ("zstd:22", "lzma:9", "zlib:9", "brotli:11"):
        assert {"gptq", "clip", "gptq+clip"} <= set(cal.forms[ck]) and "int5" in cal.forms[ck]["gptq"]
        assert [x for x, _ in cal.prune[ck]["int6"]] == [0.0, 0.01, 0.03, 0.1]
    assert cal.compressor_key("brotli", 11) == "brotli:11"
    base = {"NUM_LAYERS": "9", "MODEL_DIM": "512", "MLP_BITS": "5", "ATTN_BITS": "6"}
    rtn, gptq = size.predict(base), size.predict({**base, "QUANTIZER": "gptq"})
    assert gptq.groups["embed"] == rtn.groups["embed"]                                # embeddings keep RTN
    assert gptq.groups["mlp"] / rtn.groups["mlp"] == pytest.approx(cal.forms["zstd:22"]["gptq"]["int5"], rel=0.01)
    assert size.predict({**base, "COMPRESSOR": "brotli"}).model_bytes != rtn.model_bytes


def test_keep_float_layers_change_the_predicted_layout():
    base = {"NUM_LAYERS": "9", "MODEL_DIM": "512", "MLP_BITS": "6", "ATTN_BITS": "6"}
    plain, kept = size.predict(base), size.predict({**base, "KEEP_FLOAT_LAST": "2"})
    assert kept.params == plain.params and kept.parts["fp16"] > plain.parts.get("fp16", 0) + 2 * 512 * 256  # 2 x c_k
    assert kept.parts["int6"] < plain.parts["int6"]


@pytest.mark.slow
def test_calibrate_forms_end_to_end_on_a_tiny_model(tmp_path):
    from pgolf.size.forms import calibrate_forms

    out = tmp_path / "calibration.json"
    out.write_bytes(size.CALIBRATION_PATH.read_bytes())
    shape = {"VOCAB_SIZE": "512", "MODEL_DIM": "64", "NUM_LAYERS": "1", "NUM_HEADS": "4", "NUM_KV_HEADS": "2",
             "MLP_MULT": "2", "KEEP_FLOAT_MAX_NUMEL": "1024"}
    cal = calibrate_forms(out, models=(0,), configs=(shape,), log=lambda m: None)
    assert cal.meta["forms"]["models"] == [0] and size.Calibration.load(out).forms == cal.forms
    for ck in ("zstd:22", "brotli:11"):
        assert all(0.5 < r < 1.5 for r in cal.forms[ck]["gptq"].values())
    assert cal.rates["brotli:11"]["int6"]["*"] and cal.overhead["brotli:11"] == len(tg.compress(b"", "brotli", 11))
