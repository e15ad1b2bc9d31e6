#!/usr/bin/env bash
# The quick start: set up, build the offline sample dataset from real bundled clips, train a small
# EDVR on CPU, evaluate it against bicubic upsampling, restore a video, freeze + export ONNX.
#   bash scripts/quick_start.sh            (about 12 minutes on a 2-core CPU)
# Environment: STEPS (training steps, default from configs/edvr_quickstart.yaml), OUT (output dir).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh requirements-dev.txt
export PYTHON="$PWD/.venv/bin/python" CONFIG="$PWD/configs/edvr_quickstart.yaml"
OUT="${OUT:-outputs/edvr_quickstart}"
EXTRA=(output_dir "$OUT")
if [ -n "${STEPS:-}" ]; then EXTRA+=(solver.total_steps "$STEPS" "solver.periods=[$STEPS]"); fi
step() { echo; echo "=== $* ==="; }

step "1/5 sample dataset from bundled real clips (bikes: train, carphone: held out)"
if [ ! -f data/sample/meta.json ]; then
    "$PYTHON" scripts/prepare_video_dataset.py --source bikes --val-source carphone --out data/sample
else
    echo "data/sample exists; reusing it"
fi

step "2/5 train a small EDVR (rerunning resumes; log in $OUT/log.txt)"
bash scripts/run_1p_train.sh 0 1 "${EXTRA[@]}"

step "3/5 evaluate on the held-out clip: EDVR vs bicubic"
bash scripts/run_evaluation.sh 0 "$OUT/checkpoints" "${EXTRA[@]}"

step "4/5 restore a video file (no ground truth): frames + mp4 in $OUT/test/"
LR_VIDEO="$OUT/carphone_lr.mp4"
"$PYTHON" - "$LR_VIDEO" <<'PY'
import sys
from ascendcv.utils.video_io import read_frame_folder, write_video
frames = read_frame_folder('data/sample/images/005/blur4')
write_video(sys.argv[1], frames, fps=25)
print(f'wrote {sys.argv[1]} ({len(frames)} frames, {frames.shape[1]}x{frames.shape[2]})')
PY
bash scripts/run_inference.sh 0 "$OUT/checkpoints" inference.source="$LR_VIDEO" "${EXTRA[@]}"

step "5/5 freeze to a .pb and export ONNX (both checked against the TF model)"
bash scripts/run_freeze.sh "$OUT/checkpoints" "${EXTRA[@]}"
echo
echo "Done. Report: $OUT/eval/report.json; frames: $OUT/test/; graphs: $OUT/EDVR.pb, $OUT/EDVR.onnx"
