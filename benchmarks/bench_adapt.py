"""``tem-acq adapt`` on a specimen ``default`` was not trained for: time, estimate, true error.

Simulated Au fringes at 0.25 Å per pixel (``default`` was trained at 0.5 Å), counting camera,
about 5 e-/px per frame, 256 px frames; ``adapt`` runs on the frames, then both models denoise
fresh frames and are compared with the simulator's noise-free image.

Run: ``python benchmarks/bench_adapt.py [--frames 48] [--steps 300] [--device auto]``.
Prints one line per figure and writes ``benchmarks/results/adapt-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from tem_acq.adapt import adapt
from tem_acq.denoise import load_model
from tem_acq.sim import SimulationConfig, TEMSimulator

RESULTS = Path(__file__).resolve().parent / "results"
EXPOSURE_S = 0.002


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    config = SimulationConfig(
        specimen="atomic", detector="counting", size=args.size, seed=3, pixel_size_A=0.25
    )
    sim = TEMSimulator(config)
    truth = sim.expected_electrons(EXPOSURE_S).astype(np.float64)
    with tempfile.TemporaryDirectory() as tmp:
        stack = Path(tmp) / "frames.npy"
        np.save(stack, np.stack([sim.render(EXPOSURE_S) for _ in range(args.frames)]))
        t0 = time.perf_counter()
        result = adapt(
            [stack],
            "default",
            Path(tmp) / "adapted",
            counts_per_electron=1.0,
            max_steps=args.steps,
            device=args.device,
            progress=False,
            force=True,
        )
        wall = time.perf_counter() - t0
        fresh = np.stack([sim.render(EXPOSURE_S) for _ in range(4)]).astype(np.float32)
        inner = (slice(8, -8), slice(8, -8))
        true_mse = {}
        for name, model in (("default", "default"), ("adapted", Path(tmp) / "adapted")):
            out = load_model(model, device=args.device).denoise(fresh, counts_per_electron=1.0)
            true_mse[name] = float(np.mean([np.mean((o[inner] - truth[inner]) ** 2) for o in out]))
    record = {
        "frames": args.frames,
        "size": args.size,
        "steps": result.steps,
        "device": result.device,
        "wall_s": round(wall, 1),
        "estimated_mse_before": result.before.rows["model"].mse,
        "estimated_mse_after": result.after.rows["model"].mse,
        "gain_over_base_db": result.gain.to_dict(),
        "improved": result.improved,
        "true_mse_default": true_mse["default"],
        "true_mse_adapted": true_mse["adapted"],
    }
    for key, value in record.items():
        print(f"{key}: {value}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"adapt-{result.device.split(':')[0]}.json").write_text(
        json.dumps(record, indent=1) + "\n", encoding="utf-8"
    )


if __name__ == "__main__":
    main()
