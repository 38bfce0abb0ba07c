#!/usr/bin/env python3
"""Full-size random-weight parity references for the ViT-family names (run by
scripts/parity_full_vit.sh, one name at a time, under the heavy lock).

For NAME, writes OUT/NAME/ with the random weights in the official layout (MAE `{'model': ...}`
.pth, DINOv2 flat .pth, open_clip whole-model safetensors / CoCa .bin, DeiT `{'model': ...}`)
and io.safetensors: a random input at 224 px and the reference's pooled and tokens (for
deit_base: random trunk tokens [2, 256, 1024] and the attention head's logits).

Usage: .venv/bin/python scripts/gen_parity_full_vit.py NAME OUT
"""
import os
import sys

import open_clip
import torch
import torch.nn as nn

from gen_parity_dinov2 import features as dinov2_features, official_code
from parity_common import randomize, reference_module_dir, save_tensors, save_torch

MAE = {"vit_base_patch16", "vit_large_patch16", "vit_huge_patch14"}
DINOV2 = {"dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14"}
OPEN_CLIP = {"clip_vitb16": "ViT-B-16", "coca_ViT-B-32": "coca_ViT-B-32", "coca_ViT-L-14": "coca_ViT-L-14"}


def reference(name):
    """(module whose state dict is the official checkpoint, x -> (pooled, tokens)) as the
    reference repository builds and reads NAME at 224 px (random initial weights)."""
    if name in MAE:
        reference_module_dir(["utils/transformers/MAE.py"])
        import reftf.MAE as mae
        model = getattr(mae, name)(img_size=224, checkpoint={"model": {}}).eval()

        def run(x):
            y = model.forward_features(x)
            return y[:, 1:].mean(dim=1), y[:, 1:]
        return model, run
    if name in DINOV2:
        official_code(None)
        from dinov2.hub import backbones
        model = getattr(backbones, name)(pretrained=False).eval()
        return model, lambda x: dinov2_features(model, x)
    if name in OPEN_CLIP:
        model = open_clip.create_model(OPEN_CLIP[name], pretrained=None).eval()
        visual = model.visual
        visual.output_tokens = True

        def run(x):
            pooled, tokens = visual(x)
            if name.startswith("coca"):
                tokens = torch.cat((pooled.unsqueeze(1), tokens), dim=1)
            return pooled, tokens
        return model, run
    sys.exit(f"unknown name {name}")


def deit_head(path):
    reference_module_dir(["utils/transformers/deit.py", "utils/transformers/transformers_utils.py"])
    import reftf.deit as deit
    model = deit.deit_base(num_classes=0)
    randomize(model, seed=14)
    official = dict(model.state_dict())
    official["head.weight"], official["head.bias"] = torch.randn(1000, 768), torch.randn(1000)
    save_torch(path("weights.pth"), {"model": official})
    model.patch_embed = nn.Identity()
    model.eval()
    projector = nn.Sequential(nn.Linear(1024, 768), nn.LayerNorm(768))
    fc = nn.Linear(768, 5)
    randomize(projector, seed=15)
    randomize(fc, seed=16)
    head = {f"projector.{k}": v for k, v in projector.state_dict().items()}
    head.update({f"fc.{k}": v for k, v in fc.state_dict().items()})
    save_tensors(path("head.safetensors"), head)
    x = torch.randn(2, 256, 1024)
    with torch.no_grad():
        logits = fc(model(projector(x)))
    save_tensors(path("io.safetensors"), {"tokens": x, "logits": logits})


def main(name, out):
    torch.manual_seed(0)
    os.makedirs(os.path.join(out, name), exist_ok=True)
    path = lambda f: os.path.join(out, name, f)  # noqa: E731
    if name == "deit_base":
        return deit_head(path)
    model, run = reference(name)
    randomize(model, seed=11)
    sd = model.state_dict()
    if name in MAE:
        save_torch(path("weights.pth"), {"model": sd})
    elif name in DINOV2 or name.startswith("coca"):
        save_torch(path("weights.pth" if name in DINOV2 else "weights.bin"), sd)
    else:
        save_tensors(path("weights.safetensors"), sd)
    del sd
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        pooled, tokens = run(x)
    save_tensors(path("io.safetensors"), {"pixels": x, "pooled": pooled, "tokens": tokens})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
