"""pgolf.logs: tolerant parsing of upstream-style training logs, renamed final lines included."""

from __future__ import annotations

import math
from pathlib import Path

from pgolf.logs import FinalScore, SubmissionSize, TrainStep, ValStep, parse_line, parse_log


def test_parses_upstream_lines() -> None:
    train = parse_line("step:10/200 train_loss:4.5000 train_time:1234ms step_avg:123.40ms")
    assert train == TrainStep(step=10, total=200, train_loss=4.5, train_time_ms=1234.0)
    val = parse_line("step:200/200 val_loss:2.0500 val_bpb:1.2172 train_time:600000ms step_avg:43.50ms")
    assert isinstance(val, ValStep) and (val.step, val.val_loss, val.val_bpb) == (200, 2.05, 1.2172)
    size = parse_line("Total submission size int8+zlib: 15863489 bytes")
    assert size == SubmissionSize(label="int8+zlib", bytes_total=15863489)
    assert parse_line("Serialized model int8+zlib: 123 bytes") is None
    assert parse_line("warmup_step:3/20") is None


def test_renamed_final_lines_and_the_last_one_wins(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("\n".join([
        "step:1/2 train_loss:nan train_time:5ms step_avg:5.00ms",
        "final_int6_roundtrip val_loss:2.1 val_bpb:1.3 eval_time:100ms",  # not an exact line
        "final_int6_roundtrip_exact val_loss:2.00000000 val_bpb:1.20000000",
        "final_sliding_window_exact val_loss:1.90000000 val_bpb:1.10000000 stride:64",
        "Total submission size int6+zstd: 15000000 bytes",
        "\udcff garbage line",
    ]), errors="surrogateescape")
    summary = parse_log(log)
    assert [f.label for f in summary.finals] == ["final_int6_roundtrip_exact", "final_sliding_window_exact"]
    assert summary.final == FinalScore("final_sliding_window_exact", 1.9, 1.1)
    assert summary.bytes_total == 15000000
    assert summary.has_nan
    assert math.isnan(summary.train_steps[0].train_loss)


def test_slot_and_unknown_fields_tolerated() -> None:
    event = parse_line("final_slot_exact val_loss:1.5 val_bpb:0.9 extra:7 note:abc")
    assert event == FinalScore("final_slot_exact", 1.5, 0.9)
    event = parse_line("step:5 val_bpb:1.5 val_loss:2.5")  # no total, other order
    assert isinstance(event, ValStep) and event.total is None and event.val_loss == 2.5
