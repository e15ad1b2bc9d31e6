#!/usr/bin/env bash
# Build and install Horovod 0.28.1 (TensorFlow + Gloo, CPU) into the project environment.
#   bash scripts/install_horovod.sh            (about 3.5 minutes on 2 cores; idempotent)
# Needed only for solver.distributed=horovod (bash scripts/run_8p_train.sh with the horovod
# backend); solver.distributed=tf needs nothing extra.
# Horovod 0.28.1 does not build against TF 2.21 as released: one GPU-only source file
# (xla_mpi_ops.cc) fails to compile, so it is removed from the CMake list before building.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
VERSION=0.28.1

if "$PY" - <<'PY' 2>/dev/null; then
import horovod, horovod.tensorflow as hvd
assert horovod.__version__ == '0.28.1'
hvd.init(); assert hvd.size() >= 1
PY
    echo "install_horovod: horovod $VERSION (TensorFlow, Gloo) already works with $PY"
    exit 0
fi

missing=()
for tool in cmake g++ make; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
    echo "install_horovod: missing build tools: ${missing[*]}." >&2
    echo "  Install them first, e.g.: apt-get install -y cmake g++ make   (or: pip install cmake)" >&2
    exit 1
fi
"$PY" -c 'import tensorflow' 2>/dev/null || {
    echo "install_horovod: TensorFlow is not importable with $PY; run bash scripts/setup_env.sh first" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
echo "install_horovod: downloading the horovod $VERSION source"
"$PY" -m pip download --quiet --no-deps --no-binary :all: "horovod==$VERSION" -d "$WORK"
tar -xzf "$WORK/horovod-$VERSION.tar.gz" -C "$WORK"
SRC="$WORK/horovod-$VERSION"
sed -i '/xla_mpi_ops.cc/d' "$SRC/horovod/tensorflow/CMakeLists.txt"
# build requirements that --no-build-isolation expects to find installed
"$PY" -m pip install --quiet "cloudpickle" "psutil" "pyyaml" "packaging" "cffi>=1.4.0" "wheel" "setuptools<81"
echo "install_horovod: building (TensorFlow + Gloo, no MPI/PyTorch/MXNet); this takes a few minutes"
HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 \
HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=gloo MAKEFLAGS="-j$(nproc)" \
    "$PY" -m pip install --no-build-isolation --no-cache-dir "$SRC" > "$WORK/build.log" 2>&1 || {
        tail -40 "$WORK/build.log" >&2; echo "install_horovod: build failed (log above)" >&2; exit 1; }
"$PY" -c 'import horovod.tensorflow as hvd; hvd.init(); print("install_horovod: horovod", __import__("horovod").__version__, "ready; rank", hvd.rank(), "of", hvd.size())'
