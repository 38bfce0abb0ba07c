#!/usr/bin/env bash
# AIMv2 trunk benchmark: medfm vs Apple's ml-aim (the reference implementation), forward time per
# image at 224 px, batch 8, CPU, fp32, interleaved in one run (see scripts/bench/aimv2.py). Takes
# the machine-wide heavy lock itself (both models are resident: ~2.5 GiB large, ~5.5 GiB huge).
#   scripts/bench/aimv2.sh --ml-aim ML_AIM_CHECKOUT [--names aimv2-large-patch14-224] [--iters 5]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/ref_env.sh # the Python side's packages (setup.sh --ref when missing)
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
cargo build --release --quiet --example bench_backbone
exec flock /tmp/medfm-heavy.lock .venv/bin/python scripts/bench/aimv2.py "$@"
