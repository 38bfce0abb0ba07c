#!/usr/bin/env python3
"""Parity fixtures for the DINOv2 trunks (dinov2_vits14 / vitb14 / vitl14 / vitg14).

References:
- the official code (facebookresearch/dinov2, `dinov2/models/vision_transformer.py`, which the
  reference loads through torch.hub): a clone (bare or not) named by --dinov2-repo or
  $MEDFM_DINOV2_REPO (default: the local mirror /work/.mirror/facebookresearch+dinov2/repo);
  its `dinov2/` folder is extracted to a temporary directory, run, and never committed;
- the reference repository's `dinov2_utils.py` (its `new_forward_features` for drop_cutoff and
  its 1-channel PatchEmbed), read from a clone ($MEDFM_REFERENCE_REPO, default the local
  mirror);
- timm (PyPI) for timm's `vit_*_patch14_dinov2` checkpoint layout.

Small models (patch 14, width 32, 3 blocks, a 4x4 stored position grid instead of 37x37) with
random weights are saved in the official layout (flat state dict, `.pth` and `.safetensors`)
and in timm's layout; inputs at the native 56 px and at 70 px, 42 px and 56x70 px exercise the
official position-embedding interpolation (bicubic, 0.1 offset scale factor, no antialias).

A second small model keeps the published 37x37 grid (518 px) and is read at 224 px, the size of
a training run.

Usage: .venv/bin/python scripts/gen_parity_dinov2.py [--dinov2-repo DIR]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import types

import torch
import torch.nn as nn

from parity_common import FIXTURES, MIRROR, randomize, reference_module_dir, save_tensors, save_torch

SMALL = dict(img_size=56, patch_size=14, embed_dim=32, depth=3, num_heads=4, mlp_ratio=4,
             init_values=1.0, block_chunks=0, interpolate_antialias=False, interpolate_offset=0.1)


def official_code(repo):
    """Import the official DINOv2 package from a clone of facebookresearch/dinov2."""
    clone = repo or os.environ.get("MEDFM_DINOV2_REPO") or os.path.join(MIRROR, "facebookresearch+dinov2", "repo")
    repo = tempfile.mkdtemp(prefix="medfm_dinov2_")
    archive = subprocess.run(["git", "-C", clone, "archive", "HEAD", "dinov2"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", repo], input=archive, check=True)
    os.environ.setdefault("XFORMERS_DISABLED", "1")
    sys.path.insert(0, repo)
    from dinov2.models import vision_transformer as vits
    return vits


def features(model, x, drop_cutoff=None):
    model.eval()
    with torch.no_grad():
        if drop_cutoff:
            out = model.forward_features(x, return_block=drop_cutoff)
        else:
            out = model.forward(x, is_training=True)
    return out["x_norm_clstoken"], out["x_prenorm"][:, 1:]


def timm_features(model, x):
    """timm's forward_features, keeping the pre-norm tokens."""
    model.eval()
    with torch.no_grad():
        y = model.patch_embed(x)
        y = model._pos_embed(y)
        y = model.norm_pre(model.patch_drop(y))
        y = model.blocks(y)
    return model.norm(y)[:, 0], y[:, 1:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dinov2-repo", help="a clone of facebookresearch/dinov2 (default $MEDFM_DINOV2_REPO or the local mirror)")
    args = ap.parse_args()
    vits = official_code(args.dinov2_repo)
    reference_module_dir(["utils/transformers/dinov2_utils.py"])
    import reftf.dinov2_utils as ref_utils  # noqa: E402

    torch.manual_seed(0)
    io = {}

    def record(tag, x, pooled, tokens):
        io[f"pixels_{tag}"], io[f"pooled_{tag}"], io[f"tokens_{tag}"] = x, pooled, tokens

    # Official layout, GELU MLP.
    model = vits.DinoVisionTransformer(ffn_layer="mlp", **SMALL)
    randomize(model, seed=2)
    sd = model.state_dict()
    save_torch(os.path.join(FIXTURES, "dinov2_small.pth"), sd)
    save_tensors(os.path.join(FIXTURES, "dinov2_small.safetensors"), sd)
    for tag, (h, w) in {"native56": (56, 56), "up70": (70, 70), "down42": (42, 42),
                        "rect56x70": (56, 70)}.items():
        x = torch.randn(2, 3, h, w)
        record(tag, x, *features(model, x))
    # drop_cutoff: the reference's forward_features replacement, stopping after block 1.
    model.forward_features = types.MethodType(ref_utils.new_forward_features, model)
    x = torch.randn(2, 3, 70, 70)
    record("cut1", x, *features(model, x, drop_cutoff=[2, 1]))
    # One input channel: the reference's PatchEmbed fed the RGB kernel's first channel.
    model = vits.DinoVisionTransformer(ffn_layer="mlp", **SMALL)
    model.load_state_dict(sd)
    w, b = model.patch_embed.proj.weight.data, model.patch_embed.proj.bias.data
    model.patch_embed = ref_utils.PatchEmbed(in_chans=1, patch_size=(14, 14), embed_dim=32)
    model.patch_embed.proj.weight.data = w.repeat(1, 4, 1, 1)[:, :1]
    model.patch_embed.proj.bias.data = b
    x = torch.randn(2, 1, 56, 56)
    record("gray56", x, *features(model, x))

    # Official layout, packed SwiGLU (ViT-g/14's FFN): hidden (int(128 * 2 / 3) + 7) // 8 * 8 = 88.
    model = vits.DinoVisionTransformer(ffn_layer="swiglufused", **SMALL)
    randomize(model, seed=3)
    sd_g = model.state_dict()
    save_tensors(os.path.join(FIXTURES, "dinov2_small_swiglu.safetensors"), sd_g)
    x = torch.randn(2, 3, 70, 70)
    record("swiglu70", x, *features(model, x))

    # timm layout (no mask token; SwiGLU as mlp.fc1 / mlp.fc2), at the stored grid.
    import timm
    from timm.layers import SwiGLUPacked
    common = dict(img_size=56, patch_size=14, embed_dim=32, depth=3, num_heads=4, init_values=1e-5,
                  num_classes=0)
    for tag, extra, seed in [("timm56", dict(mlp_ratio=4), 4),
                             ("timm_swiglu56", dict(mlp_ratio=176 / 32, mlp_layer=SwiGLUPacked,
                                                    act_layer=nn.SiLU), 5)]:
        model = timm.models.vision_transformer.VisionTransformer(**common, **extra)
        randomize(model, seed=seed)
        save_tensors(os.path.join(FIXTURES, f"dinov2_small_{tag[:-2]}.safetensors"), model.state_dict())
        x = torch.randn(2, 3, 56, 56)
        record(tag, x, *timm_features(model, x))

    save_tensors(os.path.join(FIXTURES, "dinov2_small_io.safetensors"), io)

    # The published grid: a 37x37 position embedding (518 px), as every dinov2_vit*14_pretrain.pth
    # stores it, saved as the official flat `.pth`; a 224 px input (16x16 patches) goes through
    # the official interpolation from 518 px, as in a training run.
    model = vits.DinoVisionTransformer(ffn_layer="mlp", **dict(SMALL, img_size=518, depth=2))
    randomize(model, seed=8)
    save_torch(os.path.join(FIXTURES, "dinov2_small518.pth"), model.state_dict())
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(9))
    pooled, tokens = features(model, x)
    save_tensors(os.path.join(FIXTURES, "dinov2_small518_io.safetensors"),
                 {"pixels": x, "pooled": pooled, "tokens": tokens})


if __name__ == "__main__":
    main()
