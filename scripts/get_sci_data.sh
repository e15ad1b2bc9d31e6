#!/usr/bin/env bash
# SCI benchmarks and masks into data/sci (what configs/revsci*.yaml and configs/gap_tv.yaml read).
#   bash scripts/get_sci_data.sh [SRC]
# SRC: a folder laid out like ../shared/data/sci (*_cacti.mat + masks/*.mat), copied as is;
# default ../shared/data/sci when it exists. Otherwise the files are downloaded from the
# RevSCI-net release (BoChenGroup/RevSCI-net: train/mask.mat, test/{traffic,runner8,drop8}_cacti.mat)
# and checked against their SHA-1. Files already present are kept; every file is written under a
# temporary name and renamed when complete.
set -euo pipefail
source "$(dirname "$0")/env.sh"
DEST="${SCI_DATA_DIR:-$ROOT/data/sci}"   # SCI_DATA_DIR: another destination
SRC="${1:-$ROOT/../shared/data/sci}"
mkdir -p "$DEST/masks"

put() {  # put SOURCE_FILE DEST_FILE: atomic copy unless present
    [ -f "$2" ] && { echo "keep $2"; return; }
    cp "$1" "$2.part" && mv "$2.part" "$2" && echo "copied $2"
}

if [ -d "$SRC" ]; then
    for f in "$SRC"/*.mat; do [ -e "$f" ] && put "$f" "$DEST/$(basename "$f")"; done
    for f in "$SRC"/masks/*.mat; do [ -e "$f" ] && put "$f" "$DEST/masks/$(basename "$f")"; done
    exit 0
fi

BASE="${SCI_DATA_URL:-https://raw.githubusercontent.com/BoChenGroup/RevSCI-net/master}"
fetch() {  # fetch URL_PATH DEST_FILE SHA1
    [ -f "$2" ] && { echo "keep $2"; return; }
    echo "download $BASE/$1"
    "$PYTHON" - "$BASE/$1" "$2" "$3" <<'PY'
import hashlib, os, sys, urllib.request
url, dest, sha1 = sys.argv[1:]
try:
    data = urllib.request.urlopen(url, timeout=60).read()
except OSError as err:
    sys.exit(f'cannot download {url}: {err}. Get the file by hand and put it at {dest}, '
             f'or pass a folder with the files: bash scripts/get_sci_data.sh /path/to/sci')
if hashlib.sha1(data).hexdigest() != sha1:
    sys.exit(f'{url}: SHA-1 {hashlib.sha1(data).hexdigest()} is not the expected {sha1}')
with open(dest + '.part', 'wb') as f:
    f.write(data)
os.replace(dest + '.part', dest)
PY
}
fetch train/mask.mat "$DEST/masks/revsci_train_mask.mat" 2c143075c2f2e4e178684aee1daa0f75df416613
fetch test/traffic_cacti.mat "$DEST/traffic48_cacti.mat" c94466f808850dea2686551acc22697138390c69
fetch test/runner8_cacti.mat "$DEST/runner8_cacti.mat" b52627b4e19ea51c5efc9c67084a145fd7d7f6ff
fetch test/drop8_cacti.mat "$DEST/drop8_cacti.mat" 805822c16a15ff8b78629846d7f7da4bcb771df0
