#!/usr/bin/env bash
# Train on one device.  bash scripts/run_1p_train.sh DEVICE_ID NUM_DEVICES [KEY VALUE ...]
#   CONFIG=configs/edvr_l.yaml bash scripts/run_1p_train.sh 0 1 solver.total_steps 1000
# Rerunning the same command resumes from the newest checkpoint in output_dir/checkpoints.
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 2 ] || usage_exit "$0 DEVICE_ID NUM_DEVICES [KEY VALUE ...]"
DEVICE_ID=$1; NUM_DEVICES=$2; shift 2
exec "$PYTHON" "$ROOT/tools/main.py" --config-file "${CONFIG:-$DEFAULT_TRAIN_CONFIG}" --mode train \
    device_id "$DEVICE_ID" rank_size "$NUM_DEVICES" "$@"
