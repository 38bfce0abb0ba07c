#!/usr/bin/env bash
# Full-size random-weight parity of the ViT-family backbones (MAE, DINOv2, CLIP, CoCa) and the
# attention head's DeiT-B against the reference implementations, one name at a time: the Python
# reference writes random official-layout weights, an input and its outputs to
# $MEDFM_VIT_FULL_DIR (default /tmp/medfm-parity-vit), the ignored test
# `parity_full_vit` loads them through medfm's checkpoint loaders and prints the max abs error,
# then the files are removed. The large names (ViT-L and up: 3-10 GB RAM, minutes of CPU) run
# under /tmp/medfm-heavy.lock; the base-size ones (< 2 GB, about a CPU-minute) do not need it.
#
# Usage: scripts/parity/full_vit.sh [NAME...]   (default: all eleven)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
export MEDFM_VIT_FULL_DIR="${MEDFM_VIT_FULL_DIR:-/tmp/medfm-parity-vit}"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  names=(vit_base_patch16 vit_large_patch16 vit_huge_patch14 dinov2_vits14 dinov2_vitb14
         dinov2_vitl14 dinov2_vitg14 clip_vitb16 coca_ViT-B-32 coca_ViT-L-14 deit_base)
fi
cargo test --release --test it --no-run
for name in "${names[@]}"; do
  case "$name" in
    vit_base_patch16|dinov2_vits14|dinov2_vitb14|clip_vitb16|coca_ViT-B-32|deit_base) lock=() ;;
    *) lock=(flock /tmp/medfm-heavy.lock) ;;
  esac
  "${lock[@]}" bash -c '
    set -euo pipefail
    .venv/bin/python scripts/fixtures/gen_parity_full_vit.py "$1" "$MEDFM_VIT_FULL_DIR"
    MEDFM_VIT_FULL_NAME="$1" cargo test --release --test it parity_full_vit:: -- --ignored --nocapture 2>&1 \
      | grep -E "max abs|panicked|FAILED|test result"
    rm -rf "${MEDFM_VIT_FULL_DIR:?}/$1"
  ' _ "$name"
done
