#!/usr/bin/env python3
"""The kernel floor of `scripts/bench/train.sh step`'s `last4` step: the time libtorch needs for
that step's linear layers and attention alone (dinov2_vitb14, batch 8, 224 px, its last 4
blocks trained), on the same libtorch and threads as both sides of the step benchmark.

Timed, each with the shapes and memory layouts the step's autograd uses:
- every linear layer's forward, `F.linear(x, w, b)` (qkv, proj, fc1, fc2 of all 12 blocks, and
  the patch embedding as the equivalent product);
- for the 4 trained blocks, each linear layer's backward: the input gradient `dy @ w` and the
  weight gradient `dy.T @ x`;
- the attention kernel, `F.scaled_dot_product_attention` forward (12 blocks) and its backward
  (4 blocks, timed as forward + backward minus forward).
Norms, GELU, residual adds, layer scales, the loss and the optimizer are not timed: the step's
time minus this floor is all that any implementation on these kernels can still remove.

With `--trained 0 --batch 32` it is the floor of a forward pass, that of `medfm predict`'s
batches in scripts/bench/predict.sh (the linear head is negligible).

  .venv/bin/python scripts/bench/step_floor.py [--threads 2] [--iters 5] [--batch 8] [--trained 4]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def timed(fn, iters):
    fn()  # warm-up
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--trained", type=int, default=4,
                    help="blocks with a backward pass (0: a forward only, the floor of `medfm predict`)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    b, tokens, d, mlp, heads, blocks = args.batch, 257, 768, 3072, 12, 12
    m = b * tokens
    rows = []

    def linear(name, m_rows, n_in, n_out, fwd_count, bwd_count):
        x, w, bias = torch.randn(m_rows, n_in), torch.randn(n_out, n_in), torch.randn(n_out)
        dy = torch.randn(m_rows, n_out)
        fwd = timed(lambda: F.linear(x, w, bias), args.iters)
        rows.append((f"{name} forward", fwd, fwd_count))
        if bwd_count:
            rows.append((f"{name} input gradient", timed(lambda: dy @ w, args.iters), bwd_count))
            rows.append((f"{name} weight gradient", timed(lambda: dy.t() @ x, args.iters), bwd_count))

    linear("patch_embed", b * (tokens - 1), 3 * 14 * 14, d, 1, 0)
    linear("qkv", m, d, 3 * d, blocks, args.trained)
    linear("proj", m, d, d, blocks, args.trained)
    linear("fc1", m, d, mlp, blocks, args.trained)
    linear("fc2", m, mlp, d, blocks, args.trained)
    q, k, v = (torch.randn(b, heads, tokens, d // heads, requires_grad=True) for _ in range(3))
    with torch.no_grad():
        att_fwd = timed(lambda: F.scaled_dot_product_attention(q, k, v), args.iters)
    rows.append(("attention forward", att_fwd, blocks))
    if args.trained:
        g = torch.randn(b, heads, tokens, d // heads)
        both = timed(lambda: F.scaled_dot_product_attention(q, k, v).backward(g), args.iters)
        rows.append(("attention backward", max(both - att_fwd, 0.0), args.trained))

    print("| kernel | ms each | per step | ms per step |")
    print("|---|---:|---:|---:|")
    total = 0.0
    for name, ms, count in rows:
        total += ms * count
        print(f"| {name} | {ms:.2f} | {count} | {ms * count:.0f} |")
    print(f"\nfloor: {total:.0f} ms per step (batch {b}, {args.trained} trained blocks), {args.threads} threads, "
          f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
