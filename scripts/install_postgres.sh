#!/usr/bin/env bash
# Install PostgreSQL's server programs (Debian's postgresql package) unless they are already there.
# Needed by the team tracking server (python -m pipelines.server) and its tests; needs root or sudo.
set -euo pipefail
exec bash "$(dirname "$0")/apt_install.sh" postgresql \
    'command -v initdb || compgen -G "/usr/lib/postgresql/*/bin/initdb"'
