#!/usr/bin/env bash
# Download REDS, merge its validation clips into the training folders, and build the toolkit's
# REDS layout (images/<clip>/{truth,blur4} + sets/{train,val}.json).
#
#   bash scripts/prepare_reds_dataset.sh [ROOT]        # ROOT defaults to <repo>/data
#
# writes ROOT/REDS_raw (zips + extracted parts: several tens of GB) and ROOT/reds (symlinks into
# ROOT/REDS_raw; set REDS_COPY=1 to copy the frames instead). Every step can be re-run: finished
# downloads, regrouped clips and placed clip folders are skipped. Environment:
#   PYTHON      interpreter (default python3)
#   REDS_PARTS  parts to download (default: train_sharp train_sharp_bicubic val_sharp val_sharp_bicubic)
#   REDS_COPY   1 = copy frames into ROOT/reds instead of symlinking
# Offline: put the zips from https://seungjunnah.github.io/Datasets/reds.html into ROOT/REDS_raw.
set -euo pipefail
ROOT="${1:-}"
if [ -n "${ROOT}" ]; then
  case "${ROOT}" in /*) ;; *) ROOT="${PWD}/${ROOT}" ;; esac  # relative to the caller's folder
fi
cd "$(dirname "$0")/.."
ROOT="${ROOT:-data}"                                            # default: <repo>/data
PYTHON="${PYTHON:-python3}"
RAW="${ROOT}/REDS_raw"
OUT="${ROOT}/reds"
PARTS="${REDS_PARTS:-train_sharp train_sharp_bicubic val_sharp val_sharp_bicubic}"
LINK="--link"
if [ "${REDS_COPY:-0}" = "1" ]; then LINK=""; fi

echo "[1/3] downloading REDS (${PARTS}) into ${RAW}"
# shellcheck disable=SC2086
"${PYTHON}" scripts/download_REDS.py --root "${RAW}" --parts ${PARTS}
echo "[2/3] regrouping: val clips 000-029 -> train 240-269"
"${PYTHON}" scripts/regroup_reds_dataset.py --root "${RAW}"
echo "[3/3] building ${OUT}"
# shellcheck disable=SC2086
"${PYTHON}" scripts/make_reds_dataset.py --raw "${RAW}" --out "${OUT}" ${LINK}
echo "REDS ready: set data.data_dir ${OUT}"
