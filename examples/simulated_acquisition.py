"""A short pycro-manager acquisition on the simulated TEM: no microscope needed.

Run it with ``python examples/simulated_acquisition.py [--frames N] [--size PX]``. It opens a
real Micro-Manager core with the simulated TEM camera, acquires a time series through
pycro-manager's Python backend, and prints what a microscopist checks first: counts scale with
exposure, and the noise of a counting camera is Poisson.
"""

from __future__ import annotations

import argparse

import numpy as np
from pycromanager import Acquisition

from acquisition_hooks import simulated_microscope


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args(argv)

    with simulated_microscope(dose_rate=2500.0, detector="counting", seed=0, size=args.size):
        with Acquisition(directory=None, name="short", show_display=False) as acq:
            acq.acquire([{"axes": {"time": i}, "exposure": 2.0} for i in range(args.frames)])
        short = np.asarray(acq.get_dataset().as_array(), dtype=np.float64)
        with Acquisition(directory=None, name="long", show_display=False) as acq:
            acq.acquire([{"axes": {"time": 0}, "exposure": 20.0}])
        long = np.asarray(acq.get_dataset().as_array(), dtype=np.float64)

    diff = short[0] - short[1]
    result = {
        "frames": float(short.shape[0]),
        "mean_counts_2ms": float(short.mean()),
        "mean_counts_20ms": float(long.mean()),
        "exposure_ratio": float(long.mean() / short.mean()),
        "poisson_ratio": float(diff.var() / (short[0].mean() + short[1].mean())),
    }
    print(f"acquired {short.shape[0]} frames of {short.shape[1]}x{short.shape[2]} px")
    print(
        f"mean counts: {result['mean_counts_2ms']:.2f} at 2 ms, "
        f"{result['mean_counts_20ms']:.2f} at 20 ms (ratio {result['exposure_ratio']:.2f})"
    )
    print(f"var(frame difference) / sum of means = {result['poisson_ratio']:.3f} (Poisson: 1)")
    return result


if __name__ == "__main__":
    main()
