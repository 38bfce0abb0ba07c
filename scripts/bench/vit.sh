#!/usr/bin/env bash
# ViT-family forward benchmark (CoCa by default): medfm vs the reference implementation (open_clip,
# the reference repository's MAE, DINOv2's official code), forward time per image at 224 px,
# batch 8, CPU, fp32, interleaved in one run (see scripts/bench/vit.py). Takes the machine-wide
# heavy lock itself. Options go to vit.py, e.g. --names clip_vitb16 dinov2_vitb14 --iters 20.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/ref_env.sh # the Python side's packages (setup.sh --ref when missing)
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
cargo build --release --quiet --example bench_backbone
exec flock /tmp/medfm-heavy.lock .venv/bin/python scripts/bench/vit.py "$@"
