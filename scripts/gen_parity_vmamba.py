#!/usr/bin/env python3
"""VMamba v2 parity fixtures, produced by the official implementation (MzeroMiko/VMamba).

The official code is not vendored: point --vmamba-repo (or $VMAMBA_REPO) at a checkout or an
export of https://github.com/MzeroMiko/VMamba, e.g.

    git -C <mirror of MzeroMiko/VMamba> archive HEAD classification/models | tar -x -C /tmp/vmamba-ref
    .venv/bin/python scripts/gen_parity_vmamba.py --vmamba-repo /tmp/vmamba-ref

It runs on CPU with the repository's pure-torch selective scan (`selective_scan_torch`, forced
here) and its torch cross-scan/merge; needs torch, timm, einops, fvcore (scripts/setup.sh --ref).

Modes (default: --small --keys):
  --small        tests/fixtures/parity/vmamba_tiny.pth (release layout: model, model_ema,
                 optimizer, config, ...) of a tiny config (dims 8-64, depths 1,1,2,1) with
                 randomised weights, and vmamba_tiny_io.safetensors: a non-square input and the
                 reference pooled/tokens; plus vmamba_scan_stress.safetensors: one selective scan
                 over 3136 steps (a 56x56 stage-1 map) with extreme decays, and its output.
  --keys         tests/fixtures/keys/vmamba_{s,b}.json: full-size state-dict keys, shapes and the
                 trunk parameter count (classifier.head excluded).
  --full NAME    (vmamba_s | vmamba_b) full-size random weights in the release .pth layout and
                 the reference features, under --out-dir (default /tmp/medfm-parity). Heavy: run
                 under `flock /tmp/medfm-heavy.lock`.
"""
import argparse
import json
import os
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
TINY = dict(dims=8, depths=[1, 1, 2, 1])
TINY_INPUT = (2, 3, 96, 64)
FULL = {"vmamba_s": "vmamba_small_s2l15", "vmamba_b": "vmamba_base_s2l15"}


def import_reference(repo):
    models = Path(repo) / "classification" / "models"
    if not (models / "vmamba.py").is_file():
        sys.exit(f"no classification/models/vmamba.py under {repo} (see --help)")
    sys.path.insert(0, str(models))
    warnings.filterwarnings("ignore")
    import csm_triton
    import vmamba

    # Upstream wraps its cross-scan/merge in `torch.cuda.device(x.device)`, which rejects CPU
    # tensors; call the same pure-torch autograd functions it picks for non-CUDA tensors.
    def cross_scan_fn(x, in_channel_first=True, out_channel_first=True, one_by_one=False, scans=0, force_torch=False):
        return csm_triton.CrossScanF.apply(x, in_channel_first, out_channel_first, one_by_one, scans)

    def cross_merge_fn(y, in_channel_first=True, out_channel_first=True, one_by_one=False, scans=0, force_torch=False):
        return csm_triton.CrossMergeF.apply(y, in_channel_first, out_channel_first, one_by_one, scans)

    # The numerical reference is the pure-torch sequential scan, never a CUDA kernel.
    scan_fn = vmamba.selective_scan_fn

    def selective_scan_fn(*args, **kwargs):
        kwargs["backend"] = "torch"
        return scan_fn(*args, **kwargs)

    vmamba.cross_scan_fn = cross_scan_fn
    vmamba.cross_merge_fn = cross_merge_fn
    vmamba.selective_scan_fn = selective_scan_fn
    return vmamba


def tiny_model(vm):
    return vm.VSSM(
        depths=TINY["depths"], dims=TINY["dims"], drop_path_rate=0.0,
        patch_size=4, in_chans=3, num_classes=10,
        ssm_d_state=1, ssm_ratio=2.0, ssm_dt_rank="auto", ssm_act_layer="silu",
        ssm_conv=3, ssm_conv_bias=False, ssm_drop_rate=0.0,
        ssm_init="v0", forward_type="v05_noz",
        mlp_ratio=4.0, mlp_act_layer="gelu", mlp_drop_rate=0.0, gmlp=False,
        patch_norm=True, norm_layer="ln2d",
        downsample_version="v3", patchembed_version="v2",
        use_checkpoint=False, posembed=False, imgsize=224,
    )


@torch.no_grad()
def randomise(model, gen):
    """Weights far from their init so every part matters, with trained-like SSM magnitudes:
    A = -exp(A_logs) in [-20, -0.14] and delta = softplus(dt + bias) from ~1e-3 to several."""
    for name, p in model.named_parameters():
        shape = p.shape
        if name.endswith("A_logs"):
            p.copy_(torch.rand(shape, generator=gen) * 5.0 - 2.0)
        elif name.endswith("dt_projs_bias"):
            p.copy_(torch.rand(shape, generator=gen) * 9.0 - 7.0)
        elif name.endswith("Ds"):
            p.copy_(torch.randn(shape, generator=gen))
        elif p.dim() == 1 and name.endswith("weight"):  # norms
            p.copy_(1.0 + 0.2 * torch.randn(shape, generator=gen))
        elif p.dim() == 1:  # biases
            p.copy_(0.1 * torch.randn(shape, generator=gen))
        else:
            fan_in = shape[-1] if p.dim() <= 3 else shape[1] * shape[2] * shape[3]
            p.copy_(torch.randn(shape, generator=gen) / fan_in ** 0.5)


@torch.no_grad()
def features(model, pixels):
    """tokens = classifier.norm(last map) flattened; pooled = mean (docs/reference.md)."""
    x = model.patch_embed(pixels)
    for layer in model.layers:
        x = layer(x)
    x = model.classifier.norm(x)  # channel-first [B, C, h, w]
    tokens = x.flatten(2).transpose(1, 2).contiguous()
    pooled = model.classifier.flatten(model.classifier.avgpool(x))
    return pooled, tokens


def state_dict(model):
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


def release_checkpoint(sd):
    """The layout of the GitHub-release files: {'model', 'model_ema', 'optimizer',
    'lr_scheduler', 'max_accuracy', 'epoch', 'config' (a yacs CfgNode), ...}. model_ema shares
    every tensor with model except Ds (halved), so selecting it is observable at little size."""
    from yacs.config import CfgNode

    ema = {k: (v * 0.5 if k.endswith(".Ds") else v) for k, v in sd.items()}
    config = CfgNode({"MODEL": CfgNode({"TYPE": "vssm", "VSSM": CfgNode({"SSM_FORWARDTYPE": "v05_noz"})})})
    first = next(iter(sd.values()))
    optimizer = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(first)}},
                 "param_groups": [{"lr": 1e-3, "weight_decay": 0.05, "params": [0]}]}
    return {"model": sd, "model_ema": ema, "optimizer": optimizer,
            "lr_scheduler": {"last_epoch": 222}, "max_accuracy": 83.5, "scaler": {},
            "epoch": 222, "config": config}


def gen_small(vm):
    gen = torch.Generator().manual_seed(7)
    model = tiny_model(vm).eval()
    randomise(model, gen)
    pixels = torch.randn(TINY_INPUT, generator=gen)
    pooled, tokens = features(model, pixels)
    out = FIXTURES / "parity"
    out.mkdir(parents=True, exist_ok=True)
    meta = {"config": json.dumps(TINY), "source": "MzeroMiko/VMamba classification/models/vmamba.py"}
    torch.save(release_checkpoint(state_dict(model)), out / "vmamba_tiny.pth")
    save_file({"pixels": pixels, "pooled": pooled, "tokens": tokens},
              out / "vmamba_tiny_io.safetensors", metadata=meta)
    print(f"tiny: pooled {tuple(pooled.shape)} tokens {tuple(tokens.shape)}")
    gen_scan_stress(vm, out, gen)


def gen_scan_stress(vm, out, gen):
    """One selective scan as SS2D calls it (4 directions x 4 channels, L = 56*56), with
    delta*|A| per step from ~1e-5 to ~400: long memory and instant forgetting side by side."""
    import csms6s

    batch, k, c, length = 1, 4, 4, 56 * 56
    u = torch.randn(batch, k * c, length, generator=gen)
    delta = torch.randn(batch, k * c, length, generator=gen) * 3.0
    a_logs = torch.linspace(-3.0, 3.0, k * c).view(-1, 1)
    bias = torch.linspace(-8.0, 3.0, k * c).flip(0)
    bs = torch.randn(batch, k, 1, length, generator=gen)
    cs = torch.randn(batch, k, 1, length, generator=gen)
    ds = torch.randn(k * c, generator=gen)
    y = csms6s.selective_scan_torch(u, delta, -a_logs.exp(), bs, cs, ds, bias, True)
    save_file({"u": u, "delta": delta, "A_logs": a_logs, "delta_bias": bias,
               "B": bs, "C": cs, "Ds": ds, "y": y.contiguous()},
              out / "vmamba_scan_stress.safetensors")
    print(f"scan stress: y {tuple(y.shape)}, |y| max {y.abs().max():.3g}")


def gen_keys(vm):
    out = FIXTURES / "keys"
    out.mkdir(parents=True, exist_ok=True)
    for name, ctor in FULL.items():
        model = getattr(vm, ctor)()
        sd = model.state_dict()
        keys = [[k, list(v.shape)] for k, v in sd.items() if not k.startswith("classifier.head.")]
        count = sum(v.numel() for k, v in sd.items() if not k.startswith("classifier.head."))
        doc = {"backbone": name, "reference": f"MzeroMiko/VMamba vmamba.{ctor}()",
               "ignored": [k for k in sd if k.startswith("classifier.head.")],
               "param_count": count, "tensors": keys}
        (out / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
        print(f"{name}: {len(keys)} tensors, {count} parameters")


def gen_full(vm, name, out_dir):
    gen = torch.Generator().manual_seed(11)
    model = getattr(vm, FULL[name])().eval()
    randomise(model, gen)
    pixels = torch.randn(2, 3, 224, 224, generator=gen)
    pooled, tokens = features(model, pixels)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(release_checkpoint(state_dict(model)), out_dir / f"{name}.pth")
    save_file({"pixels": pixels, "pooled": pooled, "tokens": tokens.contiguous()},
              out_dir / f"{name}_io.safetensors")
    print(f"{name}: wrote {out_dir}/{name}.pth and {name}_io.safetensors")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vmamba-repo", default=os.environ.get("VMAMBA_REPO"))
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--keys", action="store_true")
    ap.add_argument("--full", choices=sorted(FULL))
    ap.add_argument("--out-dir", type=Path, default=Path("/tmp/medfm-parity"))
    args = ap.parse_args()
    if not args.vmamba_repo:
        sys.exit("--vmamba-repo (or VMAMBA_REPO) is required (see --help)")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    vm = import_reference(args.vmamba_repo)
    if not (args.small or args.keys or args.full):
        args.small = args.keys = True
    if args.small:
        gen_small(vm)
    if args.keys:
        gen_keys(vm)
    if args.full:
        gen_full(vm, args.full, args.out_dir)


if __name__ == "__main__":
    main()
