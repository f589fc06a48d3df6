#!/usr/bin/env bash
# Set up everything damnit-dagster needs on a fresh Debian machine with Python 3.11:
# a virtual environment in .venv with the project and its test dependencies.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
# Byte-compile the project: where PYTHONDONTWRITEBYTECODE is set (as on the CI machine)
# Python never caches it, and every command would compile its ~40 modules again (~0.5 s).
# Quick when up to date; a module edited later is compiled in memory as usual.
.venv/bin/python -m compileall -q damnit_dagster context_loader damnit_ctx.py
# Debian's libraries under Qt, for the test driving DAMNIT's GUI headless; quick when present.
if ! QT_QPA_PLATFORM=offscreen .venv/bin/python -c 'import PyQt6.QtWebEngineWidgets' 2>/dev/null
then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libegl1 libgl1 libgbm1 \
        libfontconfig1 libxkbcommon0 libxkbcommon-x11-0 libnss3 libasound2 libdbus-1-3 \
        libxcomposite1 libxdamage1 libxrandr2 libxtst6 libxkbfile1 libxcb-cursor0 >/dev/null
fi
# Debian's Chromium (and Playwright driving it) for the UI test; quick when present.
bash scripts/install_browser.sh
