"""Record a tiny simulated acquisition, then browse the store it wrote.

The recording is what an acquisition script does on a real microscope: a ``LiveRecorder``
attached to a pycro-manager ``Acquisition`` writes every raw frame (and, with a model, the
denoised frame) to one OME-Zarr store. Here the microscope is the simulated TEM in a real
Micro-Manager core, so it runs anywhere in a few seconds.

Browsing needs no microscope and no viewer: ``open_store`` gives the metadata, the frames as
lazy arrays that slice into numpy, and the per-frame table; ``write_report`` makes an HTML page.

Run::

    python examples/browse_store.py                       # 20 frames of 128 x 128, no model
    python examples/browse_store.py --model PACKAGE       # denoise live with a model package
    python examples/browse_store.py --frames 8 --size 64 --out-dir /tmp/tiny

A model package comes from ``tem-acq model new --fast --out PACKAGE`` (untrained, for trying
things out) or ``tem-acq models`` (those installed). Then open the store in napari with
``tem-acq view STORE`` (``pip install 'tem-acq[viewer]'``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def record(path: Path, *, frames: int, size: int, model: str | None, exposure_ms: float) -> None:
    """Record ``frames`` frames from the simulated TEM into a new store at ``path``."""
    from pycromanager import Acquisition

    from acquisition_hooks import LiveRecorder, simulated_microscope

    with simulated_microscope(size=size, seed=1, exposure_ms=exposure_ms) as scope:
        # "block" denoises every frame (the camera waits); live viewing would use "skip"
        with LiveRecorder(
            path,
            exposure_ms=exposure_ms,
            model=model,
            policy="block" if model else "skip",
            **scope.recorder_settings(),
        ) as recorder:
            events = [{"axes": {"time": i}, "exposure": exposure_ms} for i in range(frames)]
            with Acquisition(
                directory=None, show_display=False, **recorder.acquisition_kwargs()
            ) as acquisition:
                acquisition.acquire(events)


def browse(path: Path, report: Path) -> None:
    """Show what a store holds: metadata, frames as numpy arrays, the per-frame table."""
    from tem_acq.report import write_report
    from tem_acq.store import open_store

    store = open_store(path)
    meta = store.metadata
    print(store)
    print(
        f"{store.n_frames} frames of {store.frame_shape[0]} x {store.frame_shape[1]} px at "
        f"{meta.instrument.pixel_size_A:.3g} A/px, {meta.instrument.voltage_kV:g} kV; "
        f"{meta.dose_e_per_px:.3g} e-/px = {meta.dose_e_per_A2:.3g} e-/A^2 per "
        f"{meta.exposure_ms:g} ms frame; {meta.camera.counts_per_electron:g} counts per e-"
    )
    print("model:", "none" if meta.model is None else f"{meta.model.name} {meta.model.sha256}")

    # Frames: store.raw is a lazy (t, y, x) zarr array; slicing reads just those frames into
    # numpy. Divide counts by the camera's conversion factor to get electrons per pixel, the
    # unit of the denoised frames.
    first = np.asarray(store.raw[0])
    electrons = np.asarray(store.raw[:], dtype=np.float32) / meta.camera.counts_per_electron
    print(
        f"raw[0]: {type(first).__name__} {first.dtype} {first.shape}, "
        f"{first.min()}..{first.max()} counts; all frames: mean {electrons.mean():.3f} e-/px"
    )
    if store.denoised is not None:
        done = [row.index for row in store.frames if row.denoised]
        print(f"denoised: {len(done)} of {store.n_frames} frames (NaN where not denoised)")
        if done:
            frame = np.asarray(store.denoised[done[0]])
            residual = float(np.mean(frame - electrons[done[0]]))
            print(
                f"denoised[{done[0]}]: mean {float(np.mean(frame)):.3f} e-/px, "
                f"mean difference from raw {residual:+.3f} e-/px"
            )

    # The per-frame table: one row per frame, as pydantic models or as numpy columns.
    table = store.frame_table()
    print(f"{'frame':>5} {'time ms':>8} {'dose e-/px':>10} {'denoised':>8} {'latency ms':>10}")
    stamps = table["timestamp"]
    ms = (stamps - stamps[0]).astype("timedelta64[us]").astype(np.float64) / 1000.0
    for i in range(min(len(table["index"]), 5)):
        print(
            f"{table['index'][i]:>5} {ms[i]:>8.1f} {table['dose_e_per_px'][i]:>10.3f} "
            f"{table['denoised'][i]!s:>8} {table['denoise_latency_ms'][i]:>10.1f}"
        )
    total = np.nansum(table["dose_e_per_px"])
    print(
        f"total dose of the series: {total:.1f} e-/px = "
        f"{total / meta.instrument.pixel_size_A**2:.3g} e-/A^2"
    )
    if store.errors:
        print("errors:", *store.errors, sep="\n  ")

    written = write_report(path, report)
    print(f"report: {written}")


def main(argv: list[str] | None = None) -> None:
    """Record, then browse."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="frames to record (default 20)")
    parser.add_argument("--size", type=int, default=128, help="frame size in px (default 128)")
    parser.add_argument("--exposure-ms", type=float, default=2.0, help="exposure (default 2)")
    parser.add_argument("--model", default="none", help="model package path or name, or none")
    parser.add_argument("--out-dir", type=Path, default=None, help="folder (default: a temp one)")
    args = parser.parse_args(argv)

    out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="tem-acq-example-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    store = out_dir / "tiny.ome.zarr"
    model = None if args.model == "none" else args.model
    record(store, frames=args.frames, size=args.size, model=model, exposure_ms=args.exposure_ms)
    print(f"recorded {store}\n")
    browse(store, out_dir / "tiny.report.html")


if __name__ == "__main__":
    main()
