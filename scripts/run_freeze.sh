#!/usr/bin/env bash
# Freeze a checkpoint to output_dir/EDVR.pb (+ EDVR.onnx).  bash scripts/run_freeze.sh CKPT [KEY VALUE ...]
# Options: data.eval_batch_size=-1 (None batch), model.input_format_dimension=4 ([N*D,H,W,C] input),
#          model.convert_output_to_uint8=True, data.eval_in_size=[180,320], export.onnx=False.
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 1 ] || usage_exit "$0 CKPT [KEY VALUE ...]"
CKPT=$1; shift 1
exec "$PYTHON" "$ROOT/tools/main.py" --config-file "$CONFIG" --mode freeze model.checkpoint "$CKPT" "$@"
