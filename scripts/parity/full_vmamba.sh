#!/usr/bin/env bash
# Full-size VMamba parity (vmamba_s, vmamba_b) with random weights: the official implementation
# (pure-torch scan) writes release-layout checkpoints and its features to $MEDFM_PARITY_DIR
# (default /tmp/medfm-parity), then the #[ignore]d Rust test loads them through the registry
# and compares (<= 1e-4 abs). Runs under the heavy lock.
#
#   VMAMBA_REPO=/tmp/vmamba-ref bash scripts/parity/full_vmamba.sh
set -euo pipefail
if [ -z "${MEDFM_HEAVY_LOCKED:-}" ]; then
  exec env MEDFM_HEAVY_LOCKED=1 flock /tmp/medfm-heavy.lock bash "$0" "$@"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
: "${VMAMBA_REPO:?set VMAMBA_REPO to a checkout of MzeroMiko/VMamba}"
export MEDFM_PARITY_DIR="${MEDFM_PARITY_DIR:-/tmp/medfm-parity}"
for name in vmamba_s vmamba_b; do
  .venv/bin/python -W ignore scripts/fixtures/gen_parity_vmamba.py --vmamba-repo "$VMAMBA_REPO" \
    --full "$name" --out-dir "$MEDFM_PARITY_DIR"
done
cargo test --release --test it vmamba_parity::full_size_random_weights -- --ignored --nocapture
