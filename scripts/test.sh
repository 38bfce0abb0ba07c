#!/usr/bin/env bash
# The test command: set up libtorch (once), then run the default test suite.
# Slow full-size parity checks are #[ignore]d; run them with scripts/parity_full.sh.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo test --release "$@"
