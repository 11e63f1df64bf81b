"""Time per simulated frame (median of many): ``python benchmarks/bench_sim.py [--size 512]``.

Cases: a static field (specimen cached, only noise is drawn), a drifting field (sub-pixel
interpolation of the cached specimen every frame, plus noise), and a long exposure (1000 e-/px).
The first frame of a new field also renders its specimen tiles; that one-off cost is reported
separately. Times are per-frame CPU time of this process (``time.process_time``), which is
what one core spends; on a shared machine wall time is higher and noisier (``--wall``).
"""

from __future__ import annotations

import argparse
import statistics
import time

from tem_acq.sim import DETECTOR_KINDS, SPECIMEN_KINDS, SimulationConfig, TEMSimulator

CLOCK = time.process_time


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.perf_counter if args.wall else time.process_time
    clock_name = "wall" if args.wall else "CPU"
    print(f"frame {args.size}x{args.size}, median {clock_name} time of {args.repeats} (ms)")
    print(f"{'specimen':14s} {'detector':12s} {'new field':>10s} {'static 5e':>10s} "
          f"{'drift 5e':>10s} {'static 1000e':>13s}")
    for specimen in SPECIMEN_KINDS:
        for detector in DETECTOR_KINDS:
            cfg = SimulationConfig(specimen=specimen, detector=detector, size=args.size,
                                   dose_rate=2500.0, drift_px_per_s=(3.3, -1.7))
            sim = TEMSimulator(cfg)
            t0 = CLOCK()
            sim.render(0.002, (0.0, 0.0), 0.0)
            first = 1e3 * (CLOCK() - t0)
            static = TEMSimulator(cfg.model_copy(update={"drift_px_per_s": (0.0, 0.0)}))
            static.render(0.002)
            t_static = _median_ms(lambda s=static: s.render(0.002), args.repeats)
            clock = iter(range(10**9))

            def drifting(s: TEMSimulator = sim, c=clock) -> None:
                s.render(0.002, (0.0, 0.0), 0.01 * next(c))

            t_drift = _median_ms(drifting, args.repeats)
            t_long = _median_ms(lambda s=static: s.render(0.4), max(10, args.repeats // 5))
            print(f"{specimen:14s} {detector:12s} {first:10.1f} {t_static:10.2f} "
                  f"{t_drift:10.2f} {t_long:13.2f}")


if __name__ == "__main__":
    main()
