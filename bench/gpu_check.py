"""The trainer's CUDA path in one short, prepared run: python bench/gpu_check.py [--steps N]

Why: every test here runs on CPU, so the CUDA path of `pgolf/train_gpt.py` (bf16 autocast,
`torch.compile`, NCCL-free single-GPU torchrun) has to be checked the first time a GPU is at
hand, in a few minutes of lent device time. This runs the public baseline (9 x 512, sp1024) and
the expressible seed #215 (11 layers, low-rank Q r=192) for a fixed number of steps on one GPU,
on the bundled corpus (no network on a lent machine), and prints per configuration: ms/step,
tokens/s, the peak GPU memory seen by `nvidia-smi`, the round-trip `val_bpb`, and the artifact
bytes `pgolf.size` predicted against those measured.

On a machine without CUDA it says so in one line and runs the same pipeline as a 2-step CPU
training of a tiny model, so the script itself stays tested (`tests/bench/test_gpu_check.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pgolf.data import prepare  # noqa: E402
from pgolf.size import predict  # noqa: E402

SCRIPT = ROOT / "pgolf" / "train_gpt.py"
CONFIGS = {
    "baseline 9x512": {"NUM_LAYERS": "9", "MODEL_DIM": "512", "NUM_HEADS": "8", "NUM_KV_HEADS": "4",
                       "MLP_MULT": "2"},
    "seed #215 11L q_rank 192": {"NUM_LAYERS": "11", "MODEL_DIM": "512", "NUM_HEADS": "8", "NUM_KV_HEADS": "4",
                                 "MLP_MULT": "3", "Q_RANK": "192", "MLP_BITS": "6", "ATTN_BITS": "6"},
}
GPU_RUN = {"TRAIN_BATCH_TOKENS": "131072", "TRAIN_SEQ_LEN": "1024", "MICRO_BATCHES": "1",
           "VAL_BATCH_SIZE": "131072", "VAL_MAX_TOKENS": "262144", "VAL_LOSS_EVERY": "0",
           "TRAIN_LOG_EVERY": "10", "WARMUP_STEPS": "5", "MAX_WALLCLOCK_SECONDS": "0", "TORCH_COMPILE": "1"}
CPU_RUN = {"NUM_LAYERS": "2", "MODEL_DIM": "64", "NUM_HEADS": "4", "NUM_KV_HEADS": "2", "MLP_MULT": "2",
           "TRAIN_BATCH_TOKENS": "2048", "TRAIN_SEQ_LEN": "128", "MICRO_BATCHES": "1", "VAL_BATCH_SIZE": "4096",
           "VAL_MAX_TOKENS": "4096", "VAL_LOSS_EVERY": "0", "TRAIN_LOG_EVERY": "1", "WARMUP_STEPS": "0",
           "WARMDOWN_ITERS": "1", "MAX_WALLCLOCK_SECONDS": "0", "TORCH_COMPILE": "0"}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class PeakMemory:
    """Samples `nvidia-smi` every 0.2 s while a training runs; `peak_mib` is the largest reading."""

    def __init__(self):
        self.peak_mib: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                      "--id=0"], capture_output=True, text=True, timeout=5).stdout
                value = int(out.strip().splitlines()[0])
                self.peak_mib = max(self.peak_mib or 0, value)
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass
            self._stop.wait(0.2)

    def __enter__(self) -> "PeakMemory":
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def run_one(name: str, env: dict[str, str], out_dir: Path, gpu: bool) -> dict:
    """Train one configuration; return its figures (raises RuntimeError with the log tail on failure)."""
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", str(SCRIPT)]
           if gpu else [sys.executable, str(SCRIPT)])
    full = {**os.environ, **env, "OUT_DIR": str(out_dir)}
    if not gpu:
        full["CUDA_VISIBLE_DEVICES"] = ""
    start = time.time()
    with PeakMemory() as memory:
        proc = subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{name}: exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-1500:]}")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    steps, train_ms = metrics.get("steps"), metrics.get("train_time_ms")
    ms = train_ms / steps if steps and isinstance(train_ms, (int, float)) else None  # as search.promote does
    predicted = predict(env).total_bytes
    return {"config": name, "device": "cuda" if gpu else "cpu", "steps": metrics.get("steps"),
            "ms_per_step": ms, "tokens_per_s": int(env["TRAIN_BATCH_TOKENS"]) / (ms / 1000) if ms else None,
            "peak_gpu_mib": memory.peak_mib, "val_bpb": metrics["val_bpb"], "bytes_total": metrics["bytes_total"],
            "predicted_bytes": predicted, "predicted_error": (predicted - metrics["bytes_total"]) / metrics["bytes_total"],
            "wall_s": time.time() - start}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/gpu_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="training steps per configuration on the GPU (default 200)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    gpu = cuda_available()
    data = prepare(1024, quiet=True)
    if gpu:
        runs = [(name, {**data.env(), **GPU_RUN, **cfg, "ITERATIONS": str(args.steps),
                        "WARMDOWN_ITERS": str(max(1, args.steps // 4))}) for name, cfg in CONFIGS.items()]
    else:
        print("cuda: not available here; skipping the GPU runs (run this on a machine with a GPU), "
              "checking the pipeline with a 2-step CPU training instead", flush=True)
        runs = [("tiny CPU check", {**data.env(), **CPU_RUN, "ITERATIONS": "2"})]
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        for i, (name, env) in enumerate(runs):
            row = run_one(name, env, Path(tmp) / f"run{i}", gpu)
            rows.append(row)
            ms = f"{row['ms_per_step']:.1f}" if row["ms_per_step"] is not None else "n/a"
            tps = f"{row['tokens_per_s']:,.0f}" if row["tokens_per_s"] is not None else "n/a"
            mem = f"{row['peak_gpu_mib']} MiB" if row["peak_gpu_mib"] is not None else "n/a"
            print(f"{name} [{row['device']}, {row['steps']} steps]: {ms} ms/step, {tps} tokens/s, peak GPU memory "
                  f"{mem}, round-trip val_bpb {row['val_bpb']:.4f}, bytes {row['bytes_total']:,} measured vs "
                  f"{row['predicted_bytes']:,} predicted ({row['predicted_error']:+.3%}), {row['wall_s']:.0f}s",
                  flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
