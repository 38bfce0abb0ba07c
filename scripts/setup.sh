#!/usr/bin/env bash
# Prepare this checkout so that plain `cargo build/run/test` work.
#
# 1. A repo-local virtual environment (.venv) with PyPI torch==2.11.0, the libtorch that
#    tch 0.24 expects (the CUDA 13 build; it runs on CPU too).
# 2. .cargo/config.toml [env] pointing torch-sys at that libtorch (ignored by git).
# 3. nasm, which builds the SIMD code of libjpeg-turbo's JPEG decoder (about 2x faster, the
#    same pixels). When it is not installed, Debian's package is fetched without root
#    (`apt-get download`) into .tools/bin, which .cargo/config.toml then puts on cargo's PATH,
#    so a plain `cargo build` finds it. Without nasm the decoder is built in C (build.rs
#    warns). `medfm --version` says which was built.
#
# Idempotent and quick when already done. `--ref` also installs the Python reference
# packages (timm, open_clip_torch, sam2, transformers, torchvision, scikit-learn, pydicom) that the
# fixture generators and benchmark scripts in scripts/ use; medfm itself never needs them.
set -euo pipefail

TORCH_VERSION=2.11.0
REF_PACKAGES=(
  "torchvision==0.26.0" "timm==1.0.20" "open_clip_torch==3.3.0" "transformers"
  "scikit-learn" "scipy" "pillow" "numpy" "safetensors" "sam2==1.1.0" "einops" "tensorboard" "fvcore"
  "pydicom==3.0.2" "pylibjpeg" "pylibjpeg-libjpeg" "pylibjpeg-openjpeg" "imagecodecs"
  "grad-cam==1.5.7" "peft==0.21.2" "statsmodels==0.15.0"
)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
want_ref=0
for arg in "$@"; do
  case "$arg" in
    --ref) want_ref=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (expected --ref)" >&2; exit 2 ;;
  esac
done

say() { echo "[setup] $*" >&2; }
die() { echo "[setup] error: $*" >&2; exit 1; }

python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 \
  || die "Python 3 is required (looked for '$python'); install python3 (3.10 or newer) and python3-venv"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "Python 3.10 or newer is required; '$python' is $("$python" --version 2>&1)"

if [ ! -x "$venv/bin/python" ]; then
  say "creating virtual environment $venv"
  "$python" -m venv "$venv" 2>/dev/null \
    || die "'$python -m venv' failed; install the venv module (Debian/Ubuntu: apt-get install python3-venv)"
fi
vpy="$venv/bin/python"
"$vpy" -m pip --version >/dev/null 2>&1 \
  || "$vpy" -m ensurepip --upgrade >/dev/null 2>&1 \
  || die "pip is missing in $venv and ensurepip failed; install python3-pip"

have_torch() {
  "$vpy" - <<PY 2>/dev/null
import importlib.metadata as m, sys
sys.exit(0 if m.version("torch").split("+")[0] == "$TORCH_VERSION" else 1)
PY
}
if ! have_torch; then
  say "installing torch==$TORCH_VERSION from PyPI (about 4 GB with its CUDA libraries; once)"
  "$vpy" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" \
    || die "pip install torch==$TORCH_VERSION failed (is PyPI reachable?)"
fi

if [ "$want_ref" = 1 ]; then
  say "installing reference packages: ${REF_PACKAGES[*]}"
  "$vpy" -m pip install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" "${REF_PACKAGES[@]}" \
    || die "pip install of the reference packages failed"
fi

# Read where torch lives without importing it (importing costs seconds and needs no GPU).
site="$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
libtorch="$site/torch"
[ -f "$libtorch/lib/libtorch_cpu.so" ] || die "torch is installed but $libtorch/lib/libtorch_cpu.so is missing"
abi="$("$vpy" - <<'PY'
import re, pathlib, sysconfig
# torch 2.11 wheels are built with the new C++ ABI; confirm from the wheel's cmake config.
p = pathlib.Path(sysconfig.get_paths()["purelib"]) / "torch/share/cmake/Torch/TorchConfig.cmake"
t = p.read_text() if p.exists() else ""
m = re.search(r"_GLIBCXX_USE_CXX11_ABI=(\d)", t)
print(m.group(1) if m else "1")
PY
)"

mkdir -p "$root/.cargo"
config="$root/.cargo/config.toml"
new="$(cat <<TOML
# Written by scripts/setup.sh; not tracked by git.
[env]
LIBTORCH = "$libtorch"
LIBTORCH_CXX11_ABI = "$abi"
TOML
)"
# nasm is looked up on PATH by mozjpeg-sys's build script, once per build profile: a build
# made without it stays C-only until `cargo clean -p mozjpeg-sys`.
tools="$root/.tools/bin"
failed="$root/.tools/nasm-fetch-failed"
if ! command -v nasm >/dev/null 2>&1 && [ ! -x "$tools/nasm" ] && [ -f "$failed" ]; then
  say "note: no nasm (see $failed); the JPEG decoder is built in C"
elif ! command -v nasm >/dev/null 2>&1 && [ ! -x "$tools/nasm" ]; then
  tmp="$(mktemp -d)"
  if command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 \
      && (cd "$tmp" && timeout 60 apt-get download -q nasm >/dev/null 2>&1) \
      && dpkg-deb -x "$tmp"/nasm_*.deb "$tmp/x" \
      && "$tmp/x/usr/bin/nasm" -v >/dev/null 2>&1; then
    mkdir -p "$tools"
    cp "$tmp/x/usr/bin/nasm" "$tools/nasm"
    say "fetched $("$tools/nasm" -v) from Debian's packages into $tools"
  else
    say "note: nasm is not installed and Debian's package could not be fetched; the JPEG"
    say "decoder is built in C (the same pixels, decoding about 2x slower). To build it with"
    say "SIMD: apt-get install nasm, then cargo clean -p mozjpeg-sys."
    mkdir -p "$root/.tools"
    echo "apt-get download nasm failed on $(date -u +%F); delete this file to try again" > "$failed"
  fi
  rm -rf "$tmp"
fi
# mozjpeg-sys finds nasm on PATH only, so a plain `cargo build` would build the C decoder when
# nasm lives in .tools/bin: cargo's [env] puts that folder first (cargo can only replace PATH,
# so the rest is this shell's PATH; rerun this script after changing it). build.rs warns when
# nasm is still not found.
found_nasm="$(command -v nasm 2>/dev/null || true)"
if [ -x "$tools/nasm" ] && { [ -z "$found_nasm" ] || [ "$found_nasm" = "$tools/nasm" ]; }; then
  new="$new
PATH = { value = \"$tools:${PATH//"$tools:"/}\", force = true }"
fi
if [ ! -f "$config" ] || [ "$(cat "$config")" != "$new" ]; then
  printf '%s\n' "$new" > "$config"
  say "wrote $config (LIBTORCH=$libtorch)"
fi
say "ready: libtorch $TORCH_VERSION at $libtorch"
