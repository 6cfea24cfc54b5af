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
.venv/bin/python -m pip install -q "$TORCH_SPEC"
.venv/bin/python -m pip install -q -e '.[dev]'
echo "set-up done: .venv is ready"
