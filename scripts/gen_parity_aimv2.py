#!/usr/bin/env python3
"""AIMv2 parity fixtures from Apple's reference implementation (ml-aim).

The reference tool loaded `apple/aimv2-*-patch14-224` through transformers' remote code; that
code and Apple's `ml-aim` repository define the same model and the same state-dict layout
(`preprocessor.*`, `trunk.*`). ml-aim is not on PyPI: point --ml-aim at a checkout holding its
`aim-v1/` and `aim-v2/` folders (it is imported from there, never copied into medfm), e.g.

    git clone https://github.com/apple/ml-aim /tmp/ml-aim

Modes:
  default     small-config fixtures under tests/fixtures/parity/ (random weights saved in the
              official layout and in transformers' native `Aimv2VisionModel` layout, inputs,
              reference `pooled`/`tokens`, also for 1-channel input) and the full-size key/shape
              lists under tests/fixtures/keys/. transformers' native model is run on the same
              weights as a cross-check of the reference.
  --full NAME random full-size weights + input + reference outputs for NAME
              (aimv2-large-patch14-224 or aimv2-huge-patch14-224) under --out, for the
              #[ignore]d `aimv2_full_size_parity` test. Needs several GiB: run it under
              `flock /tmp/medfm-heavy.lock`.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent

# Tiny but complete: several heads, SwiGLU hidden width != 4 * dim, two blocks, 4x4 patches.
TINY = dict(img_size=56, patch_size=14, embed_dim=48, mlp_hidden_dim=128, num_blocks=2, num_heads=4)
FULL = {
    "aimv2-large-patch14-224": "aimv2_large",
    "aimv2-huge-patch14-224": "aimv2_huge",
}


def import_ml_aim(path: Path):
    for sub in ("aim-v1", "aim-v2"):
        if not (path / sub / "aim").is_dir():
            sys.exit(f"--ml-aim {path}: expected a checkout of apple/ml-aim with {sub}/aim/")
        sys.path.insert(0, str(path / sub))
    from aim.v2.torch import models  # noqa: E402

    return models


def randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Make every tensor matter: norm weights away from 1, a visible position embedding."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "norm_" in name or "post_trunk_norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
            elif name == "preprocessor.pos_embed":
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))


@torch.no_grad()
def reference_features(model, pixels):
    tokens = model(pixels)  # head is Identity: post_trunk_norm(x)
    return tokens.mean(dim=1).contiguous(), tokens.contiguous()


def gray_model(model, in_chans: int, how: str):
    """The 1-channel trunk exactly as the reference tool builds it ("first") or timm-style ("sum")."""
    import copy

    m = copy.deepcopy(model)
    proj = m.preprocessor.patchifier.proj
    w = proj.weight.data
    if how == "first":
        w = w.repeat(1, 4, 1, 1)[:, :in_chans]
    else:
        w = w.sum(dim=1, keepdim=True)
    new = torch.nn.Conv2d(in_chans, w.shape[0], kernel_size=proj.kernel_size, stride=proj.stride)
    new.weight.data = w.clone()
    new.bias.data = proj.bias.data.clone()
    m.preprocessor.patchifier.proj = new
    return m


def to_hf_native(sd: dict, num_blocks: int) -> dict:
    """The official layout renamed to transformers' native `Aimv2VisionModel` layout."""
    out = {
        "embeddings.patch_embed.weight": sd["preprocessor.patchifier.proj.weight"],
        "embeddings.patch_embed.bias": sd["preprocessor.patchifier.proj.bias"],
        "embeddings.rms_norm.weight": sd["preprocessor.patchifier.norm.weight"],
        "embeddings.position_embedding.weight": sd["preprocessor.pos_embed"][0],
        "rms_norm.weight": sd["trunk.post_trunk_norm.weight"],
    }
    for i in range(num_blocks):
        src, dst = f"trunk.blocks.{i}.", f"encoder.layers.{i}."
        q, k, v = sd[src + "attn.qkv.weight"].chunk(3, dim=0)
        out[dst + "attention.q_proj.weight"] = q
        out[dst + "attention.k_proj.weight"] = k
        out[dst + "attention.v_proj.weight"] = v
        out[dst + "attention.out_proj.weight"] = sd[src + "attn.proj.weight"]
        out[dst + "ffn.gate_proj.weight"] = sd[src + "mlp.fc1.weight"]
        out[dst + "ffn.up_proj.weight"] = sd[src + "mlp.fc3.weight"]
        out[dst + "ffn.down_proj.weight"] = sd[src + "mlp.fc2.weight"]
        out[dst + "rms_norm1.weight"] = sd[src + "norm_1.weight"]
        out[dst + "rms_norm2.weight"] = sd[src + "norm_2.weight"]
    return {k: v.contiguous() for k, v in out.items()}


@torch.no_grad()
def hf_cross_check(cfg: dict, hf_sd: dict, pixels, tokens_ref) -> float:
    from transformers import Aimv2VisionConfig, Aimv2VisionModel

    hcfg = Aimv2VisionConfig(
        hidden_size=cfg["embed_dim"],
        intermediate_size=cfg["mlp_hidden_dim"],
        num_hidden_layers=cfg["num_blocks"],
        num_attention_heads=cfg["num_heads"],
        image_size=cfg["img_size"],
        patch_size=cfg["patch_size"],
        rms_norm_eps=1e-5,
        use_head=False,
    )
    hf = Aimv2VisionModel(hcfg).eval()
    missing, unexpected = hf.load_state_dict(hf_sd, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    out = hf(pixel_values=pixels).last_hidden_state
    return (out - tokens_ref).abs().max().item()


def compact_json(doc: dict) -> str:
    """Pretty JSON with one [name, shape] pair per line (readable diffs)."""
    keys = ",\n".join("  " + json.dumps(k) for k in doc["keys"])
    head = json.dumps({k: v for k, v in doc.items() if k != "keys"}, indent=1)[:-2]
    return f'{head},\n "keys": [\n{keys}\n ]\n}}\n'


def write_key_lists(models, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, fn in FULL.items():
        with torch.device("meta"):
            m = getattr(models, fn)()
        sd = m.state_dict()
        doc = {
            "name": name,
            "reference": f"ml-aim aim.v2.torch.models.{fn}() state_dict",
            "param_count": sum(p.numel() for p in m.parameters()),
            "keys": [[k, list(v.shape)] for k, v in sd.items()],
        }
        path = out_dir / f"{name}.json"
        path.write_text(compact_json(doc))
        print(f"{path}: {len(sd)} tensors, {doc['param_count']} parameters")


def tiny_fixtures(models, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(20240607)
    model = models.AIMv2VisionEncoder(**TINY).eval()
    randomize(model, gen)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    hw = TINY["img_size"]

    io = {"pixels": torch.randn(2, 3, hw, hw, generator=gen)}
    io["pooled"], io["tokens"] = reference_features(model, io["pixels"])
    io["pixels_gray"] = torch.randn(2, 1, hw, hw, generator=gen)
    for how in ("first", "sum"):
        g = gray_model(model, 1, how).eval()
        io[f"pooled_gray_{how}"], io[f"tokens_gray_{how}"] = reference_features(g, io["pixels_gray"])

    hf_sd = to_hf_native(sd, TINY["num_blocks"])
    err = hf_cross_check(TINY, hf_sd, io["pixels"], io["tokens"])
    print(f"transformers Aimv2VisionModel vs ml-aim on the tiny weights: max abs {err:.3e}")
    assert err < 1e-5, "the two reference implementations disagree"

    save_file(sd, out_dir / "aimv2_tiny.safetensors")
    save_file(hf_sd, out_dir / "aimv2_tiny_hf.safetensors")
    save_file(io, out_dir / "aimv2_tiny_io.safetensors")
    meta = dict(TINY, eps=1e-5, seed=20240607, torch=torch.__version__,
                reference="ml-aim aim.v2.torch.models.AIMv2VisionEncoder")
    (out_dir / "aimv2_tiny.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"wrote tiny AIMv2 fixtures to {out_dir}")


def full_fixture(models, name: str, out: Path, batch: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = getattr(models, FULL[name])().eval()  # the reference's own random init
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # visible position embedding and norm weights, as in the tiny fixture
        model.preprocessor.pos_embed.copy_(0.5 * torch.randn(model.preprocessor.pos_embed.shape, generator=gen))
        for n, p in model.named_parameters():
            if p.dim() == 1 and "norm" in n:
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=gen))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    io = {"pixels": torch.randn(batch, 3, 224, 224, generator=gen)}
    io["pooled"], io["tokens"] = reference_features(model, io["pixels"])
    save_file(io, out / "io.safetensors")
    print(f"wrote {name} random weights and reference outputs to {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ml-aim", type=Path, required=True, help="checkout of github.com/apple/ml-aim")
    ap.add_argument("--full", choices=sorted(FULL), help="write a full-size fixture instead")
    ap.add_argument("--out", type=Path, help="output folder for --full")
    ap.add_argument("--batch", type=int, default=2, help="images in the --full fixture")
    args = ap.parse_args()
    models = import_ml_aim(args.ml_aim)
    if args.full:
        out = args.out or Path("/tmp/medfm-parity") / args.full
        full_fixture(models, args.full, out, args.batch)
    else:
        tiny_fixtures(models, ROOT / "tests/fixtures/parity")
        write_key_lists(models, ROOT / "tests/fixtures/keys")


if __name__ == "__main__":
    main()
