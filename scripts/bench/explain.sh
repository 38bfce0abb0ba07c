#!/usr/bin/env bash
# Grad-CAM time per image on the CPU, medfm vs pytorch-grad-cam 1.5.7 (DINOv2-B/14, random
# weights, 224 px; see scripts/bench/explain.py). Takes the machine-wide heavy lock itself.
# Options go to explain.py, e.g. --batch 4 --iters 5 --threads 2.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
cargo build --release --quiet --example bench_explain
exec flock /tmp/medfm-heavy.lock .venv/bin/python scripts/bench/explain.py "$@"
