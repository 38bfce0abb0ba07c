# Sourced by scripts/bench/*.sh after they cd to the repository root: the Python side of a
# benchmark needs the reference packages (PIL, torchvision, timm, ...), which a fresh clone's
# .venv does not have (scripts/setup.sh alone installs torch only). When one of them does not
# import, install them all with `scripts/setup.sh --ref` before the benchmark runs.
if ! .venv/bin/python -c 'import PIL, numpy, scipy, sklearn, torchvision, timm, open_clip, pydicom, safetensors' \
    >/dev/null 2>&1; then
  echo "bench: the reference Python packages are missing; running scripts/setup.sh --ref" >&2
  bash scripts/setup.sh --ref
fi
