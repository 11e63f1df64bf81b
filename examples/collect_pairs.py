"""Automated paired-data collection on the simulated microscope (what a training run starts with).

For each of N fields on a grid: K short exposures and one long exposure of the same field,
through real pycro-manager events, written to a pairs store with registration shifts and
quality flags. On a real microscope, use the same ``PairPlan`` events and ``PairCollector``
hooks in your own acquisition script.

``python examples/collect_pairs.py --out pairs.ome.zarr [--fields 6] [--size 256]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from acquisition_hooks import simulated_microscope
from acquisition_hooks.pairs import PairPlan, collect_pairs
from tem_acq.store import open_pairs


def main(argv: list[str] | None = None) -> dict[str, int]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("pairs.ome.zarr"))
    parser.add_argument("--fields", type=int, default=6)
    parser.add_argument("--n-short", type=int, default=2)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--detector", default="integrating")
    parser.add_argument(
        "--seed", type=int, default=0, help="specimen seed (another seed: new fields)"
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    args = parser.parse_args(argv)

    plan = PairPlan(
        fields=args.fields,
        n_short=args.n_short,
        short_exposure_ms=2.0,  # ~5 e-/px at 2500 e-/px/s
        long_exposure_ms=400.0,  # ~1000 e-/px
        settle_s=0.0,
    )
    with simulated_microscope(
        dose_rate=2500.0, detector=args.detector, size=args.size, seed=args.seed
    ) as scope:
        collect_pairs(scope, plan, args.out, resume=args.resume)

    store = open_pairs(args.out)
    for row in store.pairs[: 2 * args.n_short]:
        print(
            f"pair {row.index}: field {row.field}, {row.low_dose_e_per_px:.2f} -> "
            f"{row.high_dose_e_per_px:.0f} e-/px, shift ({row.shift_dy_px:+.2f}, "
            f"{row.shift_dx_px:+.2f}) px, flag {row.flag}"
        )
    print(f"{len(store.pairs)} pairs from {len(store.fields)} fields in {args.out}")
    return {"pairs": len(store.pairs), "fields": len(store.fields)}


if __name__ == "__main__":
    main()
