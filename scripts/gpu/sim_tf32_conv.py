"""How far cuDNN's TF32 convolutions move DINOv2-B/14's features, simulated on the CPU.

On Ampere and later GPUs, cuDNN computes float32 convolutions in TF32 by default (operands
rounded to 10 mantissa bits, float32 accumulation). This runs the official DINOv2 ViT-B/14 at
224 px on the random weights of scripts/gpu/check.py's `features` check twice: as is, and with
the patch embedding's input and weight rounded to TF32 (round to nearest), and prints the
largest difference of the normalised class and patch tokens. `medfm features` turns TF32 off in
its convolutions (`models::layers::conv2d`; training keeps torch's default, TF32, as the
reference) because this difference exceeds the 1e-3 that its GPU output must keep from the CPU.

    .venv/bin/python scripts/gpu/sim_tf32_conv.py [--batch 2] [--seed 0]

Needs the reference packages (scripts/setup.sh --ref) and the DINOv2 mirror.
"""

import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# This folder (check.py) and scripts/bench/ (train.py's reference modules).
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "bench")]


def tf32(t):
    """float32 rounded to TF32's 10 mantissa bits (to nearest, ties away from zero)."""
    i = t.contiguous().view(torch.int32)
    return ((i + 0x1000) & ~0x1FFF).view(torch.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from check import random_state_dict
    from train import reference_modules

    vits, _ = reference_modules()
    keys = json.load(open(os.path.join(ROOT, "tests/fixtures/keys/dinov2_vitb14.json")))["keys"]
    model = vits.vit_base(patch_size=14, img_size=518, init_values=1.0, block_chunks=0)
    model.load_state_dict(random_state_dict(keys, args.seed))
    model.eval()
    x = torch.randn(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(args.seed))
    conv = model.patch_embed.proj
    with torch.no_grad():
        exact = model.forward_features(x)
        conv.forward = lambda inp: torch.nn.functional.conv2d(tf32(inp), tf32(conv.weight), conv.bias,
                                                              conv.stride)
        rounded = model.forward_features(x)
    for k in ["x_norm_clstoken", "x_norm_patchtokens"]:
        diff = (exact[k] - rounded[k]).abs().max().item()
        print(f"{k}: max abs difference {diff:.2e} (max abs value {exact[k].abs().max().item():.2f})")


if __name__ == "__main__":
    main()
