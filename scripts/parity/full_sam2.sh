#!/usr/bin/env bash
# Full-size random-weight SAM2.1 parity (sam2_b, sam2_l) against PyPI `sam2`: the reference
# writes random official-layout weights and its features at 224 and 1024 px to
# $MEDFM_SAM2_FULL_DIR (default /tmp/medfm-parity-sam2, about 1.1 GB), then the #[ignore]d
# test `full_size_parity_224_and_1024` loads them through the registry and compares.
# Several CPU-minutes, so it runs under the heavy lock.
#
#   bash scripts/parity/full_sam2.sh
set -euo pipefail
if [ -z "${MEDFM_HEAVY_LOCKED:-}" ]; then
  exec env MEDFM_HEAVY_LOCKED=1 flock /tmp/medfm-heavy.lock bash "$0" "$@"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
export MEDFM_SAM2_FULL_DIR="${MEDFM_SAM2_FULL_DIR:-/tmp/medfm-parity-sam2}"
.venv/bin/python scripts/fixtures/gen_parity_sam2.py full --out "$MEDFM_SAM2_FULL_DIR"
cargo test --release --test it sam2::parity::full_size_parity -- --ignored --nocapture
