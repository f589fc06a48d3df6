#!/usr/bin/env bash
# Install what the browser test (tests/end_to_end/test_ui_browser.py) needs: Debian's Chromium
# (/usr/bin/chromium) and the Python Playwright client in .venv. Playwright drives the
# system Chromium (executable_path), so no browser download of its own is needed.
# Idempotent and quick when both are present. Needs root (or sudo) for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
if [ ! -x "$PY" ]; then
    echo "install_browser.sh: $PY not found; run scripts/setup.sh first" >&2
    exit 1
fi

if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        chromium fonts-liberation fonts-dejavu-core >/dev/null
fi

if ! "$PY" -c 'import playwright.sync_api' 2>/dev/null; then
    "$PY" -m pip install --quiet 'playwright>=1.40,<2'
fi
