#!/usr/bin/env bash
# Training benchmarks, medfm vs PyTorch side by side in one run (see scripts/bench/train.py):
# `all` (default) runs `step` (one training step of dinov2_vitb14 with a linear head, frozen or
# with its last 4 blocks trained, and with the deit_base head) and `e2e` (3 epochs + validation
# + test on 512 synthetic images: wall time, peak memory and the metrics of both), then prints
# the table. Needs the reference packages (scripts/setup.sh --ref) and the DINOv2 mirror. Takes
# the machine-wide heavy lock itself.
#   bash scripts/bench/train.sh [all] [--batch 8 --iters 5 --n 512]
#   bash scripts/bench/train.sh step [--batch 8 --iters 5]
#   bash scripts/bench/train.sh e2e [--n 512 --backbone dinov2_vits14]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/ref_env.sh # the Python side's packages (setup.sh --ref when missing)
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
cargo build --release --quiet --bin medfm --example bench_train_step
what=all
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then what=$1; shift; fi
# libgomp's default spin-waiting makes both sides several times slower on a loaded machine;
# medfm's binary switches to passive waiting itself, so give PyTorch the same.
export OMP_WAIT_POLICY=PASSIVE PYTHONWARNINGS=ignore
exec flock /tmp/medfm-heavy.lock .venv/bin/python scripts/bench/train.py "$what" "$@"
