#!/usr/bin/env bash
# Full-size random-weight AIMv2 parity: Apple's ml-aim writes random weights (official layout),
# an input batch and its pooled/tokens to $MEDFM_PARITY_DIR (default /tmp/medfm-parity), then the
# #[ignore]d `aimv2_full_size_parity` test loads those weights into medfm and compares.
# Needs ~3 GiB (large) / ~6 GiB (huge) and a few CPU-minutes, so it runs under the heavy lock.
#   scripts/parity/full_aimv2.sh /path/to/ml-aim-checkout [aimv2-large-patch14-224 aimv2-huge-patch14-224]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
ml_aim="${1:?usage: $0 ML_AIM_CHECKOUT [NAME...]}"
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(aimv2-large-patch14-224 aimv2-huge-patch14-224)
out="${MEDFM_PARITY_DIR:-/tmp/medfm-parity}"
export MEDFM_PARITY_DIR="$out"
cargo test --release --test it --no-run
for name in "${names[@]}"; do
  flock /tmp/medfm-heavy.lock .venv/bin/python scripts/fixtures/gen_parity_aimv2.py \
    --ml-aim "$ml_aim" --full "$name" --out "$out/$name"
done
flock /tmp/medfm-heavy.lock cargo test --release --test it aimv2::aimv2_full_size_parity -- --ignored --nocapture
