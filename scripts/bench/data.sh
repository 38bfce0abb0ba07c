#!/usr/bin/env bash
# Data loading throughput, medfm vs the reference's torchvision + PIL pipeline, side by side
# on the same synthetic images at real sizes (APTOS2019: 2000x1500 RGB PNG; DDSM: 1024x1024
# 16-bit gray PNG; ISIC2019: 1024x1024 RGB JPEG), the reference params' train transforms, the
# same worker count and batch size. medfm's first epoch decodes (cold resize cache); later
# epochs read the cache.
#
# Each side runs ROUNDS times, alternating (medfm with a fresh cache: 3 epochs; Python: 2
# epochs), and the best epoch rate of each kind is reported: on a shared machine the best of
# several runs is the least disturbed measurement, for both sides alike.
#
# Usage: scripts/bench/data.sh [WORKERS] (default 2). Environment: N_IMAGES (default 160),
# BATCH (default 16), SPLIT (train or val, default train), ROUNDS (default 3), DATASETS
# (default "APTOS2019 DDSM ISIC2019"),
# MEDFM_BENCH_DIR (default /tmp/medfm-bench: the images, about 1 GB, are kept for reruns),
# CARGO_TARGET_DIR (another build, e.g. one whose JPEG decoder was built without nasm).
# Heavy: runs under flock /tmp/medfm-heavy.lock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/bench/ref_env.sh # the Python side's packages (setup.sh --ref when missing)
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
WORKERS="${1:-2}"
N="${N_IMAGES:-160}"
BATCH="${BATCH:-16}"
SPLIT="${SPLIT:-train}"
ROUNDS="${ROUNDS:-3}"
DATASETS="${DATASETS:-APTOS2019 DDSM ISIC2019}"
DIR="${MEDFM_BENCH_DIR:-/tmp/medfm-bench}"
PY=.venv/bin/python

if [ -z "${MEDFM_BENCH_LOCKED:-}" ]; then
  exec env MEDFM_BENCH_LOCKED=1 flock /tmp/medfm-heavy.lock "$0" "$@"
fi

cargo build --release --example bench_data >/dev/null
BIN="${CARGO_TARGET_DIR:-target}/release/examples/bench_data"
mkdir -p "$DIR"
# (Re)generate a dataset unless one of the right size is there.
make_data() { # NAME WIDTH HEIGHT
  if [ "$(cat "$DIR/$1.n" 2>/dev/null)" != "$N x $2 x $3" ]; then
    rm -rf "${DIR:?}/$1" "$DIR/$1.n"
    "$BIN" synth --dataset "$1" --out "$DIR" --n "$N" --width "$2" --height "$3"
    echo "$N x $2 x $3" > "$DIR/$1.n"
  fi
}
declare -A SIZE=([APTOS2019]="2000 1500" [DDSM]="1024 1024" [ISIC2019]="1024 1024")
for ds in $DATASETS; do
  [ -n "${SIZE[$ds]:-}" ] || { echo "error: DATASETS: no benchmark size for $ds" >&2; exit 2; }
  # shellcheck disable=SC2086
  make_data "$ds" ${SIZE[$ds]}
done

rate() { awk '{for (i = 1; i <= NF; i++) if ($i == "images/s") print $(i - 1)}'; }
best() { sort -g | tail -1; }

summary=()
for ds in $DATASETS; do
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
  echo "== $ds, $SPLIT transforms, $WORKERS workers, batch $BATCH, $ROUNDS rounds"
  rust_all=""; py_all=""
  for round in $(seq "$ROUNDS"); do
    rm -rf "$DIR/cache-$ds"
    rust=$("$BIN" run --params "$params" --split "$SPLIT" --workers "$WORKERS" --epochs 3 \
      --cache "$DIR/cache-$ds" --list-out "$DIR/$ds.items.tsv" | grep '^epoch')
    echo "medfm (round $round):"; echo "$rust" | sed 's/^/  /'
    py=$("$PY" scripts/bench/data.py "$params" "$DIR/$ds.items.tsv" "$SPLIT" "$WORKERS" 2)
    echo "torchvision + PIL DataLoader(num_workers=$WORKERS) (round $round):"; echo "$py" | sed 's/^/  /'
    rust_all+="$rust"$'\n'; py_all+="$py"$'\n'
  done
  first=$(echo "$rust_all" | grep '^epoch 0:' | rate | best)
  cached=$(echo "$rust_all" | grep -v '^epoch 0:' | grep . | rate | best)
  python=$(echo "$py_all" | grep . | rate | best)
  if [ -z "$first" ] || awk -v p="$python" 'BEGIN { exit !(p <= 0) }'; then
    echo "error: no images were loaded (is N_IMAGES large enough for batch $BATCH?)" >&2
    exit 1
  fi
  summary+=("$(awk -v ds="$ds" -v p="$python" -v f="$first" -v c="$cached" 'BEGIN {
    printf "%-10s torchvision+PIL %7.1f img/s | medfm first epoch %7.1f img/s (%.1fx) | medfm cached %8.1f img/s (%.1fx)", ds, p, f, f / p, c, c / p }')")
done
echo
echo "Summary, best epoch of $ROUNDS rounds ($(nproc) CPU cores, load average $(cut -d" " -f1-3 /proc/loadavg), $WORKERS workers; targets: first epoch >= 1.5x, cached >= 10x):"
printf '%s\n' "${summary[@]}"
