#!/usr/bin/env python3
"""Parity fixtures for medfm's SAM2.1 image encoder (Hiera trunk + FPN neck), made with PyPI `sam2`.

The reference tool builds SAM2.1 with `build_sam2("sam2.1_hiera_{b+,l}.yaml")`, loads the official
checkpoint and keeps `model.image_encoder`; its features are `vision_features` (the neck output at
stride 16, 256 channels) flattened to (B, h*w, 256) (`tokens`) and their mean over tokens
(`pooled`). This script instantiates the same modules directly from the yaml values (no hydra,
no checkpoint download), randomises every parameter (pos embeds and norms included: the
defaults are zeros/ones and would hide mistakes) and writes:

  small  (default; committed, tests/fixtures/parity/):
         sam2_tiny.safetensors   weights as the official checkpoint names them
                                 (`image_encoder.*` plus decoy keys of other SAM parts)
         sam2_tiny.pt            the same as `torch.save({'model': ...})`, the official layout
         sam2_tiny_224.safetensors, sam2_tiny_1024.safetensors, sam2_tiny_gray_224.safetensors
                                 reference `tokens` and `pooled` (input: see `pattern_input`)
  keys   (committed, tests/fixtures/keys/): sam2_b.json, sam2_l.json: parameter count and the
         image encoder's state-dict keys and shapes at full size.
  full   (heavy; run under `flock /tmp/medfm-heavy.lock`, written to /tmp, never committed):
         full-size random weights (`{name}.pt`, official layout) and reference outputs at 224
         (batch 2) and 1024 (batch 1).

Inputs are not stored: `pattern_input` is an integer hash that the Rust tests reproduce exactly.
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file
from sam2.modeling.backbones.hieradet import Hiera
from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
from sam2.modeling.position_encoding import PositionEmbeddingSine

# Trunk and neck arguments exactly as configs/sam2.1/sam2.1_hiera_{b+,l}.yaml give them (the
# reference's vendored yaml files are identical). Unlisted trunk arguments are Hiera's defaults.
CONFIGS = {
    "sam2_b": dict(
        trunk=dict(embed_dim=112, num_heads=2),
        channels=[896, 448, 224, 112],
        d_model=256,
    ),
    "sam2_l": dict(
        trunk=dict(
            embed_dim=144,
            num_heads=2,
            stages=[2, 6, 36, 4],
            global_att_blocks=[23, 33, 43],
            window_pos_embed_bkg_spatial_size=[7, 7],
            window_spec=[8, 4, 16, 8],
        ),
        channels=[1152, 576, 288, 144],
        d_model=256,
    ),
    # Small enough to commit, but it takes every code path of the full models: q-pooling at
    # all three stage changes (the first block of a stage uses the previous stage's window),
    # windows that need padding (14 -> 18 and 7 -> 9 at 224, like sam2_l's 16/8 windows),
    # pooling inside padded windows, a global-attention block, a background pos embed that is
    # resized, several heads, and the neck's top-down sum.
    "sam2_tiny": dict(
        trunk=dict(
            embed_dim=8,
            num_heads=1,
            stages=[1, 2, 3, 2],
            global_att_blocks=[4],
            window_pos_embed_bkg_spatial_size=[7, 7],
            window_spec=[8, 4, 6, 3],
        ),
        channels=[64, 32, 16, 8],
        d_model=32,
    ),
}

# Keys of other SAM2.1 parts that a real checkpoint holds next to `image_encoder.*`; the
# loader must ignore them.
DECOYS = {
    "sam_mask_decoder.iou_token.weight": (1, 4),
    "memory_encoder.out_proj.weight": (4, 4),
    "maskmem_tpos_enc": (7, 1, 1, 4),
    "no_mem_embed": (1, 1, 4),
}


def build(name):
    cfg = CONFIGS[name]
    trunk = Hiera(**cfg["trunk"])
    neck = FpnNeck(
        position_encoding=PositionEmbeddingSine(
            num_pos_feats=cfg["d_model"], normalize=True, scale=None, temperature=10000
        ),
        d_model=cfg["d_model"],
        backbone_channel_list=cfg["channels"],
        fpn_top_down_levels=[2, 3],
        fpn_interp_model="nearest",
    )
    return ImageEncoder(trunk=trunk, neck=neck, scalp=1).eval()


def randomise(model, seed):
    """Default init for linear/conv weights, random values for everything the defaults leave
    at zero or one (pos embeds, norms, biases), so no term of the forward is trivially absent."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("pos_embed") or name.endswith("pos_embed_window"):
                p.normal_(0.0, 0.5)
            elif ".norm" in name and name.endswith(".weight"):
                p.uniform_(0.5, 1.5)
            elif name.endswith(".bias"):
                p.uniform_(-0.1, 0.1)
            else:
                bound = 1.0 / max(1, p[0].numel()) ** 0.5
                p.uniform_(-bound * 3**0.5, bound * 3**0.5)


def pattern_input(shape):
    """Deterministic pseudo-random pixels in [-1, 1]: an integer hash of the flat index (exact in
    int64 and in the float conversion, so Rust reproduces it bit for bit)."""
    n = 1
    for s in shape:
        n *= s
    i = torch.arange(n, dtype=torch.int64)
    h = (i * 1103515245 + 12345) % (2**31)
    return ((h % 2001).to(torch.float32) / 1000.0 - 1.0).reshape(shape)


def features(model, x):
    with torch.no_grad():
        vf = model(x)["vision_features"]
        b, c, h, w = vf.shape
        tokens = vf.permute(0, 2, 3, 1).reshape(b, h * w, c)
        pooled = tokens.mean(dim=1)
    return {"tokens": tokens.contiguous(), "pooled": pooled.contiguous()}


def gray_copy(model, name):
    """The reference's grayscale model: patch conv rebuilt for 1 channel from the RGB kernel's
    first channel (`weight.repeat(1, 4, 1, 1)[:, :1]`)."""
    gray = build(name)
    gray.load_state_dict(model.state_dict())
    old = gray.trunk.patch_embed.proj
    conv = torch.nn.Conv2d(1, old.out_channels, kernel_size=7, stride=4, padding=3)
    with torch.no_grad():
        conv.weight.copy_(old.weight.repeat(1, 4, 1, 1)[:, :1])
        conv.bias.copy_(old.bias)
    gray.trunk.patch_embed.proj = conv
    return gray.eval()


def official_state_dict(model):
    return {"image_encoder." + k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def write_weights(model, out, stem, with_decoys, safetensors=True):
    sd = official_state_dict(model)
    if with_decoys:
        g = torch.Generator().manual_seed(1)
        for k, shape in DECOYS.items():
            sd[k] = torch.randn(shape, generator=g)
    if safetensors:
        save_file(sd, os.path.join(out, stem + ".safetensors"))
    torch.save({"model": sd}, os.path.join(out, stem + ".pt"))


def cmd_small(out):
    os.makedirs(out, exist_ok=True)
    model = build("sam2_tiny")
    randomise(model, seed=0)
    write_weights(model, out, "sam2_tiny", with_decoys=True)
    save_file(features(model, pattern_input((2, 3, 224, 224))), os.path.join(out, "sam2_tiny_224.safetensors"))
    save_file(features(model, pattern_input((1, 3, 1024, 1024))), os.path.join(out, "sam2_tiny_1024.safetensors"))
    save_file(
        features(gray_copy(model, "sam2_tiny"), pattern_input((2, 1, 224, 224))),
        os.path.join(out, "sam2_tiny_gray_224.safetensors"),
    )


def compact_json(doc):
    """Indented JSON with one line per [key, shape] entry (readable diffs)."""
    head = {k: v for k, v in doc.items() if k != "keys"}
    lines = ",\n".join("  " + json.dumps(entry) for entry in doc["keys"])
    return json.dumps(head, indent=1)[:-2] + ',\n "keys": [\n' + lines + "\n ]\n}\n"


def cmd_keys(out):
    os.makedirs(out, exist_ok=True)
    for name in ("sam2_b", "sam2_l"):
        model = build(name)
        doc = {
            "name": name,
            "reference": "sam2 1.1.0 ImageEncoder(Hiera, FpnNeck, scalp=1) from configs/sam2.1 yaml",
            "param_count": sum(p.numel() for p in model.parameters()),
            "keys": [[k, list(v.shape)] for k, v in model.state_dict().items()],
        }
        with open(os.path.join(out, name + ".json"), "w") as f:
            f.write(compact_json(doc))


def cmd_full(out, names):
    os.makedirs(out, exist_ok=True)
    for name in names:
        model = build(name)
        randomise(model, seed=0)
        write_weights(model, out, name, with_decoys=False, safetensors=False)
        for size, batch in ((224, 2), (1024, 1)):
            feats = features(model, pattern_input((batch, 3, size, size)))
            save_file(feats, os.path.join(out, f"{name}_{size}.safetensors"))
            print(f"{name} @ {size}: tokens {tuple(feats['tokens'].shape)}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="small", choices=["small", "keys", "full"])
    ap.add_argument("--out", help="output folder (defaults per mode)")
    ap.add_argument("--names", nargs="+", default=["sam2_b", "sam2_l"], help="full mode: which models")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.what == "small":
        cmd_small(args.out or "tests/fixtures/parity")
    elif args.what == "keys":
        cmd_keys(args.out or "tests/fixtures/keys")
    else:
        cmd_full(args.out or "/tmp/medfm-parity-sam2", args.names)


if __name__ == "__main__":
    main()
