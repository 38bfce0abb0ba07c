#!/usr/bin/env python3
"""Forward time per image of the VMamba trunks: medfm vs the official implementation
(MzeroMiko/VMamba, its pure-torch selective scan), in one run.

Random weights, fp32, CPU, no_grad, the same thread count on both sides, each side computing
the features medfm serves (classifier norm of the last stage map, flattened, and its mean).
The two run interleaved: every iteration times one reference forward (in this process) and
then one medfm forward (`bench_backbone --serve`, a persistent process), so on a shared,
fluctuating machine both see the same load. Reported: the median time per image of each, the
median of the per-iteration speed-ups reference/medfm (target >= 3), and all raw times as JSON.

A third column times the reference with its sequential loop replaced by one vectorised
`y_t = C_t . deltaB_u_t` (wrong numbers, same shapes): everything the reference does besides the
recurrence itself (projections, convs, norms, MLPs, cross-scan/merge, the scan's einsum set-up).
medfm's full forward at or below that time means medfm's work outside the recurrence is no
slower than the reference's.

Run through scripts/bench/vmamba.sh (which builds the Rust side and takes the heavy lock).
"""
import argparse
import json
import os
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
# This folder (bench_common) and scripts/fixtures/ (the parity generators' reference builders).
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "fixtures")]
from bench_common import MedfmServer, interleave, per_image, rounded, time_ms  # noqa: E402
from gen_parity_vmamba import FULL, features, import_reference  # noqa: E402


def without_loop(csms6s):
    """`csms6s.selective_scan_torch` minus its per-step loop (a timing stand-in only)."""
    full = csms6s.selective_scan_torch

    def scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, oflex=True, *args, **kwargs):
        Batch, K, N, L = B.shape
        KCdim = u.shape[1]
        if delta_bias is not None:
            delta = delta + delta_bias[..., None]
        if delta_softplus:
            delta = torch.nn.functional.softplus(delta)
        u, delta, A, B, C = u.float(), delta.float(), A.float(), B.float(), C.float()
        B = B.view(Batch, K, 1, N, L).repeat(1, 1, KCdim // K, 1, 1).view(Batch, KCdim, N, L)
        C = C.view(Batch, K, 1, N, L).repeat(1, 1, KCdim // K, 1, 1).view(Batch, KCdim, N, L)
        deltaA = torch.exp(torch.einsum("bdl,dn->bdln", delta, A))
        deltaB_u = torch.einsum("bdl,bdnl,bdl->bdln", delta, B, u)
        y = torch.einsum("bdln,bdnl->bdl", deltaB_u * deltaA, C)
        return y if D is None else y + u * D.unsqueeze(-1)

    return full, scan


def bench(vm, name, args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = getattr(vm, FULL[name])().eval()
    x = torch.randn(args.batch, 3, 224, 224)
    medfm = MedfmServer(args.bin, name, args.batch, args.threads)

    import csms6s

    full_scan, no_loop_scan = without_loop(csms6s)

    def reference_forward(scan):
        csms6s.selective_scan_torch = scan
        try:
            return time_ms(lambda: features(model, x))
        finally:
            csms6s.selective_scan_torch = full_scan

    t = interleave(
        {
            "reference": lambda: reference_forward(full_scan),
            "medfm": medfm.forward_ms,
            "reference without its loop": lambda: reference_forward(no_loop_scan),
        },
        args.warmup,
        args.iters,
        label=name,
    )
    medfm.close()
    ref, ours, rest = t["reference"], t["medfm"], t["reference without its loop"]
    return {
        "backbone": name, "batch": args.batch, "size": 224, "threads": args.threads,
        "reference_ms_per_image": per_image(ref, args.batch),
        "medfm_ms_per_image": per_image(ours, args.batch),
        "reference_without_loop_ms_per_image": per_image(rest, args.batch),
        "speedup": statistics.median(r / m for m, r in zip(ours, ref)),
        "reference_ms_per_batch": rounded(ref),
        "medfm_ms_per_batch": rounded(ours),
        "reference_without_loop_ms_per_batch": rounded(rest),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vmamba-repo", default=os.environ.get("VMAMBA_REPO"),
                    help="checkout or export of github.com/MzeroMiko/VMamba (see scripts/fixtures/gen_parity_vmamba.py)")
    ap.add_argument("--names", nargs="+", default=["vmamba_s"], choices=sorted(FULL))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[os.cpu_count() or 1])
    ap.add_argument("--bin", default="target/release/examples/bench_backbone")
    args = ap.parse_args()
    if not args.vmamba_repo:
        sys.exit("--vmamba-repo (or VMAMBA_REPO) is required")
    vm = import_reference(args.vmamba_repo)
    rows = []
    for threads in args.threads:
        for name in args.names:
            print(f"VMamba trunk forward: CPU fp32, batch {args.batch}, 224px, {threads} threads "
                  f"({os.cpu_count()} cores), {args.iters} interleaved iterations", file=sys.stderr)
            row = bench(vm, name, argparse.Namespace(**{**vars(args), "threads": threads}))
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    print(f"{'backbone':<10} {'threads':>7} {'reference ms/img':>17} {'medfm ms/img':>13} {'speed-up':>9} "
          f"{'reference w/o loop ms/img':>26}")
    for r in rows:
        print(f"{r['backbone']:<10} {r['threads']:>7} {r['reference_ms_per_image']:>17.0f} "
              f"{r['medfm_ms_per_image']:>13.0f} {r['speedup']:>9.2f} "
              f"{r['reference_without_loop_ms_per_image']:>26.0f}")


if __name__ == "__main__":
    main()
