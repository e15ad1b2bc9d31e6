#!/usr/bin/env bash
# Restore a video file or frame folder (no ground truth).  Frames -> output_dir/test/<clip>/.
#   bash scripts/run_inference.sh DEVICE_ID CKPT [inference.source PATH] [KEY VALUE ...]
# Config: the one stored with CKPT (unless CONFIG is set). Frames of any size; memory bounded by tiles:
#   inference.tile=[0,128,128] inference.tile_overlap=[0,20,20]  ([frames, height, width], 0 = whole)
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 2 ] || usage_exit "$0 DEVICE_ID CKPT [inference.source PATH] [KEY VALUE ...]"
DEVICE_ID=$1; CKPT=$2; shift 2
exec "$PYTHON" "$ROOT/tools/main.py" ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"} --mode inference \
    device_id "$DEVICE_ID" model.checkpoint "$CKPT" "$@"
