#!/usr/bin/env bash
# Set up the project (scripts/setup.sh) and run the whole test suite on the real data in ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ -z "${FFN_DATA_DIR:-}" ] && [ -d ../shared/data ]; then export FFN_DATA_DIR="$(cd ../shared/data && pwd)"; fi
export FFN_THREADS="${FFN_THREADS:-2}"
exec "${FFN_VENV:-.venv}/bin/python" -m pytest "$@"
