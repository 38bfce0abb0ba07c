#!/usr/bin/env bash
# The demo: set up libtorch (once), then run the main job on the reference params file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo run --release -- --params_path configs/reference.json --save_dir demo "$@"
