#!/usr/bin/env bash
# The CUDA check in one run (what it checks: docs/gpu.md, scripts/gpu/check.py). On the GPU
# machine, from the repository root of the working tree sent there with .gpu_pack/ (made here by
# scripts/gpu/pack.sh):
#   bash scripts/gpu/check.sh [--out DIR] [--quick] [--only version,features,train,bench,large,e2e]
# Results: DIR (default $OUT, else gpu_check_results/): results.json, summary.md, details.tar.gz
# (every command's log, the training runs' history and metrics).
# Needs python3 with torch (the GPU image's torch 2.11.0+cu130); nothing else is installed
# there: the medfm binaries and the PyTorch reference code come from the pack, and the binaries
# load that torch's libtorch (LD_LIBRARY_PATH; their rpath names this machine's venv).
# Without a GPU (testing the script): MEDFM_GPU_CHECK_DEVICE=cpu bash scripts/gpu/check.sh --quick
# Environment: MEDFM_GPU_CHECK_PYTHON (default python3), MEDFM_GPU_PACK (default .gpu_pack),
# MEDFM_BIN / MEDFM_BENCH_BIN / MEDFM_GPU_PYTHONPATH (default: from the pack),
# MEDFM_GPU_PEAK_TFLOPS (the GPU's dense fp16 peak, if its name is not known to the script).
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${MEDFM_GPU_CHECK_PYTHON:-python3}
pack=${MEDFM_GPU_PACK:-.gpu_pack}
for f in "$pack/bin/medfm" "$pack/bin/bench_train_step" "$pack/py/dinov2" "$pack/py/reftf"; do
    if [ ! -e "$f" ]; then
        echo "error: $f is missing; run scripts/gpu/pack.sh on the build machine and send $pack/" >&2
        exit 2
    fi
done
export MEDFM_BIN=${MEDFM_BIN:-$PWD/$pack/bin/medfm}
export MEDFM_BENCH_BIN=${MEDFM_BENCH_BIN:-$PWD/$pack/bin/bench_train_step}
export MEDFM_GPU_PYTHONPATH=${MEDFM_GPU_PYTHONPATH:-$PWD/$pack/py}
# torch/lib, then the pip CUDA libraries beside it (site-packages/nvidia/*/lib), which python's
# `import torch` preloads; libraries that CUDA/cuDNN open at run time are found there too.
libs=$("$py" -c 'import glob, os, torch
lib = os.path.join(os.path.dirname(torch.__file__), "lib")
print(":".join([lib, *sorted(glob.glob(os.path.join(lib, "..", "..", "nvidia", "*", "lib")))]))')
export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_WAIT_POLICY=PASSIVE
# run_info.json's device peaks (docs/gpu.md): a tiny CUDA training (configs/demo.json, random trunk, 96 synthetic images, 1 epoch), then the two fields.
t=$(mktemp -d) && "$MEDFM_BIN" synth --dataset APTOS2019 --out "$t/data" --n 96 >/dev/null && "$MEDFM_BIN" --params_path configs/demo.json --data_location "$t/data" --save_dir "$t/run" --set foundation_params.pretrained=false --set training_params.epochs=1 >"$t/log" 2>&1 && grep -h '"peak_device' "$t"/run/results/*/run_info.json || echo "device peak memory: the tiny training failed, see $t/log"
exec "$py" scripts/gpu/check.py "$@"
