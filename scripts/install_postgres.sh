#!/usr/bin/env bash
# Install PostgreSQL's server programs (Debian's postgresql package) unless they are already there.
# Needed by the team tracking server (python -m pipelines.server) and its tests; needs root or sudo.
set -euo pipefail
if command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || { echo "error: postgresql installed but no initdb" >&2; exit 1; }
