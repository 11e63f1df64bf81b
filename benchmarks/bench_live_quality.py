"""Denoised frames per second of a live acquisition with the live quality estimate on and off.

The same acquisition (real Micro-Manager core, simulated TEM camera paced in real time at
``--exposure-ms`` per frame, real pycro-manager Python backend, ``LiveRecorder`` with policy
``skip``: the camera outruns the denoiser, which denoises the newest frame all the time, so
the denoised frame rate is the denoiser's) is run with ``quality_every_s`` off and on,
alternating, in one process; medians are reported side by side. The issue's target: the
estimate may not reduce the denoised frame rate by more than 5 %.

``python benchmarks/bench_live_quality.py [--frames 750] [--exposure-ms 20] [--size 512]
[--repeats 2] [--model default] [--every-s 5] [--device auto] [--json OUT.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from pycromanager import Acquisition

from acquisition_hooks import LiveRecorder, simulated_microscope


def run_once(
    args: argparse.Namespace, frames: int, where: Path, every_s: float | None
) -> dict[str, Any]:
    """One acquisition; its denoised frames per second and the estimate's counts."""
    exposure, model, device = args.exposure_ms, args.model, args.device
    events = [{"axes": {"time": i}, "exposure": exposure} for i in range(frames)]
    store = where / f"q-{time.monotonic_ns()}.ome.zarr"
    with simulated_microscope(size=args.size, dose_rate=250.0 / exposure, seed=3) as scope:
        with LiveRecorder(
            store,
            exposure_ms=exposure,
            model=model,
            device=device,
            policy="skip",
            quality_every_s=every_s,
            **scope.recorder_settings(),
        ) as live:
            start = time.perf_counter()
            with Acquisition(
                directory=None, show_display=False, **live.acquisition_kwargs()
            ) as acq:
                acq.acquire(events)
        elapsed = time.perf_counter() - start  # to close: every frame denoised and written
    shutil.rmtree(store)
    s = live.summary
    quality = s.quality or {}
    return {
        "denoised_fps": s.denoised / elapsed,
        "denoised": s.denoised,
        "frames": s.frames,
        "estimates": quality.get("estimates", 0),
        "estimate_s_p50": quality.get("compute_s_p50"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=750)
    parser.add_argument("--exposure-ms", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="default")
    parser.add_argument("--every-s", type=float, default=5.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with tempfile.TemporaryDirectory() as tmp:
        run_once(args, 20, Path(tmp), None)  # warm-up, dropped
        for repeat in range(args.repeats):
            order = ("off", "on") if repeat % 2 == 0 else ("on", "off")
            for kind in order:
                every = args.every_s if kind == "on" else None
                runs[kind].append(run_once(args, args.frames, Path(tmp), every))
    result = _summary(args, runs)
    print(_markdown(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


def _summary(args: argparse.Namespace, runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    median = {k: statistics.median(r["denoised_fps"] for r in v) for k, v in runs.items()}
    return {
        "frames": args.frames,
        "size": args.size,
        "exposure_ms": args.exposure_ms,
        "repeats": args.repeats,
        "model": args.model,
        "every_s": args.every_s,
        "device": args.device,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "median_denoised_fps": median,
        "on_vs_off": median["on"] / median["off"],
        "runs": runs,
    }


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"{result['frames']} frames of {result['size']}x{result['size']} at "
        f"{result['exposure_ms']:g} ms (real time), model "
        f"{result['model']}, policy skip, estimate every {result['every_s']:g} s, "
        f"{result['repeats']} repeats alternating, device {result['device']}, "
        f"{result['cpus']} CPUs ({result['machine']})",
        "| live estimate | denoised fps (median) | runs | estimates per run | estimate s (p50) |",
        "|---|---|---|---|---|",
    ]
    for kind in ("off", "on"):
        runs = result["runs"][kind]
        fps = ", ".join(f"{r['denoised_fps']:.2f}" for r in runs)
        estimates = ", ".join(str(r["estimates"]) for r in runs)
        seconds = ", ".join(
            "-" if r["estimate_s_p50"] is None else f"{r['estimate_s_p50']:.3f}" for r in runs
        )
        lines.append(
            f"| {kind} | {result['median_denoised_fps'][kind]:.2f} | {fps} | {estimates} | "
            f"{seconds} |"
        )
    lines.append(f"\non / off: {result['on_vs_off']:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
