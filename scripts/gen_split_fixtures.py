#!/usr/bin/env python3
"""Fixture for medfm's Python-identical split: what the reference's
`BaseSet.get_validation_ids` produces for N images.

For each N the reference shuffles list(range(N)) with random.Random(42) and takes the first
int(N * val_size) as held-out. The fixture stores the full shuffled permutation (the split for
any val_size follows from it) as one line per N: "N: i0 i1 i2 ...", compact enough to commit.

Usage: .venv/bin/python scripts/gen_split_fixtures.py > tests/fixtures/data/python_shuffle_seed42.txt
"""
import random

SIZES = [1, 2, 7, 100, 3662, 25331]

print("# random.Random(42).shuffle(list(range(N))) for each N (scripts/gen_split_fixtures.py)")
for n in SIZES:
    idxs = list(range(n))
    random.Random(42).shuffle(idxs)
    print(f"{n}: " + " ".join(map(str, idxs)))
