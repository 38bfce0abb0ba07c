#!/usr/bin/env bash
# AIMv2 forward time per image at 224 px, batch 8, CPU, fp32: medfm vs the reference Python
# implementation (Apple's ml-aim, same libtorch) in the same run. Random weights; each side runs
# in its own process, alternating, ROUNDS times; the best iteration of each side is compared.
#   scripts/bench_aimv2.sh ML_AIM_CHECKOUT [NAME...]      (env: ROUNDS=2 ITERS=3 THREADS=)
# Runs under `flock /tmp/medfm-heavy.lock` (large needs ~3 GiB, huge ~6 GiB).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ml_aim="${1:?usage: $0 ML_AIM_CHECKOUT [NAME...]}"
shift
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(aimv2-large-patch14-224 aimv2-huge-patch14-224)
rounds="${ROUNDS:-2}" iters="${ITERS:-3}"
thr=()
[ -z "${THREADS:-}" ] || thr=(--threads "$THREADS")
cargo build --release --example bench_forward
bin=target/release/examples/bench_forward
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for name in "${names[@]}"; do
  for ((r = 0; r < rounds; r++)); do
    flock /tmp/medfm-heavy.lock .venv/bin/python scripts/bench_aimv2.py "$name" --ml-aim "$ml_aim" \
      --iters "$iters" "${thr[@]}" | sed 's/^/python /' | tee -a "$log"
    flock /tmp/medfm-heavy.lock "$bin" "$name" --iters "$iters" "${thr[@]}" | sed 's/^/medfm /' | tee -a "$log"
  done
done
.venv/bin/python - "$log" <<'PY'
import json, sys
best = {}
for line in open(sys.argv[1]):
    side, doc = line.split(" ", 1)
    d = json.loads(doc)
    key = (d["backbone"], side)
    best[key] = min(best.get(key, float("inf")), d["ms_per_image"])
    threads = d["threads"]
print(f"\nAIMv2 forward, batch 8, 224 px, CPU fp32, {threads} threads (best iteration, ms per image):")
print(f"{'backbone':26} {'python ml-aim':>14} {'medfm':>10} {'ratio':>7}")
for name in dict.fromkeys(k[0] for k in best):
    py, rs = best[(name, "python")], best[(name, "medfm")]
    print(f"{name:26} {py:14.1f} {rs:10.1f} {rs / py:7.3f}")
PY
