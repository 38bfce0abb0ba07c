#!/usr/bin/env python3
"""Parity fixtures for the MAE trunks (vit_base_patch16 / vit_large_patch16 / vit_huge_patch14).

Reference: the reference repository's own `utils/transformers/MAE.py` (timm's VisionTransformer
with its `forward_features` and `interpolate_pos_embed`), read from the local mirror and not
committed. A small ViT (patch 8, width 32, 2 blocks) gets random weights, saved in the official
layout (`{'model': ...}` with decoder keys, as `mae_pretrain_vit_*.pth`) and as a flat
safetensors file (timm's layout: the same names). The checkpoint's position grid is 4x4 (32 px);
the fixtures run it at 48 px (grid resized at load, as the reference does) and, with a 1-channel
first convolution made from the RGB kernel's first channel, at 32 px.

Usage: .venv/bin/python scripts/gen_parity_mae.py
"""
import os
from functools import partial

import torch
import torch.nn as nn

from parity_common import FIXTURES, randomize, reference_module_dir, save_tensors, save_torch

SMALL = dict(patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=4, qkv_bias=True,
             norm_layer=partial(nn.LayerNorm, eps=1e-6))


def reference_features(mae, checkpoint, img_size, in_chans, x):
    model = mae.VisionTransformer_MAE(num_classes=0, img_size=img_size, **SMALL)
    ckpt = {k: v.clone() for k, v in checkpoint["model"].items()}
    mae.interpolate_pos_embed(model, ckpt)
    model.load_state_dict(ckpt, strict=False)
    if in_chans != 3:
        # The reference's Classifier: a new patch embedding fed the RGB kernel's first channel(s).
        from timm.layers import PatchEmbed
        w = model.patch_embed.proj.weight.data.repeat(1, 4, 1, 1)[:, :in_chans]
        b = model.patch_embed.proj.bias.data
        model.patch_embed = PatchEmbed(img_size=img_size, patch_size=8, embed_dim=32, in_chans=in_chans)
        model.patch_embed.proj.weight.data = w
        model.patch_embed.proj.bias.data = b
    model.eval()
    with torch.no_grad():
        y = model.forward_features(x)
    tokens = y[:, 1:]
    return tokens.mean(dim=1), tokens


def main():
    torch.manual_seed(0)
    pkg = reference_module_dir(["utils/transformers/MAE.py"])
    import reftf.MAE as mae  # noqa: E402  (extracted above)

    src = mae.VisionTransformer_MAE(num_classes=0, img_size=32, **SMALL)
    randomize(src, seed=1)
    encoder = {k: v.clone() for k, v in src.state_dict().items()}
    # What the official pre-training checkpoints also carry; the trunk must ignore them.
    extra = {"mask_token": torch.randn(1, 1, 16), "decoder_embed.weight": torch.randn(16, 32),
             "decoder_pos_embed": torch.randn(1, 17, 16), "decoder_norm.weight": torch.randn(16)}
    checkpoint = {"model": {**encoder, **extra}}
    save_torch(os.path.join(FIXTURES, "mae_small.pth"), checkpoint)
    save_tensors(os.path.join(FIXTURES, "mae_small.safetensors"), {**encoder, **extra})

    io = {}
    for tag, img, chans in [("rgb48", 48, 3), ("gray32", 32, 1)]:
        x = torch.randn(2, chans, img, img)
        pooled, tokens = reference_features(mae, checkpoint, img, chans, x)
        io[f"pixels_{tag}"], io[f"pooled_{tag}"], io[f"tokens_{tag}"] = x, pooled, tokens
    save_tensors(os.path.join(FIXTURES, "mae_small_io.safetensors"), io)
    del pkg


if __name__ == "__main__":
    main()
