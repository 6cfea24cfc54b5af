"""pgolf.logs: tolerant parsing of upstream-style training logs, renamed final lines included."""

from __future__ import annotations

import math
from pathlib import Path

from pgolf.logs import FinalScore, ModelParams, SerializedModel, SubmissionSize, TrainStep, ValStep, parse_line, parse_log


def test_parses_upstream_lines() -> None:
    train = parse_line("step:10/200 train_loss:4.5000 train_time:1234ms step_avg:123.40ms")
    assert train == TrainStep(step=10, total=200, train_loss=4.5, train_time_ms=1234.0)
    val = parse_line("step:200/200 val_loss:2.0500 val_bpb:1.2172 train_time:600000ms step_avg:43.50ms")
    assert isinstance(val, ValStep) and (val.step, val.val_loss, val.val_bpb) == (200, 2.05, 1.2172)
    size = parse_line("Total submission size int8+zlib: 15863489 bytes")
    assert size == SubmissionSize(label="int8+zlib", bytes_total=15863489)
    assert parse_line("Serialized model int8+zlib: 123 bytes (payload:17178912)") == SerializedModel("int8+zlib", 123)
    assert parse_line("Serialized model: 67224983 bytes") == SerializedModel("", 67224983)
    assert parse_line("model_params:17059912 (unique_layers:9 loops:1)") == ModelParams(17059912)
    # the script's own source echoed into its log is not a measurement
    assert parse_line('        log0(f"Serialized model int8+zlib: {quant_file_bytes} bytes "') is None
    assert parse_line("warmup_step:3/20") is None


def test_renamed_final_lines_and_the_last_one_wins(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("\n".join([
        "step:1/2 train_loss:nan train_time:5ms step_avg:5.00ms",
        "final_int6_roundtrip val_loss:2.1 val_bpb:1.3 eval_time:100ms",  # an evaluation line too
        "final_int6_roundtrip_exact val_loss:2.00000000 val_bpb:1.20000000",
        "final_sliding_window_exact val_loss:1.90000000 val_bpb:1.10000000 stride:64",
        "Total submission size int6+zstd: 15000000 bytes",
        "\udcff garbage line",
    ]), errors="surrogateescape")
    summary = parse_log(log)
    assert [f.label for f in summary.finals] == ["final_int6_roundtrip", "final_int6_roundtrip_exact",
                                                 "final_sliding_window_exact"]
    assert summary.final == FinalScore("final_sliding_window_exact", 1.9, 1.1)
    assert summary.bytes_total == 15000000
    assert summary.has_nan
    assert math.isnan(summary.train_steps[0].train_loss)


def test_slot_and_unknown_fields_tolerated() -> None:
    event = parse_line("final_slot_exact val_loss:1.5 val_bpb:0.9 extra:7 note:abc")
    assert event == FinalScore("final_slot_exact", 1.5, 0.9)
    event = parse_line("step:5 val_bpb:1.5 val_loss:2.5")  # no total, other order
    assert isinstance(event, ValStep) and event.total is None and event.val_loss == 2.5


def test_later_record_shapes() -> None:
    """Lines as the April records print them (space after the colon, no `step:` prefix)."""
    val = parse_line("4000/20000 val_loss: 2.6756 val_bpb: 1.1628")
    assert isinstance(val, ValStep) and (val.step, val.total, val.val_bpb) == (4000, 20000, 1.1628)
    train = parse_line("500/20000 train_loss: 2.5615 train_time: 0.8m tok/s: 8217810")
    assert isinstance(train, TrainStep) and train.train_time_ms == 48_000.0
    score = parse_line("quantized_ttt_phased val_loss:2.31944212 val_bpb:1.05989454 eval_time:508785ms")
    assert score == FinalScore("quantized_ttt_phased", 2.31944212, 1.05989454, 508785.0, False)
    diag = parse_line("diagnostic pre-quantization post-ema val_loss:2.3 val_bpb:1.06 eval_time:6718ms")
    assert isinstance(diag, FinalScore) and diag.diagnostic
    assert parse_line("pre-quantization post-ema val_loss:2.3 val_bpb:1.06 eval_time:6718ms").diagnostic
    assert parse_line("prequant val_loss:2.30000000 val_bpb:1.06000000").diagnostic  # our trainer
    # source code echoed into a log, and `=` progress lines, are not evaluations
    assert parse_line('logD(f"final_int6_roundtrip val_loss:{q_val_loss:.4f} val_bpb:{q_val_bpb:.4f}")') is None
    assert parse_line('    log0(f"final_sliding val_loss:{sw_loss:.8f} val_bpb:{sw_bpb:.8f} ")') is None
    assert parse_line("ttt_sliding:done val_loss=2.1 val_bpb=1.119230 elapsed=409.8s") is None


def test_score_rule_times_and_score_line() -> None:
    from pgolf.logs import parse_lines

    lines = [
        "step:100/200 train_loss:2.5 train_time:1000ms step_avg:10ms",
        "stopping_early: wallclock_cap train_time: 599592ms step: 4945/20000",
        "diagnostic quantized val_loss:2.5 val_bpb:1.20 eval_time:9000ms",
        "final_int6_sliding_window val_loss:2.4 val_bpb:1.1000 eval_time:76000ms",
        "final_int6_sliding_window_exact val_loss:2.40000000 val_bpb:1.10000001",
        "Total submission size int6+brotli: 15999533 bytes",
        "DIAGNOSTIC post_ema val_loss:2.0 val_bpb:1.00 eval_time:2000ms",  # after the score: still not it
    ]
    summary = parse_lines(lines)
    assert summary.final.label == "final_int6_sliding_window_exact"
    assert summary.final.val_bpb == 1.10000001
    assert summary.eval_seconds == 76.0  # the twin without _exact carries the time
    assert summary.train_seconds == 599.592 and summary.last_step == 4945
    assert summary.bytes_total == 15999533
    chosen = parse_lines(lines, score_line="diagnostic")
    assert chosen.final.val_bpb == 1.20 and chosen.eval_seconds == 9.0
    assert parse_lines(lines + ["total_eval_time:508.8s"]).eval_seconds == 508.8


def test_cli_prints_what_it_read(tmp_path: Path) -> None:
    import subprocess
    import sys

    log = tmp_path / "train_seed1.log"
    log.write_text("step:2/2 val_loss:2.0 val_bpb:1.3 train_time:50ms\n"
                   "Total submission size int8+zlib: 1234 bytes\n"
                   "final_int8_zlib_roundtrip val_loss:2.1 val_bpb:1.2500 eval_time:1500ms\n"
                   "final_int8_zlib_roundtrip_exact val_loss:2.10000000 val_bpb:1.25000000\n")
    out = subprocess.run([sys.executable, "-m", "pgolf.logs", str(log)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == (f"{log}: final_int8_zlib_roundtrip_exact val_loss 2.10000000 val_bpb 1.25000000 "
                                  "bytes 1234 train 0.1 s eval 1.5 s steps 2")
    bad = subprocess.run([sys.executable, "-m", "pgolf.logs", str(tmp_path / "nope.log")],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "is not a file" in bad.stderr
