#!/usr/bin/env bash
# VMamba trunk benchmark: medfm vs the official implementation's pure-torch selective scan,
# forward time per image at 224 px, batch 8, CPU, fp32, interleaved in one run (see
# scripts/bench/vmamba.py). Takes the machine-wide heavy lock itself.
#   VMAMBA_REPO=/tmp/vmamba-ref scripts/bench/vmamba.sh [--names vmamba_s vmamba_b] [--threads 1 2] [--iters 3]
# VMAMBA_REPO: a checkout or export of github.com/MzeroMiko/VMamba (see scripts/fixtures/gen_parity_vmamba.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/ref_env.sh # the Python side's packages (setup.sh --ref when missing)
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
cargo build --release --quiet --example bench_backbone
exec flock /tmp/medfm-heavy.lock .venv/bin/python -W ignore scripts/bench/vmamba.py "$@"
