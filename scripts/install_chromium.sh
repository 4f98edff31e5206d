#!/usr/bin/env bash
# Install Debian's chromium unless it is there: the results page's browser test (tests/pipelines/test_report_browser.py)
# loads the page in headless Chromium. Needs root or sudo.
set -euo pipefail
exec bash "$(dirname "$0")/apt_install.sh" chromium 'command -v chromium || command -v chromium-browser'
