#!/usr/bin/env python3
"""What zeroing accumulated gradients costs per step, for a ViT-B-sized parameter set (86 M
float32 parameters in DINOv2-B/14's shapes), on the same libtorch as medfm: torch's
`zero_grad(set_to_none=False)` then `loss.backward()` accumulating into the zeroed `.grad`
buffers (what medfm's optimizer did before it took the gradients from the autograd engine),
against handing the fresh gradients over (`set_to_none=True`, medfm's `Optimizer::backward`).
Only the gradient bookkeeping is timed, not a backward pass: both variants receive the same
fresh gradient tensors.

  .venv/bin/python scripts/bench/grad_zeroing.py [--threads 2] [--iters 10]
"""
import argparse
import statistics
import time

import torch


def vitb_shapes():
    d, mlp = 768, 3072
    block = [(3 * d, d), (3 * d,), (d, d), (d,), (mlp, d), (mlp,), (d, mlp), (d,), (d,), (d,), (d,), (d,), (d,), (d,)]
    return [(d, 3, 14, 14), (d,), (1, 1, d), (1, 1370, d), (1, 1, d)] + block * 12 + [(d,), (d,)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shapes = vitb_shapes()
    grads = [torch.zeros(s) for s in shapes]
    fresh = [torch.randn(s) for s in shapes]
    n = sum(g.numel() for g in grads)
    zero_acc, hand = [], []
    for _ in range(args.iters):
        t0 = time.perf_counter()
        for g, f in zip(grads, fresh):
            g.zero_()  # zero_grad(set_to_none=False)
            g.add_(f)  # AccumulateGrad into the zeroed buffer
        zero_acc.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        handed = list(fresh)  # set_to_none=True: the engine's tensors become the gradients
        hand.append(time.perf_counter() - t0)
        del handed
    print(f"{n / 1e6:.1f} M parameters, {args.threads} threads: zero + accumulate "
          f"{statistics.median(zero_acc) * 1e3:.1f} ms/step (min {min(zero_acc) * 1e3:.1f}), "
          f"handed over {statistics.median(hand) * 1e3:.3f} ms/step")


if __name__ == "__main__":
    main()
