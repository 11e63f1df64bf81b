"""``tem-acq demo``: the whole job in one command, with no microscope.

Starts the simulated microscope, runs a real pycro-manager acquisition at about 5 e-/px per
frame with live denoising by a shipped model, records raw and denoised frames to an OME-Zarr
store, and ends with a summary (frames, fps, denoise latency, skipped frames, PSNR of raw and
denoised against the simulator's ground truth) and a picture raw | denoised | ground truth.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from acquisition_hooks.commands import (
    DETECTOR,
    INTERRUPTED,
    SENSOR_SIZE,
    SPECIMEN,
    STACK,
    ctrl_c_stops,
    interrupted_message,
    require_frames,
    run_events,
)
from tem_acq.cli.command import DEVICE, JSON, MODEL, SEED, Command, require_finite
from tem_acq.outputs import claim_output

#: Short exposure of the demo (ms) and the dose rate that makes it ~5 e-/px, as in the paper.
EXPOSURE_MS = 2.0
DOSE_RATE = 2500.0


def arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``demo`` arguments."""
    parser.add_argument("--out", type=Path, default=Path("tem-acq-demo"), help="output folder")
    parser.add_argument("--frames", type=int, default=60, help="frames to acquire (default 60)")
    parser.add_argument(
        "--interval-ms",
        type=float,
        default=100.0,
        help="time between frame starts (default 100 ms: a 10 fps live view)",
    )
    DEVICE.add(parser, help="auto, cpu or cuda")
    MODEL.add(parser)
    SENSOR_SIZE.add(parser)
    DETECTOR.add(parser, default="integrating")
    SPECIMEN.add(parser)
    SEED.add(parser, default=2022)
    STACK.add(parser)
    JSON.add(parser, help="print the summary as JSON")


def run_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code."""
    from acquisition_hooks.recorder import LiveRecorder
    from acquisition_hooks.session import simulated_microscope

    require_frames(args)
    require_finite(args, "interval_ms")
    store = args.out / "demo.ome.zarr"
    # an earlier demo's store is replaced; a folder that cannot hold one is one line, now
    claim_output(store, overwrite=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stale = args.out / "demo.report.html"  # describes the store this run replaces
    if stale.is_file():
        stale.unlink()
    picture = args.out / "demo.png"
    started = time.perf_counter()
    events = [
        {"axes": {"time": i}, "exposure": EXPOSURE_MS, "min_start_time": i * args.interval_ms / 1e3}
        for i in range(args.frames)
    ]
    with simulated_microscope(
        dose_rate=DOSE_RATE,
        detector=args.detector,
        specimen=args.specimen,
        seed=args.seed,
        size=args.size,
        exposure_ms=EXPOSURE_MS,
        stack=args.stack,
    ) as scope:
        camera = scope.camera
        assert camera is not None
        scope.move_stage(*_interesting_field_um(camera))
        settings = {
            "model": args.model,
            "device": args.device,
            "exposure_ms": EXPOSURE_MS,
            "overwrite": store.exists(),
            **scope.recorder_settings(),
        }
        if args.stack == "pymmcore-plus":
            from acquisition_hooks.mda import MDARecorder, run_sequence, time_series

            live: Any = MDARecorder(
                store, core=scope.core, camera_tags=camera.last_frame_tags, **settings
            )
            sequence = time_series(args.frames, args.interval_ms / 1e3)
            with ctrl_c_stops() as stop, live:
                run_sequence(sequence, live, stop)
        else:
            live = LiveRecorder(store, **settings)
            with ctrl_c_stops() as stop, live:
                run_events(events, live, stop)
        summary = live.summary
        quality = _quality(store, camera, picture)
    result = {
        "store": str(store),
        "picture": str(picture),
        "frames": summary.frames,
        "fps": round(summary.fps, 1),
        "denoised": summary.denoised,
        "skipped": summary.skipped,
        "latency_ms_p50": _round(summary.latency_ms_p50),
        "latency_ms_p95": _round(summary.latency_ms_p95),
        "device": live.metadata.model.device if live.metadata.model else None,
        "model": live.metadata.model.name if live.metadata.model else None,
        **quality,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps({**result, "aborted": live.aborted}, indent=2))
    else:
        print(_describe(result))
    if stop.is_set():
        print(interrupted_message("demo", store, live.aborted), file=sys.stderr)
        return INTERRUPTED
    return 0


def _interesting_field_um(camera: Any) -> tuple[float, float]:
    """A stage position whose field holds support film with particles and some vacuum."""
    from tem_acq.pairs import grid_positions_um

    sim = camera.simulator
    field_um = camera.config.size * sim.pixel_size_A * 1e-4
    best, best_score = (0.0, 0.0), -1.0
    for x_um, y_um in grid_positions_um(25, field_size_um=field_um):
        film = sim.film_fraction((x_um * 1e4 / sim.pixel_size_A, y_um * 1e4 / sim.pixel_size_A))
        score = -abs(film - 0.8)  # mostly film, with a hole edge in view
        if score > best_score:
            best, best_score = (x_um, y_um), score
    return best


def _quality(store: Path, camera: Any, picture: Path) -> dict[str, Any]:
    """PSNR of raw and denoised frames against ground truth, and the picture."""
    from tem_acq.metrics import psnr
    from tem_acq.store import open_store

    s = open_store(store)
    cpe = s.metadata.camera.counts_per_electron
    dose = s.metadata.dose_e_per_px or 1.0
    done = [r for r in s.frames if r.denoised and "sim_frame_id" in r.extra]
    if not done:
        return {"psnr_raw_dB": None, "psnr_denoised_dB": None}
    raw_db, den_db = [], []
    shown: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    for row in done[-10:]:
        info = camera.frame_info(int(row.extra["sim_frame_id"]))
        if info is None:
            continue
        truth = camera.ground_truth(info) / dose
        raw = np.asarray(s.raw[row.index], dtype=np.float64) / cpe / dose
        den = np.asarray(s.denoised[row.index], dtype=np.float64) / dose
        raw_db.append(psnr(raw, truth))
        den_db.append(psnr(den, truth))
        shown = (raw, den, truth)
    if shown is not None:
        _save_picture(picture, *shown)
    return {
        "psnr_raw_dB": _round(float(np.median(raw_db)) if raw_db else None),
        "psnr_denoised_dB": _round(float(np.median(den_db)) if den_db else None),
    }


def _save_picture(path: Path, raw: np.ndarray, den: np.ndarray, truth: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = np.percentile(truth, [0.5, 99.5])
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.8), constrained_layout=True)
    for ax, image, title in zip(
        axes,
        (raw, den, truth),
        ("raw (~5 e-/px)", "denoised (live)", "ground truth (simulator)"),
        strict=True,
    ):
        shown = ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.set_axis_off()
    fig.colorbar(shown, ax=axes, shrink=0.8, label="dose-normalised intensity (1 = vacuum)")
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def _describe(r: dict[str, Any]) -> str:
    lat = (
        f"{r['latency_ms_p50']:.0f} ms p50, {r['latency_ms_p95']:.0f} ms p95"
        if r["latency_ms_p50"] is not None
        else "none measured"
    )
    psnr = (
        f"raw {r['psnr_raw_dB']:.1f} dB -> denoised {r['psnr_denoised_dB']:.1f} dB"
        if r["psnr_denoised_dB"] is not None
        else "no denoised frame to compare"
    )
    return "\n".join(
        [
            f"acquired {r['frames']} frames at {r['fps']} fps (simulated TEM, ~5 e-/px per frame)",
            f"model {r['model']} on {r['device']}: {r['denoised']} denoised, {r['skipped']} "
            f"skipped; latency {lat}",
            f"PSNR against ground truth: {psnr}",
            f"store:   {r['store']}  (tem-acq info / view / report)",
            f"picture: {r['picture']}",
            f"done in {r['wall_s']} s",
        ]
    )


COMMAND = Command(
    "demo",
    help="simulated low-dose acquisition with live denoising, summary and picture",
    description=__doc__,
    arguments=arguments,
    run=run_demo,
    rank=120,
    raw_description=True,
)
