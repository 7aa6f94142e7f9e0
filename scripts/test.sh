#!/usr/bin/env bash
# Set everything up on a fresh machine and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "$(id -u)" = 0 ] || [ -n "${CI:-}" ]; then
    if ! command -v bwrap >/dev/null; then  # local runs' own /valohai (runners/sandbox.py); in CI it must be there
        echo "test: installing bubblewrap"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
    fi
    bash scripts/docker-setup.sh  # the Docker tests run for real (in CI they fail, never skip, without it)
fi
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
