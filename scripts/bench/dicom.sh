#!/usr/bin/env bash
# DICOM decode time per image, medfm vs pydicom's pixel_array + the LUTs, side by side in one
# run (scripts/bench/dicom.py): some committed fixtures (tests/fixtures/dicom) and synthetic
# images at clinical sizes (a 3328x2560 12-bit mammogram uncompressed, JPEG 2000 lossless and
# JPEG; 1024x1024 RLE and YBR_FULL_422 JPEG), written once into the work folder.
#
# Usage: scripts/bench/dicom.sh [ITERS] (default 15). Environment: MEDFM_BENCH_DIR (default
# /tmp/medfm-bench; the synthetic files, about 60 MB, go to its dicom/ folder and are kept for
# reruns), CARGO_TARGET_DIR. Needs the reference packages (`bash scripts/setup.sh --ref`).
# Heavy: runs under flock /tmp/medfm-heavy.lock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/bench/ref_env.sh # the Python side's packages (setup.sh --ref when missing)
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
ITERS="${1:-15}"
DIR="${MEDFM_BENCH_DIR:-/tmp/medfm-bench}/dicom"
PY=.venv/bin/python

if [ -z "${MEDFM_BENCH_LOCKED:-}" ]; then
  exec env MEDFM_BENCH_LOCKED=1 flock /tmp/medfm-heavy.lock "$0" "$@"
fi

cargo build --release --example bench_dicom >/dev/null
BIN="${CARGO_TARGET_DIR:-target}/release/examples/bench_dicom"
echo "$(nproc) CPU cores, load average $(cut -d" " -f1-3 /proc/loadavg); $("$PY" -c 'import pydicom, numpy; print(f"pydicom {pydicom.__version__}, numpy {numpy.__version__}")')"
"$PY" scripts/bench/dicom.py "$BIN" "$DIR" --iters "$ITERS"
