#!/usr/bin/env bash
# Data loading throughput, medfm vs the reference's torchvision + PIL pipeline, side by side
# on the same synthetic images at real sizes (APTOS2019: 2000x1500 RGB PNG; DDSM: 1024x1024
# 16-bit gray PNG), the reference params' train transforms, the same worker count and batch
# size. medfm's first epoch decodes (cold resize cache); later epochs read the cache.
#
# Usage: scripts/bench_data.sh [WORKERS] (default 2). Environment: N_IMAGES (default 160),
# BATCH (default 16), SPLIT (train or val, default train), MEDFM_BENCH_DIR (default
# /tmp/medfm-bench: the images, about 1 GB, are kept for reruns).
# Heavy: runs under flock /tmp/medfm-heavy.lock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
WORKERS="${1:-2}"
N="${N_IMAGES:-160}"
BATCH="${BATCH:-16}"
SPLIT="${SPLIT:-train}"
DIR="${MEDFM_BENCH_DIR:-/tmp/medfm-bench}"
PY=.venv/bin/python

if [ -z "${MEDFM_BENCH_LOCKED:-}" ]; then
  exec env MEDFM_BENCH_LOCKED=1 flock /tmp/medfm-heavy.lock "$0" "$@"
fi

cargo build --release --example bench_data >/dev/null
BIN=target/release/examples/bench_data
mkdir -p "$DIR"
[ -d "$DIR/APTOS2019" ] || "$BIN" synth --dataset APTOS2019 --out "$DIR" --n "$N" --width 2000 --height 1500
[ -d "$DIR/DDSM" ] || "$BIN" synth --dataset DDSM --out "$DIR" --n "$N" --width 1024 --height 1024

rate() { awk '{for (i = 1; i <= NF; i++) if ($i == "images/s") print $(i - 1)}'; }

summary=()
for ds in APTOS2019 DDSM; do
  params="$DIR/$ds.params.json"
  "$PY" - "$ds" "$DIR" "$BATCH" "$params" <<'EOF'
import json, sys
ds, data, batch, out = sys.argv[1:5]
p = json.load(open("configs/reference.json"))
p["dataset_params"].update(dataset=ds, data_location=data, cache_dir=f"{data}/cache-{ds}")
for k in ("trainloader", "valloader"):
    p["dataloader_params"][k]["batch_size"] = int(batch)
p["training_params"]["save_dir"] = f"{data}/out"
json.dump(p, open(out, "w"), indent=1)
EOF
  rm -rf "$DIR/cache-$ds"
  echo "== $ds, $SPLIT transforms, $WORKERS workers, batch $BATCH"
  rust=$("$BIN" run --params "$params" --split "$SPLIT" --workers "$WORKERS" --epochs 3 \
    --cache "$DIR/cache-$ds" --list-out "$DIR/$ds.items.tsv")
  echo "medfm:"; echo "$rust" | sed 's/^/  /'
  py=$("$PY" scripts/bench_data.py "$params" "$DIR/$ds.items.tsv" "$SPLIT" "$WORKERS" 2)
  echo "torchvision + PIL DataLoader(num_workers=$WORKERS):"; echo "$py" | sed 's/^/  /'
  first=$(echo "$rust" | head -1 | rate)
  cached=$(echo "$rust" | tail -n +2 | rate | awk '{s += $1} END {printf "%.1f", s / NR}')
  python=$(echo "$py" | rate | awk '{s += $1} END {printf "%.1f", s / NR}')
  summary+=("$(awk -v ds="$ds" -v p="$python" -v f="$first" -v c="$cached" 'BEGIN {
    printf "%-10s torchvision+PIL %7.1f img/s | medfm first epoch %7.1f img/s (%.1fx) | medfm cached %8.1f img/s (%.1fx)", ds, p, f, f / p, c, c / p }')")
done
echo
echo "Summary ($(nproc) CPU cores, $WORKERS workers; targets: first epoch >= 1.5x, cached >= 10x):"
printf '%s\n' "${summary[@]}"
