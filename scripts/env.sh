# Sourced by the run_*.sh scripts: pick the Python (the project .venv when present) and config.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
CONFIG="${CONFIG:-$ROOT/configs/edvr.yaml}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
usage_exit() { echo "usage: $1" >&2; exit 2; }
