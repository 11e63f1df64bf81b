"""Time per low-magnification field: ``python benchmarks/bench_fields_lowmag.py [--size 256]``.

Draws ``--fields`` fields of each recipe (``LOWMAG_TRAIN``, ``LOWMAG_INDEPENDENT``) with
``numpy.random.default_rng([0, i])`` and prints the median, 90th percentile and largest CPU
time of this process per field (``time.process_time``: what one core spends; numpy's FFTs
here run on one thread).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from tem_acq.sim.fields.lowmag import LOWMAG_INDEPENDENT, LOWMAG_TRAIN, lowmag_field


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fields", type=int, default=30)
    args = parser.parse_args()
    for recipe in (LOWMAG_TRAIN, LOWMAG_INDEPENDENT):
        times = []
        for i in range(args.fields):
            t0 = time.process_time()
            lowmag_field(recipe, args.size, np.random.default_rng([0, i]))
            times.append(time.process_time() - t0)
        times.sort()
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(
            f"{recipe.name:12s} {args.size}x{args.size}: median {statistics.median(times):.2f} s, "
            f"p90 {p90:.2f} s, max {times[-1]:.2f} s per field ({args.fields} fields, CPU time)"
        )


if __name__ == "__main__":
    main()
