#!/usr/bin/env python3
"""Forward time of the official VMamba (pure-torch selective scan, CPU) for scripts/bench_vmamba.sh.

Same protocol as `cargo run --release --example bench_vmamba`: random input, eval, no_grad,
one warm-up, median of --iters timed forwards of the whole trunk + classifier norm; prints one
JSON line. Needs --vmamba-repo / $VMAMBA_REPO as scripts/gen_parity_vmamba.py does.
"""
import argparse
import json
import os
import statistics
import time

import torch

from gen_parity_vmamba import FULL, features, import_reference


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vmamba-repo", default=os.environ.get("VMAMBA_REPO"))
    ap.add_argument("--backbone", choices=sorted(FULL), default="vmamba_s")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if not args.vmamba_repo:
        raise SystemExit("--vmamba-repo (or VMAMBA_REPO) is required")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vm = import_reference(args.vmamba_repo)
    model = getattr(vm, FULL[args.backbone])().eval()
    x = torch.randn(args.batch, 3, args.size, args.size)

    def run():
        t = time.perf_counter()
        features(model, x)
        return time.perf_counter() - t

    run()
    times = [run() for _ in range(args.iters)]
    median = statistics.median(times)
    print(json.dumps({"impl": "reference", "backbone": args.backbone, "batch": args.batch,
                      "size": args.size, "threads": args.threads, "median_s": round(median, 4),
                      "per_image_s": round(median / args.batch, 4),
                      "all_s": [round(t, 4) for t in times]}))


if __name__ == "__main__":
    main()
