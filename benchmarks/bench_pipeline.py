"""End-to-end frames per second of a simulated pycro-manager acquisition, with and without tem-acq.

Four runs of the same acquisition (real Micro-Manager core, simulated TEM camera rendering as
fast as it can, real pycro-manager Python backend), in one process, repeated and reported as
medians:

- ``ram``: no processor at all: pycro-manager keeps frames in RAM (the reference);
- ``raw``: LiveRecorder recording raw frames to an OME-Zarr store;
- ``fast``: raw plus live denoising with the fast model configuration;
- ``paper``: raw plus live denoising with the paper's ResNet18 U-Net.

Frames lost must be 0 everywhere (a run that loses one fails the benchmark). The models'
speed does not depend on their weights, so freshly initialised packages are used unless
``--fast-model`` / ``--paper-model`` name trained ones.

``python benchmarks/bench_pipeline.py [--frames 200] [--size 512] [--repeats 3] [--device auto]``
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pycromanager import Acquisition

from acquisition_hooks import LiveRecorder, simulated_microscope
from tem_acq.denoise import load_model, new_package
from tem_acq.store import open_store


def run_once(kind: str, frames: int, size: int, where: Path, model: Any) -> dict[str, Any]:
    events = [{"axes": {"time": i}, "exposure": 1.0} for i in range(frames)]
    with simulated_microscope(size=size, dose_rate=5000.0, seed=3, real_time=False) as scope:
        if kind == "ram":
            start = time.perf_counter()
            with Acquisition(directory=None, show_display=False) as acq:
                acq.acquire(events)
            elapsed = time.perf_counter() - start
            kept = int(np.asarray(acq.get_dataset().as_array()).shape[0])
            return {"fps": frames / elapsed, "recorded": kept, "denoised": 0, "skipped": 0}
        store = where / f"{kind}-{time.monotonic_ns()}.ome.zarr"
        with LiveRecorder(store, exposure_ms=1.0, model=model, **scope.recorder_settings()) as live:
            start = time.perf_counter()
            with Acquisition(
                directory=None, show_display=False, **live.acquisition_kwargs()
            ) as acq:
                acq.acquire(events)
        elapsed = time.perf_counter() - start  # includes writing the last frames
    s = live.summary
    return {
        "fps": frames / elapsed,
        "recorded": int(open_store(store).raw.shape[0]),
        "denoised": s.denoised,
        "skipped": s.skipped,
        "latency_ms_p50": s.latency_ms_p50,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--fast-model", default=None)
    parser.add_argument("--paper-model", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        if args.fast_model is None:
            new_package(where / "fast", fast=True)
        if args.paper_model is None:
            new_package(where / "paper", encoder="resnet18")
        models = {
            "fast": load_model(args.fast_model or where / "fast", device=args.device),
            "paper": load_model(args.paper_model or where / "paper", device=args.device),
        }
        for m in models.values():
            m.warmup((args.size, args.size))
        device = str(models["fast"].device)
        card = "CPU" if device == "cpu" else _gpu_name()
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in ("ram", "raw", "fast", "paper")}
        for _ in range(args.repeats):
            for kind in runs:  # interleaved, so machine noise hits every kind alike
                model = models.get(kind)
                runs[kind].append(run_once(kind, args.frames, args.size, where, model))

    ram_fps = statistics.median(r["fps"] for r in runs["ram"])
    rows = []
    for kind, results in runs.items():
        lost = max(args.frames - r["recorded"] for r in results)
        fps = statistics.median(r["fps"] for r in results)
        rows.append(
            {
                "run": kind,
                "fps_median": round(fps, 1),
                "ratio_to_ram": round(fps / ram_fps, 3),
                "frames_lost": lost,
                "denoised_median": statistics.median(r["denoised"] for r in results),
                "skipped_median": statistics.median(r["skipped"] for r in results),
            }
        )
    cpu = platform.processor() or platform.machine()
    header = (
        f"{args.frames} frames of {args.size}x{args.size} uint16, camera unpaced, "
        f"{args.repeats} repeats, device {device} ({card}), {cpu}"
    )
    print(header)
    print("| run | fps (median) | vs RAM | frames lost | denoised | skipped |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['run']} | {r['fps_median']} | {r['ratio_to_ram']} | {r['frames_lost']} | "
            f"{r['denoised_median']} | {r['skipped_median']} |"
        )
    if args.json:
        args.json.write_text(json.dumps({"setup": header, "rows": rows}, indent=2))
    if any(r["frames_lost"] for r in rows):
        raise SystemExit("FAIL: frames were lost")


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)


if __name__ == "__main__":
    main()
