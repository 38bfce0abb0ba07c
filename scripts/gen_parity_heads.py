#!/usr/bin/env python3
"""Parity fixtures for the attention head (`model_params.backbone_type = "deit_base"`).

Reference: the reference repository's own modules, read from its local mirror (not committed):
`utils/transformers/deit.py` (the DINO-style DeiT VisionTransformer whose
`interpolate_pos_encoding` resizes the 14x14 position grid by `scale_factor = sqrt(N / 196)`),
composed as its wrappers do: `linear_projector = Sequential(Linear(D, 768), LayerNorm(768))`,
the DeiT with `patch_embed = Identity()`, and `Classifier.fc = Linear(768, n_classes)` on the
normed cls token. A small DeiT (width 32 instead of 768, 2 blocks) keeps the 14x14 grid, so the
resizing paths are the real ones: 196 tokens (as stored), 256 (CoCa, DINOv2 at 224: upsampled),
49 (downsampled) and 16.

The DeiT weights are saved in the official `deit_base_patch16_224-*.pth` layout (`{'model':
...}` with the ImageNet `head.*` and `patch_embed.*` the head drops) and as safetensors.

Usage: .venv/bin/python scripts/gen_parity_heads.py
"""
import os
from functools import partial

import torch
import torch.nn as nn

from parity_common import FIXTURES, randomize, reference_module_dir, save_tensors, save_torch

TOKEN_DIM, WIDTH, N_CLASSES = 40, 32, 5


def main():
    torch.manual_seed(0)
    reference_module_dir(["utils/transformers/deit.py", "utils/transformers/transformers_utils.py"])
    import reftf.deit as deit  # noqa: E402

    # deit_base's constructor with a smaller width and depth; the position grid stays 14x14.
    model = deit.VisionTransformer(img_size=[224], patch_size=16, embed_dim=WIDTH, depth=2, num_heads=4,
                                   mlp_ratio=4, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                                   num_classes=0)
    randomize(model, seed=8)
    official = dict(model.state_dict())
    official["head.weight"] = torch.randn(1000, WIDTH)
    official["head.bias"] = torch.randn(1000)
    save_torch(os.path.join(FIXTURES, "deit_small.pth"), {"model": official})
    save_tensors(os.path.join(FIXTURES, "deit_small.safetensors"), official)

    model.patch_embed = nn.Identity()
    projector = nn.Sequential(nn.Linear(TOKEN_DIM, WIDTH), nn.LayerNorm(WIDTH))
    fc = nn.Linear(WIDTH, N_CLASSES)
    randomize(projector, seed=9)
    randomize(fc, seed=10)
    head = {f"projector.{k}": v for k, v in projector.state_dict().items()}
    head.update({f"fc.{k}": v for k, v in fc.state_dict().items()})

    io = {}
    for n in [196, 256, 49, 16]:
        tokens = torch.randn(2, n, TOKEN_DIM)
        with torch.no_grad():
            logits = fc(model(projector(tokens)))
        io[f"tokens_{n}"], io[f"logits_{n}"] = tokens, logits
    save_tensors(os.path.join(FIXTURES, "head_small.safetensors"), head)
    save_tensors(os.path.join(FIXTURES, "head_small_io.safetensors"), io)


if __name__ == "__main__":
    main()
