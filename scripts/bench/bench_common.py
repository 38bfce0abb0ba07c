"""What the forward benchmarks in this folder (aimv2.py, vit.py, sam2_encoder.py, vmamba.py)
share: medfm's side as a persistent `bench_backbone --serve` process, and the interleaved timing
loop, so that every family is timed the same way."""

import os
import statistics
import subprocess
import sys
import time


class MedfmServer:
    """`examples/bench_backbone NAME --serve`: builds the trunk once, then answers each `run`
    request with the time of one forward pass in ms."""

    def __init__(self, binary, name, batch, threads, size=None):
        cmd = [binary, name, "--batch", str(batch), "--threads", str(threads), "--serve"]
        if size is not None:
            cmd += ["--size", str(size)]
        # The medfm binary waits passively for OpenMP work unless the user says otherwise
        # (device::use_passive_openmp_threads); time it as users run it.
        env = {**os.environ}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        if self.proc.stdout.readline().strip() != "ready":
            sys.exit(f"bench_backbone {name} did not start")

    def forward_ms(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def time_ms(fn):
    """Wall time of `fn()` in ms."""
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e3


def interleave(sides, warmup, iters, label=None):
    """Time each side (name -> callable returning ms) once per iteration, in order, so that all
    see the same machine load; returns name -> the timed (post-warm-up) values. With `label`,
    each iteration's times go to stderr."""
    times = {k: [] for k in sides}
    for i in range(warmup + iters):
        now = {k: f() for k, f in sides.items()}
        if label:
            shown = ", ".join(f"{k} {v:.0f} ms" for k, v in now.items())
            print(f"  {label} iteration {i}: {shown}", file=sys.stderr)
        if i >= warmup:
            for k, v in now.items():
                times[k].append(v)
    return times


def per_image(times, batch):
    return statistics.median(times) / batch


def ratio(ours, ref):
    """The median of the per-iteration ratios medfm / reference."""
    return statistics.median(m / r for m, r in zip(ours, ref))


def rounded(times):
    return [round(t, 1) for t in times]
