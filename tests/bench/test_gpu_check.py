"""bench/gpu_check.sh on a machine without CUDA: one line says the GPU part is skipped, and the same
pipeline (training, log reading, size prediction) runs as a 2-step CPU training."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_runs_its_pipeline_on_cpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run bench/gpu_check.sh itself (minutes), not this CPU check")
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--json", str(tmp_path / "gc.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("cuda: not available here; skipping the GPU runs")
    [row] = json.loads((tmp_path / "gc.json").read_text())
    assert row["device"] == "cpu" and row["steps"] == 2 and row["ms_per_step"] > 0 and row["peak_gpu_mib"] is None
    assert abs(row["predicted_error"]) < 0.05 and 0 < row["val_bpb"] < 10
    assert f"bytes {row['bytes_total']:,} measured" in lines[1]
