#!/usr/bin/env bash
# Freeze a checkpoint to output_dir/<Model>.pb (+ .onnx).  bash scripts/run_freeze.sh CKPT [KEY VALUE ...]
# The config is the one stored with CKPT by training (output_dir/config.yaml) unless CONFIG is set.
# The graph takes any batch; options: export.batch_size=4 (static batch), model.input_format_dimension=4
#   ([N*D,H,W,C] input), model.convert_output_to_uint8=True, data.eval_in_size=[180,320] (-1 = any
#   size), export.onnx=False. data.eval_batch_size=-1 (None batch) still works: it is the default now.
set -euo pipefail
source "$(dirname "$0")/env.sh"
[ $# -ge 1 ] || usage_exit "$0 CKPT [KEY VALUE ...]"
CKPT=$1; shift 1
exec "$PYTHON" "$ROOT/tools/main.py" ${CONFIG_ARGS[@]+"${CONFIG_ARGS[@]}"} --mode freeze model.checkpoint "$CKPT" "$@"
