"""An upstream-style training script for tests: no metrics.json, its own files in its working directory.

Like openai/parameter-golf's train_gpt.py it reads its settings from the environment, writes
`final_model.int8.ptz` and `logs/<RUN_ID>.txt` where it runs, reloads the model file after a pause
(the round trip) and prints the score computed from what it read back; so two of these sharing
a working directory score each other's models. Fails like upstream when its data is missing.
"""

import os
import sys
import time
import uuid

data_path = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
run_id = os.environ.get("RUN_ID", str(uuid.uuid4()))
iterations = int(os.environ.get("ITERATIONS", 4))
num_layers = int(os.environ.get("NUM_LAYERS", 9))
matrix_lr = float(os.environ.get("MATRIX_LR", 0.04))
tie_embeddings = bool(int(os.environ.get("TIE_EMBEDDINGS", "1")))
quality = float(os.getenv("X", "1.0"))
pause = float(os.environ.get("ROUNDTRIP_PAUSE", "0.0"))
eval_ms = int(os.environ.get("EVAL_MS", 1000))
fail_with = os.environ.get("FAIL_WITH", "")

if fail_with:
    raise RuntimeError(fail_with)
if os.environ.get("REQUIRE_DATA") == "1" and not os.path.isdir(data_path):
    raise FileNotFoundError(f"No files found for pattern: {data_path}/fineweb_train_*.bin")

os.makedirs("logs", exist_ok=True)
log = open(f"logs/{run_id}.txt", "w")


def log0(msg: str) -> None:
    print(msg, flush=True)
    log.write(msg + "\n")


for step in range(1, iterations + 1):
    log0(f"step:{step}/{iterations} train_loss:{3.0 / step + quality:.4f} train_time:{step * 100}ms step_avg:100.00ms")
bpb = (quality - 3.0) ** 2 + 1.0
with open("final_model.int8.ptz", "w") as f:  # in the working directory, as upstream does
    f.write(repr(bpb))
log0(f"Total submission size int8+zlib: {9000 + num_layers} bytes")
time.sleep(pause)
with open("final_model.int8.ptz") as f:
    read_back = float(f.read())
log0(f"final_int8_zlib_roundtrip val_loss:{read_back * 0.7:.4f} val_bpb:{read_back:.4f} eval_time:{eval_ms}ms")
log0(f"final_int8_zlib_roundtrip_exact val_loss:{read_back * 0.7:.8f} val_bpb:{read_back:.8f}")
sys.exit(0)
