# Sourced by the run_*.sh scripts: pick the Python (the project .venv when present) and config.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
# CONFIG: the config file. Training defaults to configs/edvr.yaml; eval / inference / freeze with a
# checkpoint default to the config.yaml its training stored beside it (else the built-in defaults,
# EDVR-M), and an explicit CONFIG must agree with that stored config on the model's keys.
CONFIG="${CONFIG:-}"
DEFAULT_TRAIN_CONFIG="$ROOT/configs/edvr.yaml"
CONFIG_ARGS=()
if [ -n "$CONFIG" ]; then CONFIG_ARGS=(--config-file "$CONFIG"); fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
usage_exit() { echo "usage: $1" >&2; exit 2; }
