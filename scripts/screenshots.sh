#!/usr/bin/env bash
# Regenerate screenshots/*.svg and the snapshot tests' references from one list of scenarios.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/screenshots.py
.venv/bin/python -m pytest -q -p no:cacheprovider tests/tui/test_snapshots.py --snapshot-update
