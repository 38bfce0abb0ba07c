#!/usr/bin/env bash
# `medfm predict` vs the Python a user would write (timm's vit_base_patch14_dinov2 + PIL +
# torchvision transforms in a DataLoader; scripts/bench/predict.py), side by side on the same
# N synthetic 1-2 MP images (half PNG, half JPEG), the same model and the same threads.
#
# The model: PARAMS (default: the paper's APTOS2019 DINOv2-B/14 linear-probe config,
# configs/paper/APTOS2019/dinov2_vitb14_linear.json: Resize 256, CenterCrop 224, 224 px; any
# DINOv2 S/B/L config with the linear head and Resize/CenterCrop/Normalize transforms works, e.g.
# configs/demo.json) with a random trunk (no downloads), trained for one epoch on a few
# synthetic images so that the run has a model, then exported with `medfm export`; the Python
# side loads that file into timm, so both compute the same model (the log shows the largest
# difference between their probabilities).
#
# Each round runs medfm, then Python; per side the predict loop's images/s (decoding,
# transforms and forward passes; from the side's own timer) and the whole command's (process
# start, model loading, loop, CSV; wall clock). The summary gives the median of the per-round
# ratios.
#
# Usage: scripts/bench/predict.sh. Environment: PARAMS, N_IMAGES (default 512), THREADS (default 2:
# torch's intra-op threads on both sides, medfm's --workers and the DataLoader's num_workers),
# BATCH (default 32), ROUNDS (default 2), MEDFM_BENCH_DIR (default /tmp/medfm-bench; the images
# and each config's model are kept in its predict/ folder for reruns).
# Heavy: runs under flock /tmp/medfm-heavy.lock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/bench/ref_env.sh # the Python side's packages (setup.sh --ref when missing)
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
N="${N_IMAGES:-512}"
THREADS="${THREADS:-2}"
BATCH="${BATCH:-32}"
ROUNDS="${ROUNDS:-2}"
PARAMS="${PARAMS:-configs/paper/APTOS2019/dinov2_vitb14_linear.json}"
DIR="${MEDFM_BENCH_DIR:-/tmp/medfm-bench}/predict"
PY=.venv/bin/python

if [ -z "${MEDFM_BENCH_LOCKED:-}" ]; then
  exec env MEDFM_BENCH_LOCKED=1 flock /tmp/medfm-heavy.lock "$0" "$@"
fi

cargo build --release >/dev/null
mkdir -p "$DIR"
# A copy, so that a rebuild during the benchmark does not change the binary between rounds.
BIN="$DIR/medfm"
cp "${CARGO_TARGET_DIR:-target}/release/medfm" "$BIN"
"$PY" scripts/bench/predict.py images "$DIR/images" "$N"

# One model (and its run) per params file.
MDIR="$DIR/$(basename "$PARAMS" .json)"
model="$MDIR/model.safetensors"
if [ ! -f "$model" ]; then
  rm -rf "$MDIR"
  mkdir -p "$MDIR"
  "$BIN" synth --dataset APTOS2019 --out "$MDIR/data" --n 40 >/dev/null
  "$PY" - "$MDIR" "$PARAMS" <<'EOF'
import json, sys
d, params = sys.argv[1:3]
p = json.load(open(params))
p["dataset_params"]["dataset"] = "APTOS2019"
p["dataset_params"]["data_location"] = f"{d}/data"
p["foundation_params"]["pretrained"] = False
for k in ("trainloader", "valloader", "testloader"):
    p["dataloader_params"][k].update(batch_size=8, num_workers=2, pin_memory=False)
p["training_params"].update(epochs=1, val_every=1, save_dir=f"{d}/run", model_name="bench",
                            knn_eval=False, use_tensorboard=False, use_mixed_precision=False)
p["system_params"]["use_GPU"] = False
json.dump(p, open(f"{d}/params.json", "w"), indent=1)
EOF
  "$BIN" --params_path "$MDIR/params.json" >"$MDIR/train.log" 2>&1
  "$BIN" export --params_path "$MDIR/run/configs/bench/params.json" --output "$model"
fi

log="$MDIR/bench.log"
: >"$log"
now() { date +%s.%N; }
for round in $(seq "$ROUNDS"); do
  t0=$(now)
  out=$(OMP_NUM_THREADS="$THREADS" "$BIN" predict --model "$model" --input "$DIR/images/list.txt" \
    --output "$MDIR/medfm.csv" --batch_size "$BATCH" --workers "$THREADS" --device cpu | grep '^Predicted')
  echo "round $round medfm wall=$(echo "$(now) - $t0" | bc) $out" | tee -a "$log"
  t0=$(now)
  out=$(OMP_NUM_THREADS="$THREADS" "$PY" scripts/bench/predict.py predict "$model" "$DIR/images/list.txt" \
    "$MDIR/python.csv" --threads "$THREADS" --workers "$THREADS" --batch "$BATCH" | grep '^Predicted')
  echo "round $round python wall=$(echo "$(now) - $t0" | bc) $out" | tee -a "$log"
done
"$PY" scripts/bench/predict.py compare "$MDIR/medfm.csv" "$MDIR/python.csv" | tee -a "$log"
echo
echo "$PARAMS: $N images, batch $BATCH, $THREADS threads, $ROUNDS rounds; $(nproc) CPU cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average $(cut -d' ' -f1-3 /proc/loadavg):"
"$PY" scripts/bench/predict.py summary "$log"
