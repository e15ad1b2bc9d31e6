#!/usr/bin/env bash
# Set up the environment and run the whole test suite (what CI runs).
#   bash scripts/run_tests.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh requirements-dev.txt
PYTHON=.venv/bin/python bash scripts/install_horovod.sh
export TF_CPP_MIN_LOG_LEVEL=2
exec .venv/bin/python -m pytest -q tests "$@"
