#!/usr/bin/env python3
"""Forward time per image of the AIMv2 trunks: medfm vs Apple's ml-aim (the reference), in one run.

Random weights, fp32, CPU, no_grad, the same thread count on both sides. The two run
interleaved: every iteration times one reference forward (in this process) and then one medfm
forward (`bench_backbone --serve`, a persistent process), so on a shared, fluctuating machine
both see the same load. Reported: the median time per image of each, the median of the
per-iteration ratios medfm/reference (target <= 1.1), and all raw times as JSON.

ml-aim is not on PyPI: --ml-aim points at a checkout holding its aim-v1/ and aim-v2/ folders.
Run through scripts/bench/aimv2.sh (which builds the Rust side and takes the heavy lock).
"""

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from bench_common import MedfmServer, interleave, per_image, ratio, rounded, time_ms

FNS = {"aimv2-large-patch14-224": "aimv2_large", "aimv2-huge-patch14-224": "aimv2_huge"}


def bench(models, name, args):
    torch.set_num_threads(args.threads)
    model = getattr(models, FNS[name])().eval()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 224, 224)
    medfm = MedfmServer(args.bin, name, args.batch, args.threads)
    with torch.no_grad():
        # tokens = post_trunk_norm(x), pooled = their mean (as medfm)
        t = interleave(
            {"ml-aim": lambda: time_ms(lambda: model(x).mean(dim=1)), "medfm": medfm.forward_ms},
            args.warmup,
            args.iters,
            label=name,
        )
    medfm.close()
    return {
        "backbone": name,
        "batch": args.batch,
        "size": 224,
        "threads": args.threads,
        "ml_aim_ms_per_image": per_image(t["ml-aim"], args.batch),
        "medfm_ms_per_image": per_image(t["medfm"], args.batch),
        "ratio": ratio(t["medfm"], t["ml-aim"]),
        "ml_aim_ms_per_batch": rounded(t["ml-aim"]),
        "medfm_ms_per_batch": rounded(t["medfm"]),
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
