#!/usr/bin/env bash
# The test command: set up libtorch (once), run the default test suite, then run the lib tests
# and the numerically sensitive integration-test modules again with libtorch on another kernel
# path (see docs/contributing.md, "Float equality in tests").
#
# Arguments go to the first `cargo test` (`--test it train_loop::`, `-- --nocapture`, a filter...);
# the kernel-path run then is skipped, since it would not run what they select
# (MEDFM_KERNEL_GUARD=1 runs it anyway, MEDFM_KERNEL_GUARD=0 skips it without arguments).
# Slow full-size parity checks are #[ignore]d; run them with scripts/parity/full_*.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
bash scripts/setup.sh
# --no-fail-fast: one failing test binary must not hide the others' results.
cargo test --release --no-fail-fast "$@"

if [ "${MEDFM_KERNEL_GUARD:-$(($# == 0))}" != 1 ]; then
  exit 0
fi
# The kernel-path guard. A test that compares floats bitwise where that does not hold by
# construction passes on the CPU it was written on and fails on another; this catches it here.
# ATEN_CPU_CAPABILITY=default: ATen's non-vectorised kernels (softmax, norms, GELU, exp,
# reductions) instead of its AVX2/AVX-512 ones. ONEDNN_MAX_CPU_ISA=AVX2: oneDNN's
# convolutions without AVX-512. MKL_ENABLE_INSTRUCTIONS=AVX2: MKL's GEMMs without AVX-512 on
# Intel CPUs. OMP_NUM_THREADS=1: parallel reductions split differently from the run above.
# The binaries are the ones just built (the variables are read at run time); about 40 s on
# 2 cores (2 min when other builds share them). A filter matches any part of a test's path:
# `classifier::` also selects `sam2::classifier::` and `families_in_classifier::` (both listed).
guard_modules=(
  aimv2 classifier classifier_checkpoints explain_parity families_in_classifier optim_parity parity_clip
  parity_dinov2 parity_heads parity_mae predict sam2 train_e2e train_loop vmamba_parity weights
  lora probe speed explain_sanity
)
filters=()
for m in "${guard_modules[@]}"; do
  filters+=("$m::")
done
guard_env=(ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 OMP_NUM_THREADS=1)
echo "[test] kernel-path guard: the lib tests and ${guard_modules[*]} again with ${guard_env[*]}" >&2
# Two runs: the module filters would also select among the lib tests. Both run even when the
# first fails (as --no-fail-fast does for binaries).
status=0
env "${guard_env[@]}" cargo test --release --no-fail-fast --lib || status=$?
env "${guard_env[@]}" cargo test --release --no-fail-fast --test it -- "${filters[@]}" || status=$?
exit "$status"
