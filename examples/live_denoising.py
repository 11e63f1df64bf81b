"""An acquisition script with the live-denoising hook attached (the microscopist's view).

Every raw frame goes to an OME-Zarr store; a U-Net denoises frames as they arrive and the
latest denoised frame is handed to a callback (a live display would draw it). On a real
microscope, replace ``simulated_microscope`` with your Micro-Manager session and give the
camera's pixel size and counts per electron yourself.

``python examples/live_denoising.py --out run1.ome.zarr [--model default] [--frames 50]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from pycromanager import Acquisition

from acquisition_hooks import LiveRecorder, simulated_microscope
from tem_acq.store import open_store


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("live.ome.zarr"))
    parser.add_argument("--model", default="default", help="model package name or folder")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    shown: list[float] = []

    def show(index: int, electrons: np.ndarray) -> None:
        # a real viewer would draw the frame; we keep its mean to print at the end
        shown.append(float(electrons.mean()))

    events = [{"axes": {"time": i}, "exposure": 2.0} for i in range(args.frames)]
    with simulated_microscope(dose_rate=2500.0, size=args.size, seed=1) as scope:
        with LiveRecorder(
            args.out,
            model=args.model,
            exposure_ms=2.0,
            on_denoised=show,
            overwrite=args.overwrite,
            **scope.recorder_settings(),
        ) as live:
            with Acquisition(
                directory=None, show_display=False, **live.acquisition_kwargs()
            ) as acq:
                acq.acquire(events)
    summary = live.summary
    store = open_store(args.out)
    print(
        f"{summary.frames} raw frames recorded at {summary.fps:.1f} fps; "
        f"{summary.denoised} denoised, {summary.skipped} skipped "
        f"(latency p50 {summary.latency_ms_p50 or float('nan'):.0f} ms)"
    )
    print(f"store: {args.out} raw {store.raw.shape}, model {store.metadata.model.name}")
    return {"frames": summary.frames, "denoised": summary.denoised, "shown": len(shown)}


if __name__ == "__main__":
    main()
