#!/usr/bin/env bash
# Describe N local devices for multi-device training (default 8).
#   bash scripts/prepare_8p.sh [NUM_DEVICES] [OUT_DIR]     (OUT_DIR default: outputs/8p)
# Writes OUT_DIR/hostfile (Horovod: "localhost slots=N") and OUT_DIR/tf_cluster.json (the worker
# list of a TF_CONFIG for tf.distribute, free localhost ports). run_8p_train.sh reads both.
set -euo pipefail
source "$(dirname "$0")/env.sh"
N="${1:-8}"; OUT="${2:-$ROOT/outputs/8p}"
[[ "$N" =~ ^[1-9][0-9]*$ ]] || usage_exit "$0 [NUM_DEVICES>=1] [OUT_DIR]"
mkdir -p "$OUT"
echo "localhost slots=$N" > "$OUT/hostfile.tmp" && mv "$OUT/hostfile.tmp" "$OUT/hostfile"
"$PYTHON" - "$N" "$OUT/tf_cluster.json" <<'PY'
import json, os, socket, sys
n, path = int(sys.argv[1]), sys.argv[2]
socks, ports = [], []
for _ in range(n):  # ask the OS for free ports, keep them open until all are chosen
    s = socket.socket(); s.bind(('localhost', 0)); socks.append(s); ports.append(s.getsockname()[1])
for s in socks:
    s.close()
tmp = path + '.tmp'
with open(tmp, 'w') as f:
    json.dump({'worker': [f'localhost:{p}' for p in ports]}, f)
os.replace(tmp, path)
PY
echo "prepare_8p: $N local devices -> $OUT/hostfile, $OUT/tf_cluster.json"
