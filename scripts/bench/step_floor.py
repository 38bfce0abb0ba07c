#!/usr/bin/env python3
"""The matrix-product floor of `scripts/bench/train.sh step`'s `last4` step: the time libtorch
needs for that step's matrix products alone (dinov2_vitb14, batch 8, 224 px, its last 4 blocks
trained), on the same libtorch and threads as both sides of the step benchmark.

Every product of the step, with its shapes: the patch embedding (a stride-14 convolution, timed
as the equivalent product), per block qkv, the attention's two batched products, proj, fc1, fc2;
forward for all 12 blocks, and for the 4 trained blocks their backward (the gradient of each
product's input and of its weight: two products of the same size each). Elementwise work (norms,
GELU, softmax, residual adds, layer scales), the optimizer and the loss are not timed: the step's
time minus this floor is all that any implementation on these kernels can still remove.

With `--trained 0 --batch 32` it is the floor of a forward pass, that of `medfm predict`'s
batches in scripts/bench/predict.sh (the linear head's product is negligible).

  .venv/bin/python scripts/bench/step_floor.py [--threads 2] [--iters 5] [--batch 8] [--trained 4]
"""
import argparse
import statistics
import time

import torch


def products(batch, tokens=257, d=768, mlp=3072, heads=12, blocks=12, trained=4):
    """(name, a_shape, b_shape, count): `a @ b` (batched when 3-D) and how often the step runs it."""
    m = batch * tokens
    hd = d // heads
    block = [
        ("qkv", (m, d), (d, 3 * d)),
        ("q@k^T", (batch * heads, tokens, hd), (batch * heads, hd, tokens)),
        ("attn@v", (batch * heads, tokens, tokens), (batch * heads, tokens, hd)),
        ("proj", (m, d), (d, d)),
        ("fc1", (m, d), (d, mlp)),
        ("fc2", (m, mlp), (mlp, d)),
    ]
    # Forward of every block once; backward of the trained blocks: input and weight gradients,
    # each a product with the forward's multiply-adds (timed as the forward product twice).
    rows = [("patch_embed", (batch * (tokens - 1), 3 * 14 * 14), (3 * 14 * 14, d), 1)]
    rows += [(n, a, b, blocks + 2 * trained) for n, a, b in block]
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--trained", type=int, default=4,
                    help="blocks with a backward pass (0: a forward only, the floor of `medfm predict`)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    total, flops = 0.0, 0.0
    print("| product | shapes | per step | median ms each | ms per step |")
    print("|---|---|---:|---:|---:|")
    for name, a_shape, b_shape, count in products(args.batch, trained=args.trained):
        a, b = torch.randn(a_shape), torch.randn(b_shape)
        torch.matmul(a, b)  # warm-up
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            times.append(time.perf_counter() - t0)
        ms = statistics.median(times) * 1e3
        total += ms * count
        macs = a.numel() * b_shape[-1]
        flops += 2 * macs * count
        print(f"| {name} | {tuple(a_shape)} @ {tuple(b_shape)} | {count} | {ms:.2f} | {ms * count:.0f} |")
    print(f"\nfloor: {total:.0f} ms per step ({flops / 1e9:.0f} GFLOP, {flops / total / 1e6:.0f} GFLOP/s), "
          f"{args.threads} threads, torch {torch.__version__}")


if __name__ == "__main__":
    main()
