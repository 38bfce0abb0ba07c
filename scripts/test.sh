#!/usr/bin/env bash
# The test command: set up libtorch (once), then run the default test suite.
# Slow full-size parity checks are #[ignore]d; run them with scripts/parity_full.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
bash scripts/setup.sh
cargo test --release "$@"
