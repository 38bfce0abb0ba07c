#!/usr/bin/env python3
"""Read a TensorBoard event folder with TensorBoard's own EventAccumulator and print its
scalars as JSON ({tag: [[step, value], ...]}). Used by the ignored test
`tensorboard_reads_our_event_files` (tests/it/tensorboard.rs) to check medfm's event writer.

Usage: .venv/bin/python scripts/dev/check_tensorboard.py DIR
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
    acc.Reload()
    out = {tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
