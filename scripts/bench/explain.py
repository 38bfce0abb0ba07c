#!/usr/bin/env python3
"""Grad-CAM time per image, medfm vs pytorch-grad-cam 1.5.7 on the reference model, on the CPU.

DINOv2-B/14 by default (timm's `vit_base_patch14_dinov2` shape at 224 px: the class token after
the final norm into a linear head, as medfm's `dinov2_vitb14` with the linear head), random
weights, batch 4, parameters requiring grad as in pytorch-grad-cam's examples, target layer `blocks[-1].norm1` with the tokens reshaped to the 16x16 grid
(medfm's default for the family). Both sides run with the same torch thread count; medfm's
through examples/bench_explain.rs. Prints both medians and writes nothing.

Usage: scripts/bench/explain.sh [--batch 4] [--iters 5] [--threads 2]
"""
import argparse
import json
import os
import statistics
import subprocess
import time

import torch
import timm
from pytorch_grad_cam import GradCAM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reference(batch, iters, warmup, threads):
    torch.set_num_threads(threads)
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=224, patch_size=14, embed_dim=768, depth=12, num_heads=12, init_values=1e-5,
        num_classes=5).eval()
    # As pytorch-grad-cam is used (its README): the parameters keep requires_grad, so its
    # backward pass also computes their gradients (it needs a graph from them: with every
    # parameter frozen and the input without grad there is nothing to differentiate).

    def reshape(t):
        t = t[:, 1:, :]
        return t.reshape(t.shape[0], 16, 16, t.shape[2]).permute(0, 3, 1, 2)

    x = torch.randn(batch, 3, 224, 224)
    times = []
    with GradCAM(model=model, target_layers=[model.blocks[-1].norm1], reshape_transform=reshape) as cam:
        for i in range(warmup + iters):
            t0 = time.perf_counter()
            cam(input_tensor=x, targets=None)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times) / batch, times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    rust = subprocess.run(
        [os.path.join(ROOT, "target/release/examples/bench_explain"), "dinov2_vitb14", "--batch", str(a.batch),
         "--iters", str(a.iters), "--warmup", str(a.warmup), "--threads", str(a.threads)],
        check=True, capture_output=True, text=True).stdout
    r = json.loads(rust.strip().splitlines()[-1])
    ref_ms, ref_times = reference(a.batch, a.iters, a.warmup, a.threads)
    print(f"load average {os.getloadavg()[0]:.1f}; torch {torch.__version__}; {a.threads} threads; batch {a.batch}")
    print(f"medfm explain (Grad-CAM, dinov2_vitb14, 224 px): {r['ms_per_image']:.1f} ms per image "
          f"(iterations {[round(t) for t in r['iter_ms']]} ms)")
    print(f"pytorch-grad-cam 1.5.7 (timm ViT-B/14): {ref_ms:.1f} ms per image "
          f"(iterations {[round(t) for t in ref_times]} ms)")


if __name__ == "__main__":
    main()
