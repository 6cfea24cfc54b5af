#!/usr/bin/env bash
# One prepared device check (see bench/gpu_check.py): the trainer's CUDA path on one GPU,
# baseline and seed #215 for a fixed number of steps; on a machine without CUDA, one line and a
# 2-step CPU check of the same pipeline. Usage: bash bench/gpu_check.sh [--steps N] [--json F]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || PY=python3
exec "$PY" bench/gpu_check.py "$@"
