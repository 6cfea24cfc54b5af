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
# torch through pip, which honours the machine's pip configuration (a local wheel, a CPU index); uv beside it.
# What pip installed (torch, sympy, networkx, ...) is compiled below on every core, as pip would one file at a
# time: with PYTHONDONTWRITEBYTECODE set, a package left as source is compiled again by every training
# process. As with pip, a file written for a newer Python (torch ships a few) stays source, hence `|| true`.
.venv/bin/python -m pip install -q --no-warn-conflicts --no-compile "$TORCH_SPEC" 'uv>=0.9'
.venv/bin/python -m compileall -qq -j 0 "$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    || true
# The rest in one resolution by uv (a consistent set; pip, one step at a time, took twice as long and left
# conflicts it only warned about), compiled to bytecode as pip would. The torch installed above is kept.
# - the project with its dev extra;
# - the peers of bench/search_efficiency.py (the `bench` extra: Ax and Syne Tune), which its tests run.
#   Syne Tune comes without its xgboost requirement, whose Linux wheel pulls a CUDA library
#   (nvidia-nccl-cu12, ~200 MB); xgboost-cpu provides the same module, and its other requirements come by
#   name. On a GPU pod `pip install -e '.[bench]'` is the plain way;
# - SkyPilot, whose own parser validates clusters/skypilot.yaml in the tests (the `clusters` extra).
UV=(.venv/bin/uv pip install -q --python .venv/bin/python --compile-bytecode)
"${UV[@]}" -e '.[dev]' 'ax-platform>=1.2' xgboost-cpu dill sortedcontainers statsmodels scikit-learn tqdm psutil \
    'skypilot>=0.14'
"${UV[@]}" --no-deps 'syne-tune>=0.16'
echo "set-up done: .venv is ready"
