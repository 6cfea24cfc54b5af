#!/usr/bin/env bash
# Set up everything from nothing: a virtual environment in .venv with the
# project installed in editable mode. Safe to run again (it is quick then).
# TORCH_SPEC picks the torch build; the default is the CPU build this project
# tests with. On a GPU pod, e.g. TORCH_SPEC='torch>=2.4' for a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --no-warn-conflicts "$TORCH_SPEC"
.venv/bin/python -m pip install -q --no-warn-conflicts -e '.[dev]'
# The peers of bench/search_efficiency.py (the `bench` extra: Ax and Syne Tune), which its tests run.
# Syne Tune is installed without its xgboost requirement, whose Linux wheel pulls a CUDA library
# (nvidia-nccl-cu12, ~200 MB); xgboost-cpu provides the same module, and its other requirements come
# by name. On a GPU pod `pip install -e '.[bench]'` is the plain way.
.venv/bin/python -m pip install -q --no-warn-conflicts 'ax-platform>=1.2' xgboost-cpu dill sortedcontainers statsmodels \
    scikit-learn tqdm psutil
.venv/bin/python -m pip install -q --no-warn-conflicts --no-deps 'syne-tune>=0.16'
# SkyPilot's own parser validates clusters/skypilot.yaml in the tests (the `clusters` extra).
.venv/bin/python -m pip install -q --no-warn-conflicts 'skypilot>=0.14'
echo "set-up done: .venv is ready"
