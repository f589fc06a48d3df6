#!/usr/bin/env bash
# Run the whole test suite (set-up included). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export MPLBACKEND=Agg
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
