"""The evaluation's metric work, hand-written (before) against scipy/scikit-image (now), in one run.

The hand-written ``tem_acq.metrics`` and ``tem_acq.registration`` are loaded from git (commit
``98f761b``, the last before they moved onto the libraries) beside the current ones, and both do
what the evaluation does for one frame (SSIM, edge mask, oracle Gaussian, oracle Wiener, vacuum
check, registration of a short exposure onto its long one), alternately, on the same 512x512
simulated frame; medians over the repeats. It also checks that both give the same numbers.

Run: ``python benchmarks/bench_metrics_libraries.py [--repeats 7]``. Writes
``benchmarks/results/metrics-libraries.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
BEFORE = "98f761b"


def old_module(name: str, path: str) -> types.ModuleType:
    """A module of this repository as it was at :data:`BEFORE`."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:{path}"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    exec(compile(source, path, "exec"), module.__dict__)
    return module


def frame_work(metrics: types.ModuleType, registration: types.ModuleType, x: dict) -> list:
    """What the evaluation computes for one frame; returns the numbers."""
    truth, raw, den, vac = x["truth"], x["raw"], x["denoised"], x["vacuum"]
    edges = metrics.edge_mask(truth)
    _, sigma = metrics.oracle_gaussian(raw, truth)
    wiener = metrics.oracle_wiener(raw, truth)
    check = metrics.vacuum_structure(den, raw, truth, vac)
    reg = registration.register(x["long"], raw, max_shift_px=None)
    return [
        metrics.ssim(den, truth),
        metrics.ssim(den, truth, mask=edges),
        metrics.psnr(den, truth, mask=edges),
        sigma,
        metrics.psnr(wiener, truth),
        None if check is None else check.ratio,
        reg.dy,
        reg.dx,
    ]


def inputs(size: int) -> dict:
    from tem_acq import metrics
    from tem_acq.sim import SimulationConfig, TEMSimulator

    sim = TEMSimulator(SimulationConfig.model_validate({"size": size, "seed": 4}))
    centre = (2626.0, -1312.0)
    truth = sim.expected_electrons(exposure_s=0.002, stage_xy_px=centre) / 5.0
    rng = np.random.default_rng(7)
    raw = rng.poisson(truth * 5.0) / 5.0
    x0, y0 = sim.field_origin(centre)
    return {
        "truth": truth,
        "raw": raw,
        "denoised": 0.7 * truth + 0.3 * metrics.gaussian_filter(raw, 2.0),
        "vacuum": sim.vacuum_mask(int(x0), int(y0), size, size),
        "long": rng.poisson(truth * 1000.0) / 1000.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    from tem_acq import metrics, registration

    old = (old_module("old_metrics", "tem_acq/metrics.py"),
           old_module("old_registration", "tem_acq/registration.py"))  # fmt: skip
    new = (metrics, registration)
    x = inputs(args.size)
    load = os.getloadavg()[0]
    numbers = {"before": frame_work(*old, x), "now": frame_work(*new, x)}
    times: dict[str, list[float]] = {"before": [], "now": []}
    for _ in range(args.repeats):
        for key, modules in (("before", old), ("now", new)):
            t = time.perf_counter()
            frame_work(*modules, x)
            times[key].append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    result = {
        "size": args.size,
        "repeats": args.repeats,
        "cores": os.cpu_count(),
        "load_average_at_start": load,
        "ms_per_frame": med,
        "speedup": med["before"] / med["now"],
        "numbers": numbers,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "metrics-libraries.json").write_text(json.dumps(result, indent=1) + "\n")
    text = (
        f"# Evaluation metrics per {args.size}x{args.size} frame: hand-written vs scipy/"
        f"scikit-image ({os.cpu_count()} cores, load {load:.1f} at start, medians of "
        f"{args.repeats})\n\n| | ms per frame |\n|---|---|\n"
        f"| hand-written ({BEFORE}) | {med['before']:.0f} |\n"
        f"| scipy.ndimage + scikit-image | {med['now']:.0f} |\n\n"
        f"{result['speedup']:.2f}x as fast; same numbers: {numbers['before']} vs "
        f"{numbers['now']}\n"
    )
    (RESULTS / "metrics-libraries.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
