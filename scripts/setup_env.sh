#!/usr/bin/env bash
# Create (or reuse) the project virtualenv .venv and install the pinned requirements.
#   bash scripts/setup_env.sh [requirements-file]     (default: requirements-dev.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
REQ="${1:-requirements-dev.txt}"
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; assert sys.version_info[:2] >= (3, 10)' 2>/dev/null; then
    echo "setup_env: need Python >= 3.10 as '$PY' (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "setup_env: creating .venv with $("$PY" --version)"
    "$PY" -m venv .venv
fi
STAMP=".venv/.installed-$(sha1sum requirements.txt "$REQ" | sha1sum | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -r "$REQ"
    touch "$STAMP"
fi
echo "setup_env: .venv ready ($(.venv/bin/python -c 'import tensorflow as tf; print("tensorflow", tf.__version__)' 2>/dev/null))"
