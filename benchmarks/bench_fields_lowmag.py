"""Time per low-magnification field, and the film's texture against real frames.

    python benchmarks/bench_fields_lowmag.py [--size 256] [--fields 30]
    python benchmarks/bench_fields_lowmag.py --oneview ../shared/data/katsuno-oneview

Timing: ``--fields`` fields of each recipe (``LOWMAG_TRAIN``, ``LOWMAG_INDEPENDENT``) drawn
with ``numpy.random.default_rng([0, i])``; the median, 90th percentile and largest CPU time of
this process per field (``time.process_time``: what one core spends).

``--oneview DIR``: the fine texture of the carbon film in the two real OneView frame pairs
(2.988 nm/px), against the generator's film at that pixel size. Texture is the image minus its
9x9 box mean, relative to the mean; in the real frames its variance is the mean product of the
two frames' textures (their noise is independent, the specimen is not) over film pixels (away
from particles), with a standard error from 8 bands of rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from tem_acq.sim.fields.lowmag import LOWMAG_INDEPENDENT, LOWMAG_TRAIN, lowmag_field

ONEVIEW_PIXEL_A = 29.88


def _box(a: np.ndarray, radius: int) -> np.ndarray:
    k = 2 * radius + 1
    c = np.pad(np.pad(a, radius, mode="reflect").cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = a.shape
    return (c[k : k + h, k : k + w] - c[:h, k : k + w] - c[k : k + h, :w] + c[:h, :w]) / k**2


def _texture(a: np.ndarray) -> np.ndarray:
    return (a - _box(a, 4)) / a.mean()


def real_film_texture(folder: Path) -> None:
    import tifffile

    for name in ("train", "val"):
        a, b = (tifffile.imread(folder / f"{name}-000{k}.tif").astype(float) for k in (1, 2))
        smooth = _box(a + b, 6)
        med = np.median(smooth)
        mad = 1.4826 * np.median(np.abs(smooth - med))
        film = _box((smooth > med - 2.5 * mad).astype(float), 6) > 0.999  # far from particles
        film[:12], film[-12:], film[:, :12], film[:, -12:] = False, False, False, False
        product = _texture(a) * _texture(b)
        bands = [r for r in np.array_split(np.arange(a.shape[0]), 8) if film[r].any()]
        means = [product[r][film[r]].mean() for r in bands]
        var, err = product[film].mean(), np.std(means) / np.sqrt(len(means))
        print(
            f"real {name}: film texture variance {var:.4f} +- {err:.4f} "
            f"(rms {np.sqrt(max(var, 0.0)):.3f}; {int(film.sum())} film pixels)"
        )
    rms = []
    for i in range(30):
        recipe = LOWMAG_TRAIN.model_copy(
            update={
                "pixel_size_A": (ONEVIEW_PIXEL_A, ONEVIEW_PIXEL_A),
                "particle_count": (0, 0),
                "supports": {"film": 1.0},
            }
        )
        field = lowmag_field(recipe, 256, np.random.default_rng([1, i]))
        rms.append(float(_texture(field.intensity.astype(float))[8:-8, 8:-8].std()))
    q = np.percentile(rms, [10, 50, 90])
    print(
        f"generated film at {ONEVIEW_PIXEL_A / 10:.2f} nm/px (30 fields): texture rms "
        f"10/50/90 % {q[0]:.3f} / {q[1]:.3f} / {q[2]:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--fields", type=int, default=30)
    parser.add_argument("--oneview", type=Path, help="folder of the real OneView frames")
    args = parser.parse_args()
    if args.oneview is not None:
        real_film_texture(args.oneview)
        return
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
