#!/usr/bin/env bash
# Create .venv and install vhtui with its test extras. Idempotent; used by demo.sh, test.sh and CI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "vhtui needs Python 3.11 or newer (found: $("$PYTHON" --version 2>&1))" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# compat mode: a plain path in a .pth file, not an import hook, which cost every cold start about 20 ms
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" --config-settings editable_mode=compat
