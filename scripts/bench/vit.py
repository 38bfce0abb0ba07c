#!/usr/bin/env python3
"""Forward time per image of the ViT-family trunks (CoCa by default; MAE, DINOv2, CLIP on
request): medfm vs the reference implementation, in one run.

Random weights, fp32, CPU, no_grad, the same thread count on both sides, batch 8 at 224 px. The
two run interleaved: every iteration times one reference forward (in this process) and then one
medfm forward (`bench_backbone --serve`, a persistent process), so on a shared, fluctuating
machine both see the same load. Reported: the median time per image of each, the median of the
per-iteration ratios medfm/reference (target <= 1.1), and all raw times as JSON on stderr.

Run through scripts/bench/vit.sh (which builds the Rust side and takes the heavy lock).
"""
import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
# This folder (bench_common) and scripts/fixtures/ (the parity generators' reference builders).
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "fixtures")]
from bench_common import MedfmServer, interleave, per_image, ratio, rounded, time_ms  # noqa: E402
from gen_parity_full_vit import reference  # noqa: E402  (the reference builders)


def bench(name, args):
    torch.set_num_threads(args.threads)
    _, run = reference(name)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    medfm = MedfmServer(args.bin, name, args.batch, args.threads, size=args.size)
    with torch.no_grad():
        t = interleave(
            {"reference": lambda: time_ms(lambda: run(x)), "medfm": medfm.forward_ms}, args.warmup, args.iters
        )
    medfm.close()
    return {
        "backbone": name, "batch": args.batch, "size": args.size, "threads": args.threads,
        "reference_ms_per_image": per_image(t["reference"], args.batch),
        "medfm_ms_per_image": per_image(t["medfm"], args.batch),
        "ratio": ratio(t["medfm"], t["reference"]),
        "reference_ms_per_batch": rounded(t["reference"]),
        "medfm_ms_per_batch": rounded(t["medfm"]),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", nargs="+", default=["coca_ViT-B-32", "coca_ViT-L-14"])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--bin", default="target/release/examples/bench_backbone")
    args = ap.parse_args()
    print(f"forward: CPU fp32, batch {args.batch}, {args.size}px, {args.threads} threads "
          f"({os.cpu_count()} cores), {args.iters} interleaved iterations", file=sys.stderr)
    rows = []
    for name in args.names:
        row = bench(name, args)
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    print(f"{'backbone':<18} {'reference ms/img':>17} {'medfm ms/img':>13} {'ratio':>6}")
    for r in rows:
        print(f"{r['backbone']:<18} {r['reference_ms_per_image']:>17.1f} {r['medfm_ms_per_image']:>13.1f} {r['ratio']:>6.2f}")


if __name__ == "__main__":
    main()
