#!/usr/bin/env bash
# Run the demo: a mock proposal processed end to end, results shown.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export MPLBACKEND=Agg
exec .venv/bin/damnit-dagster demo "$@"
