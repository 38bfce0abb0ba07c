#!/usr/bin/env bash
# Wall time of `medfm compare` on two synthetic multi-label predictions.csv files
# (scripts/bench/compare.py: N_IMAGES images x LABELS labels, 5% unknown), at each number of
# resamples given. With MEDFM_BEFORE set to another medfm binary (e.g. a build of an earlier
# commit), both binaries run alternately, ROUNDS times each, and their comparison JSON files
# are checked to be identical.
#
# Usage: scripts/bench/compare.sh [RESAMPLES...] (default 200 2000). Environment: N_IMAGES
# (default 22000), LABELS (default 14), ROUNDS (default 2), MEDFM_BEFORE (unset: this
# checkout's build alone), MEDFM_BENCH_DIR (default /tmp/medfm-bench-compare).
# Heavy: runs under flock /tmp/medfm-heavy.lock.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export PATH="$PWD/.tools/bin:$PATH"
N="${N_IMAGES:-22000}"
L="${LABELS:-14}"
ROUNDS="${ROUNDS:-2}"
DIR="${MEDFM_BENCH_DIR:-/tmp/medfm-bench-compare}"
RESAMPLES=("$@")
[ ${#RESAMPLES[@]} -gt 0 ] || RESAMPLES=(200 2000)

if [ -z "${MEDFM_BENCH_LOCKED:-}" ]; then
  exec env MEDFM_BENCH_LOCKED=1 flock /tmp/medfm-heavy.lock "$0" "$@"
fi

cargo build --release --bin medfm >/dev/null
AFTER="${CARGO_TARGET_DIR:-target}/release/medfm"
mkdir -p "$DIR"
if [ "$(cat "$DIR/size" 2>/dev/null)" != "$N x $L" ]; then
  .venv/bin/python scripts/bench/compare.py "$DIR" --images "$N" --labels "$L"
  echo "$N x $L" >"$DIR/size"
fi
sides=(after)
[ -n "${MEDFM_BEFORE:-}" ] && sides=(before after)
echo "medfm compare, $N images x $L labels; $(nproc) cores"
for r in "${RESAMPLES[@]}"; do
  for round in $(seq "$ROUNDS"); do
    for side in "${sides[@]}"; do
      bin="$AFTER"
      [ "$side" = before ] && bin="$MEDFM_BEFORE"
      load=$(cut -d' ' -f1 /proc/loadavg)
      t0=$(date +%s.%N)
      "$bin" compare "$DIR/a" "$DIR/b" --resamples "$r" --output "$DIR/$side-$r.json" >/dev/null
      t1=$(date +%s.%N)
      printf '%s resamples, %-6s round %s: %6.2f s (load average %s)\n' \
        "$r" "$side" "$round" "$(echo "$t1 - $t0" | bc)" "$load"
    done
  done
  if [ -n "${MEDFM_BEFORE:-}" ]; then
    if cmp -s "$DIR/before-$r.json" "$DIR/after-$r.json"; then
      echo "$r resamples: the two comparison files are identical"
    else
      echo "$r resamples: the comparison files DIFFER" >&2
      exit 1
    fi
  fi
done
