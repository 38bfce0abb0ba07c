#!/usr/bin/env bash
# VMamba forward time, medfm vs the official implementation's pure-torch selective scan, in one
# run: batch 8, 224 px, CPU, fp32, random weights, eval/no_grad, the same thread count for both.
#
#   VMAMBA_REPO=/tmp/vmamba-ref bash scripts/bench_vmamba.sh [vmamba_s] [vmamba_b]
#   env: THREADS (default "1 2"), ITERS (medfm timed forwards, default 5), REF_ITERS (default 3)
#
# VMAMBA_REPO: a checkout or export of github.com/MzeroMiko/VMamba (see
# scripts/gen_parity_vmamba.py). Runs under the heavy lock (/tmp/medfm-heavy.lock).
set -euo pipefail
if [ -z "${MEDFM_HEAVY_LOCKED:-}" ]; then
  exec env MEDFM_HEAVY_LOCKED=1 flock /tmp/medfm-heavy.lock bash "$0" "$@"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.."
: "${VMAMBA_REPO:?set VMAMBA_REPO to a checkout of MzeroMiko/VMamba}"
backbones=("${@:-vmamba_s}")
read -r -a threads <<< "${THREADS:-1 2}"
py=.venv/bin/python
cargo build --release --quiet --example bench_vmamba

ratio='import json, sys
o, r = (json.loads(a) for a in sys.argv[1:])
print(f"{o[\"backbone\"]} batch {o[\"batch\"]} threads {o[\"threads\"]}: "
      f"medfm {o[\"per_image_s\"] * 1e3:.0f} ms/image, reference {r[\"per_image_s\"] * 1e3:.0f} ms/image, "
      f"ratio reference/medfm = {r[\"median_s\"] / o[\"median_s\"]:.2f}")'

for name in "${backbones[@]}"; do
  for t in "${threads[@]}"; do
    ours=$(./target/release/examples/bench_vmamba --backbone "$name" --threads "$t" --iters "${ITERS:-5}")
    ref=$(PYTHONPATH=scripts "$py" -W ignore scripts/bench_vmamba_ref.py --vmamba-repo "$VMAMBA_REPO" \
      --backbone "$name" --threads "$t" --iters "${REF_ITERS:-3}" 2>/dev/null | tail -n 1)
    echo "$ours"
    echo "$ref"
    "$py" -c "$ratio" "$ours" "$ref"
  done
done
