#!/usr/bin/env bash
# Build and pack, on this (CPU) machine, what scripts/gpu/check.sh needs on a GPU machine that
# has only python3 + torch: .gpu_pack/ (ignored by git, ~20 MiB) with
#   bin/medfm, bin/bench_train_step   the release binaries (they find libtorch through
#                                     LD_LIBRARY_PATH there, set by check.sh);
#   py/dinov2/                        the official DINOv2 code (facebookresearch/dinov2, which
#                                     the reference loads through torch.hub);
#   py/reftf/                         the reference's utils/transformers/{deit,transformers_utils}.py.
# Sources: $MEDFM_DINOV2_REPO and $MEDFM_REFERENCE_REPO (clones, bare or not), default the local
# mirrors. Then send the working tree with .gpu_pack/ and run `bash scripts/gpu/check.sh` there.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.tools/bin:$PATH" # nasm from setup.sh, for the SIMD JPEG decoder
dinov2=${MEDFM_DINOV2_REPO:-/work/.mirror/facebookresearch+dinov2/repo}
reference=${MEDFM_REFERENCE_REPO:-/work/.mirror/sajjad-sh33+Medical-Transfer-Learning/repo}
cargo build --release --quiet --bin medfm --example bench_train_step
pack=.gpu_pack
rm -rf "$pack"
mkdir -p "$pack/bin" "$pack/py/reftf"
cp target/release/medfm target/release/examples/bench_train_step "$pack/bin/"
git -C "$dinov2" archive HEAD dinov2 | tar -x -C "$pack/py"
: >"$pack/py/reftf/__init__.py"
for f in deit.py transformers_utils.py; do
    git -C "$reference" show "HEAD:utils/transformers/$f" >"$pack/py/reftf/$f"
done
du -sh "$pack"
