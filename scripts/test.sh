#!/usr/bin/env bash
# Set everything up on a fresh machine and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
git config --global user.email >/dev/null 2>&1 || git config --global user.email "tests@vhtui.invalid"
git config --global user.name >/dev/null 2>&1 || git config --global user.name "vhtui tests"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
