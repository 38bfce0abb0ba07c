#!/usr/bin/env bash
# Fuzz the checkpoint parsers (crates/ckpt) with cargo-fuzz / libFuzzer.
#   bash scripts/dev/fuzz_checkpoints.sh [SECONDS_PER_TARGET] [TARGET...]
# Needs a nightly toolchain and cargo-fuzz (`rustup toolchain install nightly`,
# `cargo install cargo-fuzz`). Seeds come from tests/fixtures/weights; crashing inputs land in
# crates/ckpt/fuzz/artifacts/<target>/ (reproduce with `cargo +nightly fuzz run -s none TARGET
# FILE`, then add the input as a regression case to crates/ckpt/tests/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
secs="${1:-600}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(unpickle torch_file safetensors_header)

fixtures="$PWD/tests/fixtures/weights"
cd crates/ckpt/fuzz
mkdir -p corpus/unpickle corpus/torch_file corpus/safetensors_header
cp "$fixtures"/*.pth "$fixtures"/*.bin corpus/torch_file/
cp "$fixtures"/*.safetensors corpus/safetensors_header/
cp "$fixtures"/pickle_cases.pkl "$fixtures"/legacy.pth corpus/unpickle/
# data.pkl of every zip fixture seeds the unpickler.
python3 - "$fixtures" corpus/unpickle <<'PY'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
for f in sorted(os.listdir(src)):
    path = os.path.join(src, f)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            for n in z.namelist():
                if n.endswith("/data.pkl"):
                    open(os.path.join(dst, f + ".pkl"), "wb").write(z.read(n))
PY

# The parsers are safe Rust (no `unsafe`), so AddressSanitizer adds nothing but a ~3x slowdown:
# panics, timeouts and memory blow-ups (-rss_limit_mb) are what the fuzzer looks for.
for t in "${targets[@]}"; do
    echo "== fuzzing $t for ${secs}s"
    nice -n 10 cargo +nightly fuzz run --sanitizer none -O "$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
