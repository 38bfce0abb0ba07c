#!/usr/bin/env python3
"""Forward time per image of the AIMv2 trunks: medfm vs Apple's ml-aim (the reference), in one run.

Random weights, fp32, CPU, no_grad, the same thread count on both sides. The two run
interleaved: every iteration times one reference forward (in this process) and then one medfm
forward (`bench_backbone --serve`, a persistent process), so on a shared, fluctuating machine
both see the same load. Reported: the median time per image of each, the median of the
per-iteration ratios medfm/reference (target <= 1.1), and all raw times as JSON.

ml-aim is not on PyPI: --ml-aim points at a checkout holding its aim-v1/ and aim-v2/ folders.
Run through scripts/bench_aimv2.sh (which builds the Rust side and takes the heavy lock).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

FNS = {"aimv2-large-patch14-224": "aimv2_large", "aimv2-huge-patch14-224": "aimv2_huge"}


def bench(models, name, args):
    torch.set_num_threads(args.threads)
    model = getattr(models, FNS[name])().eval()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    rust = subprocess.Popen(
        [args.bin, name, "--batch", str(args.batch), "--threads", str(args.threads), "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    if rust.stdout.readline().strip() != "ready":
        sys.exit(f"bench_backbone {name} did not start")

    def medfm_forward():
        rust.stdin.write("run\n")
        rust.stdin.flush()
        return float(rust.stdout.readline())

    def reference_forward():
        t = time.perf_counter()
        model(x).mean(dim=1)  # tokens = post_trunk_norm(x), pooled = their mean (as medfm)
        return (time.perf_counter() - t) * 1e3

    ref, ours = [], []
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            r, m = reference_forward(), medfm_forward()
            print(f"  {name} iteration {i}: ml-aim {r:.0f} ms, medfm {m:.0f} ms", file=sys.stderr)
            if i >= args.warmup:
                ref.append(r)
                ours.append(m)
    rust.stdin.close()
    rust.wait()
    return {
        "backbone": name,
        "batch": args.batch,
        "size": 224,
        "threads": args.threads,
        "ml_aim_ms_per_image": statistics.median(ref) / args.batch,
        "medfm_ms_per_image": statistics.median(ours) / args.batch,
        "ratio": statistics.median(m / r for m, r in zip(ours, ref)),
        "ml_aim_ms_per_batch": [round(t, 1) for t in ref],
        "medfm_ms_per_batch": [round(t, 1) for t in ours],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ml-aim", type=Path, required=True, help="checkout of github.com/apple/ml-aim")
    ap.add_argument("--names", nargs="+", default=list(FNS), choices=list(FNS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--bin", default="target/release/examples/bench_backbone")
    args = ap.parse_args()
    for sub in ("aim-v1", "aim-v2"):
        if not (args.ml_aim / sub / "aim").is_dir():
            sys.exit(f"--ml-aim {args.ml_aim}: expected a checkout of apple/ml-aim with {sub}/aim/")
        sys.path.insert(0, str(args.ml_aim / sub))
    from aim.v2.torch import models

    print(
        f"AIMv2 trunk forward: CPU fp32, batch {args.batch}, 224px, "
        f"{args.threads} threads ({os.cpu_count()} cores), {args.iters} interleaved iterations",
        file=sys.stderr,
    )
    rows = []
    for name in args.names:
        row = bench(models, name, args)
        print(json.dumps(row), file=sys.stderr)
        rows.append(row)
    print(f"{'backbone':<24} {'ml-aim ms/img':>14} {'medfm ms/img':>13} {'ratio':>6}")
    for r in rows:
        print(f"{r['backbone']:<24} {r['ml_aim_ms_per_image']:>14.1f} {r['medfm_ms_per_image']:>13.1f} {r['ratio']:>6.2f}")


if __name__ == "__main__":
    main()
