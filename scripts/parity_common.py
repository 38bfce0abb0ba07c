"""Shared helpers of the parity-fixture generators (scripts/gen_parity_*.py).

A fixture is a small model of a family with random weights saved in the official checkpoint
layout, a random input, and what the reference implementation computes from them: the
`pooled` and `tokens` tensors medfm's trunks must reproduce (docs/reference.md).
"""
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "parity")
KEYS = os.path.join(ROOT, "tests", "fixtures", "keys")
MIRROR = "/work/.mirror"
# A clone (bare or not) of github.com/sajjad-sh33/Medical-Transfer-Learning.
REFERENCE_REPO = os.environ.get(
    "MEDFM_REFERENCE_REPO", os.path.join(MIRROR, "sajjad-sh33+Medical-Transfer-Learning", "repo"))


def randomize(module, seed):
    """Give every parameter a random value (LayerNorm weights near 1, layer scales near 0.5,
    the rest ~ N(0, 1/fan_in)), so that a wrongly mapped tensor or a skipped op shows."""
    g = torch.Generator().manual_seed(seed)
    norm_weights = {
        id(m.weight) for m in module.modules() if isinstance(m, torch.nn.LayerNorm) and m.weight is not None
    }
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if id(p) in norm_weights:
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("gamma"):
                p.copy_(0.5 + 0.2 * noise)
            else:
                fan_in = p[0].numel() if p.dim() >= 2 else 16
                p.copy_(noise / fan_in ** 0.5)


def save_tensors(path, tensors):
    tensors = {k: v.detach().contiguous().float() for k, v in tensors.items()}
    save_file(tensors, path)
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path) / 1024:.0f} KiB)")


def save_torch(path, obj):
    torch.save(obj, path)
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path) / 1024:.0f} KiB)")


def reference_module_dir(files):
    """Extract files of the reference repository (read-only bare git copy) into a temporary
    package directory and return it; nothing of it is committed."""
    out = tempfile.mkdtemp(prefix="medfm_ref_")
    pkg = os.path.join(out, "reftf")
    os.makedirs(pkg)
    open(os.path.join(pkg, "__init__.py"), "w").close()
    for f in files:
        src = subprocess.run(["git", "-C", REFERENCE_REPO, "show", f"HEAD:{f}"], check=True,
                             capture_output=True, text=True).stdout
        open(os.path.join(pkg, os.path.basename(f)), "w").write(src)
    sys.path.insert(0, out)
    return pkg


def key_shapes(module):
    """The state-dict key/shape list the full-size tests compare against."""
    return [[k, list(v.shape)] for k, v in module.state_dict().items()]


def param_count(module):
    return sum(p.numel() for p in module.parameters())
