"""The trained-weights regime against the competition's real records (../shared/conformance/records):
every mapping checked by its parameter count, the public baseline within 1 %, the records the fit
never saw within 2 %, and the fit reproducible from the folders."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pgolf import size
from pgolf.size import records as rec
from pgolf.size.calibrate_records import calibrate_records, report_records
from pgolf.size.trained import load_trained

REPO = Path(__file__).resolve().parents[2]
RECORDS = REPO.parent / "shared" / "conformance" / "records"
needs_records = pytest.mark.skipif(not RECORDS.is_dir(), reason=f"{RECORDS} is absent (the competition's "
                                   "record logs come with the development machines, not with a user's clone)")
BASELINE_MODEL_BYTES = 15_815_847  # records/track_10min_16mb/2026-03-17_NaiveBaseline/train.log


@pytest.mark.records
@needs_records
def test_records_table_baseline_and_held_out(capsys):
    table = report_records([RECORDS])
    out = capsys.readouterr().out
    by = {r.folder: r for r in table}
    base = by["2026-03-17_NaiveBaseline"]
    assert base.real == BASELINE_MODEL_BYTES and abs(base.error) < 0.01
    held = [r for r in table if r.role == "held out"]
    assert {r.folder for r in held} == set(rec.HELD_OUT) and len(held) >= 3
    assert sum(abs(r.error) <= 0.02 for r in held) >= 0.8 * len(held)
    assert len(table) == len(rec.RECORD_SHAPES)
    assert "held out: " in out and "not used: 2026-03-21_11L_XSA4_EMA_PartialRoPE_LateQAT_1.1248" in out


@pytest.mark.records
@needs_records
def test_every_mapping_builds_the_logs_parameter_count():
    points, _ = rec.load_points([RECORDS])
    assert len(points) == len(rec.RECORD_SHAPES)
    for p in points:
        assert {r.model_params for r in p.runs} == {p.trainer_params}, p.shape.folder


@pytest.mark.records
@needs_records
def test_a_wrong_mapping_is_refused_in_one_line(monkeypatch):
    wrong = dataclasses.replace(rec.RECORD_SHAPES[0], env={**rec.RECORD_SHAPES[0].env, "NUM_LAYERS": "10"})
    monkeypatch.setattr(rec, "RECORD_SHAPES", (wrong,))
    with pytest.raises(ValueError, match=r"builds 18,897,488 parameters .* model_params:17,059,912; fix RECORD_SHAPES"):
        rec.load_points([RECORDS / "track_10min_16mb" / wrong.folder])


@pytest.mark.slow
@pytest.mark.records
@needs_records
def test_cli_records_table_and_bad_folder():
    proc = subprocess.run([sys.executable, "-m", "pgolf.size", "records", str(RECORDS)], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "2026-03-17_NaiveBaseline" in proc.stdout and "margin (largest under-prediction)" in proc.stdout
    bad = subprocess.run([sys.executable, "-m", "pgolf.size", "records", str(REPO / "no-such")], cwd=REPO,
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and bad.stderr.startswith("error:")


@pytest.mark.slow
@pytest.mark.records
@needs_records
def test_refit_reproduces_the_committed_regime(tmp_path):
    committed = load_trained()
    regime = calibrate_records([RECORDS], out=tmp_path / "trained.json", progress=lambda line: None)
    assert abs(regime.nu - committed.nu) / committed.nu < 0.02
    assert regime.external_margin == pytest.approx(committed.external_margin, abs=1e-3)
    assert regime.margin == pytest.approx(committed.margin, abs=1e-3) and regime.margin < 0.05
    assert set(regime.meta["held_out"]) == set(rec.HELD_OUT)


def test_the_fit_reads_the_tabulated_rates_simulating_only_what_it_asks():
    """The regime the fit of nu predicts with (`on_demand`) gives the numbers `build` tabulates, and
    simulates a storage only when a prediction asks for it."""
    from pgolf.size.trained import TrainedRegime

    lazy = TrainedRegime.on_demand(40.0, ckeys=("zlib:9",))
    full = TrainedRegime.build(40.0, ckeys=("zlib:9",), storages=("int6", "fp16"))
    assert not lazy.rates["zlib:9"]
    for row_len in (128, 700, 4096):
        assert lazy.value_bytes("zlib:9", "int6", row_len) == full.value_bytes("zlib:9", "int6", row_len)
    assert set(lazy.rates["zlib:9"]) == {"int6"}
    assert lazy.value_bytes("zlib:7", "fp16", 512) == full.value_bytes("zlib:7", "fp16", 512)  # nearest level
    assert set(lazy.rates["zlib:9"]) == {"int6", "fp16"}
    with pytest.raises(ValueError, match="storage int3 is not in the trained-weights table"):
        lazy.value_bytes("zlib:9", "int3", 512)


def test_trained_weights_compress_better_than_cpu_calibration():
    """What the records show: the CPU calibration over-predicts trained weights (+4 % on the baseline)."""
    from pgolf.size import predict

    env = dict(rec.BASE)
    cpu, trained = predict(env), predict(env, regime=load_trained())
    assert 0.93 < trained.model_bytes / cpu.model_bytes < 0.99


def test_external_prior_scales_with_parameters_and_width():
    regime = load_trained()
    six, eight = (regime.prior_model_bytes(20_000_000, b, "zstd:22") for b in (6, 8))
    assert six < eight and regime.prior_model_bytes(40_000_000, 6, "zstd:22") == pytest.approx(2 * six, rel=1e-6)


def test_an_external_script_is_priced_from_its_first_proposal(tmp_path):
    """PARAM_COUNT and an export format: the records' prior before any trial, with its measured margin;
    the bytes-per-parameter fit once two trials are in; without a format, no prediction (no pruning)."""
    from pgolf.size import SizeLearner

    script = tmp_path / "their_train.py"
    script.write_text("print('theirs')\n")
    regime = load_trained()
    count = lambda env: int(env["N"]) * 1_000_000  # noqa: E731
    learner = SizeLearner(script=script, param_count=count, regime=regime, export_format="int6+zstd")
    first = learner.predict({"N": "20"})
    assert first is not None and first.model_bytes == regime.prior_model_bytes(20_000_000, 6, "zstd:22")
    assert learner.margin_fraction == regime.external_margin
    assert learner.prune({"N": "40"}, 16_000_000)[0] and not learner.prune({"N": "10"}, 16_000_000)[0]
    code = script.stat().st_size
    for n in (10, 20, 30):
        learner.observe({"N": str(n)}, code + int(0.5 * n * 1_000_000))
    assert learner.fit is not None and learner.predict_bytes({"N": "28"}) == pytest.approx(code + 14_000_000, rel=1e-4)
    # the prior's -46 % misses are not the fit's: its margin is its own (leave-one-out errors ~0: the floor)
    assert learner.learned_errors == pytest.approx(learner.errors[2:]) and len(learner.learned_errors) == 1
    assert learner.margin_fraction == pytest.approx(size.MARGIN_FLOOR)
    learner.observe({"N": "12"}, code + int(0.6 * 12 * 1_000_000))  # a miss by the fit itself widens it
    assert learner.margin_fraction >= size.MARGIN_SAFETY * abs(learner.learned_errors[-1]) > regime.external_margin
    assert SizeLearner(script=script, param_count=count, regime=regime).predict({"N": "20"}) is None
    with pytest.raises(ValueError, match="int<bits>"):
        SizeLearner(script=script, param_count=count, regime=regime, export_format="quantized+brotli")
