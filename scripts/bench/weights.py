"""Python side of scripts/bench/weights.sh: write a random ViT-L/14-sized state dict (as
`{'model': sd}` .pth and as .safetensors) into DIR if absent, then time torch.load and
safetensors' load_file (best of 3)."""

import os
import sys
import time

import torch
from safetensors.torch import load_file, save_file


def vit_large_state_dict():
    torch.manual_seed(0)
    dim, depth = 1024, 24
    sd = {
        "cls_token": torch.randn(1, 1, dim),
        "pos_embed": torch.randn(1, 1370, dim),
        "patch_embed.proj.weight": torch.randn(dim, 3, 14, 14),
        "patch_embed.proj.bias": torch.randn(dim),
    }
    block = [
        ("norm1.weight", [dim]), ("norm1.bias", [dim]),
        ("attn.qkv.weight", [3 * dim, dim]), ("attn.qkv.bias", [3 * dim]),
        ("attn.proj.weight", [dim, dim]), ("attn.proj.bias", [dim]), ("ls1.gamma", [dim]),
        ("norm2.weight", [dim]), ("norm2.bias", [dim]),
        ("mlp.fc1.weight", [4 * dim, dim]), ("mlp.fc1.bias", [4 * dim]),
        ("mlp.fc2.weight", [dim, 4 * dim]), ("mlp.fc2.bias", [dim]), ("ls2.gamma", [dim]),
    ]
    for i in range(depth):
        for name, shape in block:
            sd[f"blocks.{i}.{name}"] = torch.randn(shape)
    sd["norm.weight"], sd["norm.bias"] = torch.randn(dim), torch.randn(dim)
    return sd


def best_of_3(f):
    times = []
    for _ in range(3):
        start = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - start)
        del result
    return min(times)


def main():
    d = sys.argv[1]
    pth, st = os.path.join(d, "vitl.pth"), os.path.join(d, "vitl.safetensors")
    if not (os.path.exists(pth) and os.path.exists(st)):
        sd = vit_large_state_dict()
        torch.save({"model": sd, "epoch": 1}, pth)
        save_file(sd, st)
        del sd
    size = os.path.getsize(pth) / 1e9
    t_pth = best_of_3(lambda: torch.load(pth, map_location="cpu", weights_only=True))
    # load_file maps the file lazily; cloning reads every byte into memory, as medfm's load does.
    t_st_lazy = best_of_3(lambda: load_file(st))
    t_st = best_of_3(lambda: {k: v.clone() for k, v in load_file(st).items()})
    print(f"python torch.load(weights_only=True)     vitl.pth          {t_pth:.3f} s ({size:.2f} GB)")
    print(f"python safetensors load_file + clone     vitl.safetensors  {t_st:.3f} s")
    print(f"python safetensors load_file (lazy mmap) vitl.safetensors  {t_st_lazy:.3f} s")


if __name__ == "__main__":
    main()
