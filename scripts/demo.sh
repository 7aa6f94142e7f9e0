#!/usr/bin/env bash
# Set up, then run the bundled example project end to end with the embedded defaults
# (SQLite under $VHTUI_HOME, the local runner): preprocess -> train -> evaluate.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export VHTUI_HOME=${VHTUI_HOME:-$PWD/.demo-home}
cd examples/quickstart
../../.venv/bin/vhtui run preprocess --title "synthetic data" --follow
../../.venv/bin/vhtui run train --epochs=12 --learning-rate=0.3 --title "first model" --follow
../../.venv/bin/vhtui run evaluate --title "score it" --follow
../../.venv/bin/vhtui exec list
