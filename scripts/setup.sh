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
    echo "setup: creating .venv with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv .venv
fi
echo "setup: installing vhtui and its dependencies into .venv (a minute or two the first time)"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
# compat mode: a plain path in a .pth file, not an import hook, which cost every cold start about 20 ms
PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]" \
    --config-settings editable_mode=compat  # (the build backend warns that compat mode is transitional)
echo "setup: ready ($(.venv/bin/vhtui --version))"
