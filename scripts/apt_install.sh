#!/usr/bin/env bash
# apt_install.sh PACKAGE CHECK: install Debian's PACKAGE unless the shell test CHECK already succeeds; then require
# CHECK to succeed. Needs root or sudo.
set -euo pipefail
package="$1" check="$2"
if eval "$check" >/dev/null 2>&1; then
    exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "$package" >/dev/null
eval "$check" >/dev/null 2>&1 || { echo "error: $package installed but '$check' fails" >&2; exit 1; }
