"""A fast stand-in for train_gpt.py, driven by environment variables, for search tests.

It prints upstream-style log lines, writes OUT_DIR/train.log and metrics.json,
and records what the search service gave it:
- every rank writes OUT_DIR/rank<R>.json with CUDA_VISIBLE_DEVICES and its
  start/stop times (to check GPU assignment and concurrency);
- FAKE_LAUNCH_LOG (if set): rank 0 appends one line per launch (to check that
  nothing is run twice).
Knobs: X (float, the "quality" parameter), FAKE_STEPS, FAKE_SLEEP (seconds per
step), FAKE_BYTES (artifact bytes, default from X), FAKE_CRASH=1, FAKE_NAN=1,
FAKE_NO_METRICS=1 (log only, like an upstream script), FAKE_KILL_WORKER=1 (SIGKILL the
process that launched it at step 2: a Ray worker dying under a healthy training, as on a lost node),
FAKE_HOLD (a path: while that file exists, every step waits, so a test can keep a search mid-way
for as long as its checks take, however slow the machine).
"""

import json
import os
import signal
import sys
import time

start = time.time()
out = os.environ.get("OUT_DIR", ".")
rank = int(os.environ.get("RANK", "0"))
x = float(os.environ.get("X", "1.0"))
steps = int(os.environ.get("FAKE_STEPS", "4"))
pause = float(os.environ.get("FAKE_SLEEP", "0.05"))
bytes_total = int(os.environ.get("FAKE_BYTES", str(int(5000 + 1000 * x))))
code = len(open(__file__, "rb").read())

if rank == 0 and os.environ.get("FAKE_LAUNCH_LOG"):
    with open(os.environ["FAKE_LAUNCH_LOG"], "a") as f:
        f.write(f"{os.environ.get('TRIAL_TAG', out)}\n")

log = open(os.path.join(out, "train.log"), "w") if rank == 0 else None


def emit(line: str) -> None:
    if rank != 0:
        return
    print(line, flush=True)
    log.write(line + "\n")
    log.flush()


hold = os.environ.get("FAKE_HOLD")
for step in range(1, steps + 1):
    time.sleep(pause)
    while hold and os.path.exists(hold):
        time.sleep(0.05)
    loss = float("nan") if os.environ.get("FAKE_NAN") == "1" and step >= 2 else 3.0 / step + x
    emit(f"step:{step}/{steps} train_loss:{loss:.4f} train_time:{step * 10}ms step_avg:10.00ms")
    if os.environ.get("FAKE_KILL_WORKER") == "1" and step == 2:
        os.kill(os.getppid(), signal.SIGKILL)
    if os.environ.get("FAKE_CRASH") == "1" and step == 2:
        print("Traceback (most recent call last):\nRuntimeError: fake crash", file=sys.stderr, flush=True)
        sys.exit(3)
    bpb = (x - 3.0) ** 2 + 1.0 + 1.0 / step
    emit(f"step:{step}/{steps} val_loss:{bpb * 0.7:.4f} val_bpb:{bpb:.4f} train_time:{step * 10}ms step_avg:10.00ms")

final = (x - 3.0) ** 2 + 1.0 + 1.0 / steps
emit(f"Total submission size int8+zlib: {bytes_total} bytes")
emit(f"final_int8_zlib_roundtrip_exact val_loss:{final * 0.7:.8f} val_bpb:{final:.8f}")
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"), "start": start,
               "stop": time.time(), "rank": rank}, f)
if rank == 0 and os.environ.get("FAKE_NO_METRICS") != "1":
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({"val_loss": final * 0.7, "val_bpb": final, "bytes_total": bytes_total,
                   "bytes_code": code, "bytes_model": bytes_total - code, "steps": steps,
                   "train_time_ms": steps * 10}, f)
