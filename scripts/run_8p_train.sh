#!/usr/bin/env bash
# Multi-device training on N local devices (default 8), batch data.batch_size per device.
#   bash scripts/prepare_8p.sh [N]            (once; writes outputs/8p/)
#   bash scripts/run_8p_train.sh [N] [KEY VALUE ...]
# BACKEND=horovod (default; needs bash scripts/install_horovod.sh) launches horovodrun -np N --gloo;
# BACKEND=tf launches N tf.distribute MultiWorkerMirroredStrategy workers with TF_CONFIG.
# Rank 0 writes logs/checkpoints; rerunning the same command resumes. If any rank fails, the others
# are stopped and the script exits non-zero. Worker logs: OUT_8P/rank_<i>.log (tf backend).
set -euo pipefail
source "$(dirname "$0")/env.sh"
N=8
if [ $# -ge 1 ] && [[ "$1" =~ ^[0-9]+$ ]]; then N=$1; shift; fi
BACKEND="${BACKEND:-horovod}"
OUT_8P="${OUT_8P:-$ROOT/outputs/8p}"
[ -f "$OUT_8P/hostfile" ] && [ -f "$OUT_8P/tf_cluster.json" ] || bash "$ROOT/scripts/prepare_8p.sh" "$N" "$OUT_8P"
MAIN=("$PYTHON" "$ROOT/tools/main.py" --config-file "${CONFIG:-$DEFAULT_TRAIN_CONFIG}" --mode train rank_size "$N")

case "$BACKEND" in
horovod)
    HVDRUN="$(dirname "$PYTHON")/horovodrun"; [ -x "$HVDRUN" ] || HVDRUN=horovodrun
    command -v "$HVDRUN" >/dev/null || { echo "horovodrun not found: bash scripts/install_horovod.sh" >&2; exit 1; }
    exec "$HVDRUN" -np "$N" -H "localhost:$N" --gloo "${MAIN[@]}" solver.distributed horovod "$@"
    ;;
tf)
    WORKERS=$("$PYTHON" -c "import json,sys; w=json.load(open(sys.argv[1]))['worker']; print(len(w))" "$OUT_8P/tf_cluster.json")
    if [ "$WORKERS" != "$N" ]; then bash "$ROOT/scripts/prepare_8p.sh" "$N" "$OUT_8P"; fi
    CLUSTER=$(cat "$OUT_8P/tf_cluster.json")
    pids=()
    # TERM, then KILL after 3 s: a rank blocked in a collective whose peer died ignores TERM
    cleanup() {
        local p alive
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        for _ in 1 2 3 4 5 6; do
            alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
            [ $alive -eq 0 ] && return; sleep 0.5
        done
        for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    }
    trap cleanup EXIT INT TERM
    for ((i = N - 1; i >= 0; i--)); do
        export TF_CONFIG="{\"cluster\": $CLUSTER, \"task\": {\"type\": \"worker\", \"index\": $i}}"
        if [ "$i" -eq 0 ]; then
            "${MAIN[@]}" device_id 0 solver.distributed tf "$@" &
        else
            "${MAIN[@]}" device_id "$i" solver.distributed tf "$@" > "$OUT_8P/rank_$i.log" 2>&1 &
        fi
        pids+=($!)
    done
    status=0
    for _ in "${pids[@]}"; do
        if ! wait -n; then status=1; echo "run_8p_train: a worker failed; stopping the others" >&2; break; fi
    done
    if [ $status -ne 0 ]; then cleanup; wait || true; exit 1; fi
    ;;
*) echo "BACKEND must be horovod or tf, got '$BACKEND'" >&2; exit 2 ;;
esac
