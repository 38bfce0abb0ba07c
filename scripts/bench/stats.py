#!/usr/bin/env python3
"""The Python side of the statistics benchmark (docs/performance.md, "Statistics"): the time of
2000 bootstrap resamples of the test metrics computed with scikit-learn, as the reference's
utils/metrics.py calls it (the functions of scripts/fixtures/gen_stats_fixtures.py), for the
sizes of examples/bench_stats.rs: 550 images with 5 classes, and with 14 labels (5% unknown).
Only the metrics are timed (no operating points or calibration), extrapolated from a
subset of the resamples.

Usage: .venv/bin/python scripts/bench/stats.py [--timed 200]
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))
import gen_stats_fixtures as g  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timed", type=int, default=200, help="resamples timed (of 2000)")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    n, k, L = 550, 5, 14
    y = rng.integers(0, k, n)
    z = rng.normal(size=(n, k))
    z[np.arange(n), y] += 1.5
    cases = [("550 images, 5 classes", dict(task="multiclass", truth=y),
              g.softmax32(z).astype(np.float64))]
    t = (rng.random((n, L)) < np.linspace(0.05, 0.45, L)).astype(float)
    zz = rng.normal(size=(n, L)) + (2 * t - 1)
    t[rng.random((n, L)) < 0.05] = np.nan
    cases.append(("550 images, 14 labels", dict(task="multilabel", truth=t),
                  g.sigmoid32(zz).astype(np.float64)))
    for name, case, probs in cases:
        rows = g.numpy_resamples(case, rng, args.timed)
        t0 = time.perf_counter()
        for r in rows:
            g.metric_values(case, probs, r)
        per = (time.perf_counter() - t0) / args.timed
        print(f"{name}: sklearn metrics of 2000 resamples {2000 * per:.1f} s")


if __name__ == "__main__":
    main()
