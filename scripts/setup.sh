#!/usr/bin/env bash
# Create .venv (or $FFN_VENV) and install the project with its pinned dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${FFN_VENV:-.venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip="$venv/bin/python -m pip"
# torch first, alone: torchvision/torchaudio must resolve against exactly this build
$pip install --quiet "torch==2.9.1" "torchvision==0.24.1"
$pip install --quiet "torch==2.9.1" "torchaudio==2.9.1"
$pip install --quiet -e ".[test,bench,server]"
