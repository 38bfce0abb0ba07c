#!/usr/bin/env python3
"""Two synthetic multi-label predictions.csv files for timing `medfm compare` (docs/performance.md,
"Statistics"): the same N images and labels (prevalence 5% to 45%, 5% of the targets unknown),
two models' sigmoid probabilities (float32, as a run writes them; model A separates the classes
better than B). The header is predictions.csv's: path, label_<name>..., prob_<name>...

Usage: .venv/bin/python scripts/bench/compare.py OUT_DIR [--images 22000] [--labels 14]
writes OUT_DIR/a/predictions.csv and OUT_DIR/b/predictions.csv.
"""
import argparse
import os

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--images", type=int, default=22000)
    ap.add_argument("--labels", type=int, default=14)
    args = ap.parse_args()
    n, L = args.images, args.labels
    rng = np.random.default_rng(1)
    t = (rng.random((n, L)) < np.linspace(0.05, 0.45, L)).astype(float)
    unknown = rng.random((n, L)) < 0.05
    names = [f"finding{j}" for j in range(L)]
    for run, signal in (("a", 1.0), ("b", 0.8)):
        z = rng.normal(size=(n, L)) + signal * (2 * t - 1)
        p = (1 / (1 + np.exp(-z))).astype(np.float32)
        os.makedirs(os.path.join(args.out, run), exist_ok=True)
        with open(os.path.join(args.out, run, "predictions.csv"), "w") as f:
            f.write(",".join(["path"] + [f"label_{x}" for x in names] + [f"prob_{x}" for x in names]) + "\n")
            for i in range(n):
                labels = ["" if unknown[i, j] else str(int(t[i, j])) for j in range(L)]
                # float32's shortest text, as a run writes its probabilities.
                probs = [np.format_float_positional(v, unique=True) for v in p[i]]
                f.write(",".join([f"img{i:06d}.png"] + labels + probs) + "\n")


if __name__ == "__main__":
    main()
