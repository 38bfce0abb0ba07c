#!/usr/bin/env bash
# Checkpoint loading speed, medfm (Rust) vs torch.load / safetensors (Python), on a random
# ViT-L/14-sized state dict (304M float32 parameters, 1.2 GB) written to /tmp.
#   bash scripts/bench/weights.sh
# Needs ~4 GB RAM; runs under the shared heavy-work lock. Both sides read from the page cache
# (the files were just written) and report the best of 3 loads.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
source scripts/bench/ref_env.sh # the Python side's packages (setup.sh --ref when missing)
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
dir=/tmp/medfm-bench-weights
mkdir -p "$dir"
# Build outside the lock; run the test binary itself under it.
bin=$(cargo test --release --test it --no-run --message-format=json 2>/dev/null |
      python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "it" and m.get("executable"):
        print(m["executable"])')
flock /tmp/medfm-heavy.lock bash -c "
  .venv/bin/python scripts/bench/weights.py '$dir' &&
  MEDFM_BENCH_WEIGHTS_DIR='$dir' '$bin' --ignored weights::bench_load --nocapture 2>&1 | grep -E '^rust'"
