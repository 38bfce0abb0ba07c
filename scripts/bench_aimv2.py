#!/usr/bin/env python3
"""Forward timing of the reference AIMv2 trunk (Apple's ml-aim, random weights), printed as the
same JSON line as `cargo run --release --example bench_forward`. Used by scripts/bench_aimv2.sh."""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

FNS = {"aimv2-large-patch14-224": "aimv2_large", "aimv2-huge-patch14-224": "aimv2_huge"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name", choices=sorted(FNS))
    ap.add_argument("--ml-aim", type=Path, required=True, help="checkout of github.com/apple/ml-aim")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    for sub in ("aim-v1", "aim-v2"):
        sys.path.insert(0, str(args.ml_aim / sub))
    from aim.v2.torch import models

    if args.threads:
        torch.set_num_threads(args.threads)
    model = getattr(models, FNS[args.name])().eval()
    x = torch.randn(args.batch, 3, 224, 224)
    runs = []
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            tokens = model(x)
            tokens.mean(dim=1)  # pooled, as medfm's forward computes it
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                runs.append(dt)
    print(json.dumps({
        "backbone": args.name, "batch": args.batch, "size": 224, "threads": torch.get_num_threads(),
        "ms_per_image": min(runs) * 1e3 / args.batch, "runs_s": runs,
    }))


if __name__ == "__main__":
    main()
