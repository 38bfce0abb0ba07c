#!/usr/bin/env python3
"""Parity fixtures for the open_clip trunks: CLIP `clip_vitb16` and CoCa `coca_ViT-B-32` /
`coca_ViT-L-14`.

Reference: PyPI `open_clip_torch` (what the reference repository calls). Small models (patch 8,
width 32, 2 layers, embedding 24; CoCa's pooler with 16 queries and 4 heads, key width 32 !=
query width 24) with random weights; the whole open_clip model's state dict (vision and text
towers, CoCa's text decoder) is saved as `open_clip_model.safetensors` / `open_clip_pytorch_model.bin`
would be. Features as the reference reads them: CLIP pooled = `visual(x)` (ln_post, cls,
@ proj), tokens = ln_post'd patch tokens; CoCa pooled = pooler output 0 after ln_post @ proj,
tokens = [pooled ; outputs 1..]. CLIP also runs at 48 px from the 32 px checkpoint
(`force_image_size` + `resize_pos_embed`, bicubic with antialias) and with a 1-channel conv1
made from the RGB kernel's first channel, as the reference's Classifier does.

Usage: .venv/bin/python scripts/gen_parity_clip.py
"""
import os

import torch
import torch.nn as nn
from open_clip.coca_model import CoCa
from open_clip.model import CLIP, resize_pos_embed

from parity_common import FIXTURES, randomize, save_tensors, save_torch

TEXT = dict(context_length=8, vocab_size=50, width=16, heads=2, layers=1)
VISION = dict(image_size=32, layers=2, width=32, patch_size=8, head_width=8)


def clip_model(image_size=32):
    return CLIP(embed_dim=24, vision_cfg=dict(VISION, image_size=image_size), text_cfg=TEXT)


def clip_features(visual, x):
    visual.eval()
    visual.output_tokens = True
    with torch.no_grad():
        pooled, tokens = visual(x)
    return pooled, tokens


def main():
    torch.manual_seed(0)
    io = {}

    def record(tag, x, pooled, tokens):
        io[f"pixels_{tag}"], io[f"pooled_{tag}"], io[f"tokens_{tag}"] = x, pooled, tokens

    clip = clip_model()
    randomize(clip, seed=6)
    sd = clip.state_dict()
    save_tensors(os.path.join(FIXTURES, "clip_small.safetensors"), sd)
    x = torch.randn(2, 3, 32, 32)
    record("clip32", x, *clip_features(clip.visual, x))
    # force_image_size=48: a 6x6 grid, the checkpoint's 4x4 positions resized at load.
    big = clip_model(48)
    sd48 = dict(sd)
    resize_pos_embed(sd48, big)
    big.load_state_dict(sd48)
    x = torch.randn(2, 3, 48, 48)
    record("clip48", x, *clip_features(big.visual, x))
    # One input channel, as the reference's Classifier rebuilds conv1.
    gray = clip_model()
    gray.load_state_dict(sd)
    w = gray.visual.conv1.weight.data
    gray.visual.conv1 = nn.Conv2d(1, 32, kernel_size=8, stride=8, bias=False)
    gray.visual.conv1.weight.data = w.repeat(1, 4, 1, 1)[:, :1]
    x = torch.randn(2, 1, 32, 32)
    record("clipgray32", x, *clip_features(gray.visual, x))

    coca = CoCa(
        embed_dim=24,
        multimodal_cfg=dict(TEXT, attn_pooler_heads=2),
        text_cfg=dict(TEXT, embed_cls=True, output_tokens=True),
        vision_cfg=dict(VISION, attentional_pool=True, attn_pooler_queries=16, attn_pooler_heads=4,
                        output_tokens=True),
    )
    randomize(coca, seed=7)
    save_torch(os.path.join(FIXTURES, "coca_small.bin"), coca.state_dict())
    save_tensors(os.path.join(FIXTURES, "coca_small.safetensors"), coca.state_dict())
    coca.visual.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        x_cls, x_emb = coca.visual(x)
    record("coca32", x, x_cls, torch.cat((x_cls.unsqueeze(1), x_emb), dim=1))

    save_tensors(os.path.join(FIXTURES, "clip_small_io.safetensors"), io)


if __name__ == "__main__":
    main()
