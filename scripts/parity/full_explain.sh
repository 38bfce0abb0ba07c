#!/usr/bin/env bash
# Full-size Grad-CAM and Grad-CAM++ parity against pytorch-grad-cam 1.5.7 (DINOv2-S/14, CLIP B/16,
# SAM2.1 Hiera B+, VMamba-S at 224 px, seeded random weights): the reference writes the weights
# in the official key layouts (safetensors), the input, its logits and maps to
# $MEDFM_EXPLAIN_FULL_DIR (default /tmp/medfm-parity-explain, about 0.9 GB), then the #[ignore]d
# test `explain_parity::full_size_grad_cam_matches_pytorch_grad_cam` reads them through medfm's
# checkpoint loaders and compares (<= 1e-4 abs); the files are removed when it passes.
# VMamba-S needs VMAMBA_REPO (a checkout of MzeroMiko/VMamba; without it VMamba-S is skipped).
# Several CPU-minutes (VMamba's reference scan is pure torch), so it runs under the heavy lock.
#
#   VMAMBA_REPO=/tmp/vmamba-ref bash scripts/parity/full_explain.sh [NAME...]
set -euo pipefail
if [ -z "${MEDFM_HEAVY_LOCKED:-}" ]; then
  exec env MEDFM_HEAVY_LOCKED=1 flock /tmp/medfm-heavy.lock bash "$0" "$@"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
export MEDFM_EXPLAIN_FULL_DIR="${MEDFM_EXPLAIN_FULL_DIR:-/tmp/medfm-parity-explain}"
names=()
if [ $# -gt 0 ]; then names=(--names "$@"); fi
.venv/bin/python -W ignore scripts/fixtures/gen_explain_fixtures.py full \
  --out "$MEDFM_EXPLAIN_FULL_DIR" ${VMAMBA_REPO:+--vmamba-repo "$VMAMBA_REPO"} "${names[@]}"
cargo test --release --test it explain_parity::full_size -- --ignored --nocapture
for n in dinov2_vits14 clip_vitb16 sam2_b vmamba_s; do
  rm -f "$MEDFM_EXPLAIN_FULL_DIR/$n.safetensors" "$MEDFM_EXPLAIN_FULL_DIR/${n}_maps.safetensors"
done
rmdir "$MEDFM_EXPLAIN_FULL_DIR" 2>/dev/null || true
