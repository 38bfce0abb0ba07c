#!/usr/bin/env python3
"""Full-size state-dict key/shape lists and parameter counts of the reference implementations,
for tests/fixtures/keys/<name>.json (compared by tests/keys_vit.rs). Models are built on the meta
device: no weights, no memory, seconds.

- MAE vit_base_patch16 / vit_large_patch16 / vit_huge_patch14: the reference's
  `utils/transformers/MAE.py` (timm VisionTransformer, num_classes=0) at 224 px.
- DINOv2 dinov2_vit{s,b,l,g}14: the official hub builders (pretrained=False) from a local
  facebookresearch/dinov2 (see gen_parity_dinov2.py).
- CLIP clip_vitb16, CoCa coca_ViT-B-32 / coca_ViT-L-14: open_clip's `.visual`.
- deit_base: the reference's `utils/transformers/deit.py` deit_base with `patch_embed` removed
  (the attention head's transformer).

Usage: .venv/bin/python scripts/gen_keys_vit.py
"""
import json
import os
from functools import partial

import open_clip
import torch
import torch.nn as nn

from gen_parity_dinov2 import official_code
from parity_common import KEYS, key_shapes, param_count, reference_module_dir


def write(name, reference, module):
    doc = {"name": name, "reference": reference, "param_count": param_count(module), "keys": key_shapes(module)}
    path = os.path.join(KEYS, f"{name}.json")
    with open(path, "w") as f:
        f.write("{\n")
        f.write(f' "name": {json.dumps(doc["name"])},\n "reference": {json.dumps(reference)},\n')
        f.write(f' "param_count": {doc["param_count"]},\n "keys": [\n')
        f.write(",\n".join(f"  {json.dumps(k)}" for k in doc["keys"]))
        f.write("\n ]\n}\n")
    print(f"{name}: {doc['param_count']} parameters, {len(doc['keys'])} tensors")


def main():
    vits = official_code(None)
    reference_module_dir(["utils/transformers/MAE.py", "utils/transformers/deit.py",
                          "utils/transformers/transformers_utils.py"])
    import reftf.deit as deit  # noqa: E402
    import reftf.MAE as mae  # noqa: E402
    from dinov2.hub import backbones

    # timm computes its stochastic-depth schedule with .item(), which the meta device refuses.
    linspace = torch.linspace
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    with torch.device("meta"):
        for name, kw in [("vit_base_patch16", dict(patch_size=16, embed_dim=768, depth=12, num_heads=12)),
                         ("vit_large_patch16", dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16)),
                         ("vit_huge_patch14", dict(patch_size=14, embed_dim=1280, depth=32, num_heads=16))]:
            model = mae.VisionTransformer_MAE(num_classes=0, img_size=224, mlp_ratio=4, qkv_bias=True,
                                              norm_layer=partial(nn.LayerNorm, eps=1e-6), **kw)
            write(name, "reference utils/transformers/MAE.py (timm VisionTransformer, num_classes=0), 224 px", model)
        for name in ["dinov2_vits14", "dinov2_vitb14", "dinov2_vitl14", "dinov2_vitg14"]:
            write(name, f"facebookresearch/dinov2 hub {name}(pretrained=False)", getattr(backbones, name)(pretrained=False))
        model = deit.deit_base(num_classes=0)
        model.patch_embed = nn.Identity()
        write("deit_base", "reference utils/transformers/deit.py deit_base, patch_embed removed", model)
    torch.linspace = linspace
    for name, arch in [("clip_vitb16", "ViT-B-16"), ("coca_ViT-B-32", "coca_ViT-B-32"), ("coca_ViT-L-14", "coca_ViT-L-14")]:
        model = open_clip.create_model(arch, pretrained=None, device="meta")
        write(name, f"open_clip {open_clip.__version__} create_model('{arch}').visual", model.visual)


if __name__ == "__main__":
    main()
