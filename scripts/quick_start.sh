#!/usr/bin/env bash
# The quick start: set up, build the offline sample dataset from real bundled clips, train a small
# EDVR on CPU, evaluate it against bicubic upsampling, restore a video, freeze + export ONNX; then
# video SCI on the bundled benchmarks (data/sci): GAP-TV, and a small RevSCI trained for a few
# minutes, their tables side by side.
#   bash scripts/quick_start.sh            (about 20 minutes on a 2-core CPU)
# Environment: STEPS (EDVR training steps, default from configs/edvr_quickstart.yaml), OUT (output
# dir), SCI_MINUTES (RevSCI training minutes, default 4; 0 skips the SCI part).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh requirements-dev.txt
export PYTHON="$PWD/.venv/bin/python" CONFIG="$PWD/configs/edvr_quickstart.yaml"
OUT="${OUT:-outputs/edvr_quickstart}"
EXTRA=(output_dir "$OUT")
if [ -n "${STEPS:-}" ]; then EXTRA+=(solver.total_steps "$STEPS" "solver.periods=[$STEPS]"); fi
step() { echo; echo "=== $* ==="; }

step "1/7 sample dataset from bundled real clips (bikes: train, carphone: held out)"
if [ ! -f data/sample/meta.json ]; then
    "$PYTHON" scripts/prepare_video_dataset.py --source bikes --val-source carphone --out data/sample
else
    echo "data/sample exists; reusing it"
fi

step "2/7 train a small EDVR (rerunning resumes; log in $OUT/log.txt)"
bash scripts/run_1p_train.sh 0 1 "${EXTRA[@]}"

step "3/7 evaluate on the held-out clip: EDVR vs bicubic"
bash scripts/run_evaluation.sh 0 "$OUT/checkpoints" "${EXTRA[@]}"

step "4/7 restore a video file (no ground truth): frames + mp4 in $OUT/test/"
LR_VIDEO="$OUT/carphone_lr.mp4"
"$PYTHON" - "$LR_VIDEO" <<'PY'
import sys
from ascendcv.utils.video_io import read_frame_folder, write_video
frames = read_frame_folder('data/sample/images/005/blur4')
write_video(sys.argv[1], frames, fps=25)
print(f'wrote {sys.argv[1]} ({len(frames)} frames, {frames.shape[1]}x{frames.shape[2]})')
PY
bash scripts/run_inference.sh 0 "$OUT/checkpoints" inference.source="$LR_VIDEO" "${EXTRA[@]}"

step "5/7 freeze to a .pb and export ONNX (both checked against the TF model)"
bash scripts/run_freeze.sh "$OUT/checkpoints" "${EXTRA[@]}"

SCI_MINUTES="${SCI_MINUTES:-4}"
if [ "$SCI_MINUTES" != "0" ]; then
    SCI_OUT="${OUT}_sci"
    step "6/7 video SCI: GAP-TV on the bundled benchmarks (Traffic, Runner, Drop; offline)"
    CONFIG=configs/gap_tv.yaml bash scripts/run_evaluation.sh 0 "" output_dir "$SCI_OUT/gap_tv"

    step "7/7 video SCI: a small RevSCI trained for $SCI_MINUTES minutes, then evaluated"
    CONFIG=configs/revsci_small.yaml bash scripts/run_1p_train.sh 0 1 output_dir "$SCI_OUT/revsci" \
        solver.time_limit_minutes "$SCI_MINUTES"
    CONFIG=configs/revsci_small.yaml bash scripts/run_evaluation.sh 0 "$SCI_OUT/revsci/checkpoints" \
        output_dir "$SCI_OUT/revsci"
    "$PYTHON" - "$SCI_OUT" <<'PY'
import json, os, sys
rows = {tag: json.load(open(os.path.join(sys.argv[1], tag, 'eval', 'sci_report.json')))
        for tag in ('gap_tv', 'revsci')}
print(f'{"PSNR / SSIM":<12}{"GAP-TV":>18}{"RevSCI (small)":>18}')
for name in rows['gap_tv']['datasets']:
    cells = [f'{r["datasets"][name]["psnr"]:.2f} / {r["datasets"][name]["ssim"]:.3f}' for r in rows.values()]
    print(f'{name:<12}' + ''.join(f'{c:>18}' for c in cells))
PY
    echo "SCI grids (ground truth above reconstruction): $SCI_OUT/*/eval/sci_grid_*.png"
fi
echo
echo "Done. Report: $OUT/eval/report.json; frames: $OUT/test/; graphs: $OUT/EDVR.pb, $OUT/EDVR.onnx"
echo "Pictures: $OUT/eval/strips/*.png (bicubic | EDVR | ground truth, with PSNR)"
