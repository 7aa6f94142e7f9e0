#!/usr/bin/env bash
# Set up, then open the workbench on the bundled example project with the embedded defaults
# (SQLite under $VHTUI_HOME, the local runner). The first time, a few executions are run first
# (preprocess -> train twice -> evaluate), so nothing is empty on first sight.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export VHTUI_HOME=${VHTUI_HOME:-$PWD/.demo-home}
VHTUI=$PWD/.venv/bin/vhtui
cd examples/quickstart
if ! "$VHTUI" exec list --json 2>/dev/null | grep -q '"counter"'; then
    echo "demo: a first few executions of examples/quickstart, so that nothing is empty (state in $VHTUI_HOME)"
    "$VHTUI" run preprocess --title "synthetic data" --follow
    "$VHTUI" run train --epochs=12 --learning-rate=0.3 --title "first model" --follow
    "$VHTUI" run train --epochs=20 --learning-rate=0.01 --optimizer=momentum --title "momentum" --follow
    "$VHTUI" run evaluate --title "score it" --follow
fi
echo "demo: opening the workbench (? lists the keys, q quits)"
exec "$VHTUI"
