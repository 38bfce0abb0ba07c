#!/usr/bin/env bash
# SAM2.1 image-encoder benchmark: medfm vs PyPI `sam2`, forward time per image at 224 px,
# batch 8, CPU, fp32, interleaved in one run (see scripts/bench/sam2_encoder.py). Takes the machine-wide
# heavy lock itself. Options are passed to sam2_encoder.py, e.g. --names sam2_b --iters 20.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/ref_env.sh # the Python side's packages (setup.sh --ref when missing)
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
cargo build --release --quiet --example bench_backbone
exec flock /tmp/medfm-heavy.lock .venv/bin/python scripts/bench/sam2_encoder.py "$@"
