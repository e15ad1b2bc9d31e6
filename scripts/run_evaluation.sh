#!/usr/bin/env bash
# Per-video PSNR/SSIM on the validation set.  bash scripts/run_evaluation.sh DEVICE_ID CKPT [KEY VALUE ...]
# CKPT: a TF checkpoint prefix or folder (e.g. outputs/edvr/checkpoints) or a frozen .pb; its stored
# config (output_dir/config.yaml) is used unless CONFIG is set. Any frame size (padded to the model's
# multiple); inference.tile=[0,H,W] inference.tile_overlap=[0,oh,ow] restores in tiles.
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 2 ] || usage_exit "$0 DEVICE_ID CKPT [KEY VALUE ...]"
DEVICE_ID=$1; CKPT=$2; shift 2
exec "$PYTHON" "$ROOT/tools/main.py" ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"} --mode eval \
    device_id "$DEVICE_ID" model.checkpoint "$CKPT" "$@"
