#!/usr/bin/env bash
# The family benchmarks in one go: forward time per image at 224 px (batch 8, CPU, fp32) of every
# backbone of the other families, medfm vs its reference implementation, each pair interleaved
# in one run, ratio printed (targets: <= 1.1; VMamba >= 3x faster than the reference's
# pure-torch scan). It runs the four family scripts one after another (each takes the heavy
# lock itself) and collects their tables:
#   AIMv2  scripts/bench/aimv2.sh   vs Apple's ml-aim        (needs ML_AIM=<checkout of apple/ml-aim>)
#   CoCa   scripts/bench/vit.sh     vs open_clip
#   SAM2.1 scripts/bench/sam2_encoder.sh    vs PyPI sam2
#   VMamba scripts/bench/vmamba.sh  vs the official VMamba code (needs VMAMBA_REPO=<checkout>)
# A family whose reference checkout is not given is reported as skipped, not silently dropped.
#   ML_AIM=/tmp/ml-aim VMAMBA_REPO=/tmp/vmamba-ref bash scripts/bench/families.sh [--iters N]
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/bench/ref_env.sh # the Python side's packages (setup.sh --ref when missing)
iters=()
if [ "${1:-}" = --iters ] && [ -n "${2:-}" ]; then iters=(--iters "$2"); fi
status=0
run() {
  local family=$1; shift
  echo "=== $family: $*"
  if ! "$@"; then echo "=== $family: FAILED"; status=1; fi
}
if [ -n "${ML_AIM:-}" ]; then
  run AIMv2 bash scripts/bench/aimv2.sh --ml-aim "$ML_AIM" \
    --names aimv2-large-patch14-224 aimv2-huge-patch14-224 "${iters[@]}"
else
  echo "=== AIMv2: skipped (set ML_AIM to a checkout of github.com/apple/ml-aim)"; status=1
fi
run CoCa bash scripts/bench/vit.sh --names coca_ViT-B-32 coca_ViT-L-14 "${iters[@]}"
run SAM2.1 bash scripts/bench/sam2_encoder.sh --names sam2_b sam2_l "${iters[@]}"
if [ -n "${VMAMBA_REPO:-}" ]; then
  run VMamba bash scripts/bench/vmamba.sh --names vmamba_s vmamba_b "${iters[@]}"
else
  echo "=== VMamba: skipped (set VMAMBA_REPO to a checkout of github.com/MzeroMiko/VMamba)"; status=1
fi
exit $status
