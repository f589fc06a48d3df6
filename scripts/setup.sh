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
# Debian's Chromium (and Playwright driving it) for the UI test; quick when present.
bash scripts/install_browser.sh
