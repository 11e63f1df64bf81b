"""Denoiser benchmark: plain eager float32 versus the engine's best path, in the same run.

Both run the full :meth:`Denoiser.denoise_batch` (normalisation, padding, network, transfer
back), alternating call by call so that load from other processes hits both alike; the ratio
of their medians is the number to trust on a shared machine.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq.denoise.engine import Denoiser, select_device
from tem_acq.denoise.options import DenoiseOptions
from tem_acq.denoise.package import LoadedPackage, load_package, new_package, resolve_package


def device_name(device: Any) -> str:
    """Human name of a torch device: the GPU's name, or the CPU model and thread count."""
    import torch

    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs"


def _stats(times_s: list[float], cpu_s: list[float], batch: int) -> dict[str, float]:
    ms = np.asarray(times_s) * 1e3
    p50, p95 = (float(v) for v in np.percentile(ms, [50, 95]))
    return {
        "p50_ms": p50,
        "p95_ms": p95,
        # The least-disturbed call: on a shared machine its ratio is the steadiest.
        "min_ms": float(ms.min()),
        "p50_ms_per_frame": p50 / batch,
        "frames_per_s": 1e3 * batch / float(statistics.median(ms)),
        # CPU time of this process per call (all threads): steadier than wall time when other
        # processes compete for the cores, so its ratio is the one to check on a busy machine.
        "cpu_ms_per_frame": float(statistics.median(cpu_s)) * 1e3 / batch,
    }


def _package(encoder: str, model: str | None, folder: Path) -> LoadedPackage:
    if model is not None:
        return load_package(resolve_package(model))
    if encoder in ("fast", "paper"):
        new_package(folder, fast=encoder == "fast", name=encoder)
    else:
        new_package(folder, encoder=encoder, name="bench")
    return load_package(folder)


def bench_denoise(
    *,
    encoder: str = "fast",
    model: str | None = None,
    size: int = 512,
    device: str = "auto",
    batch: int = 1,
    repeats: int = 10,
    compile: bool = True,
    reference: str | None = None,
) -> dict[str, Any]:
    """Time eager float32 and the best path on ``batch`` frames of ``size`` x ``size``.

    Parameters
    ----------
    encoder
        ``"fast"`` (the fast configuration), ``"paper"`` (resnet18 U-Net) or an smp encoder
        name (fresh weights); ignored when ``model`` is given.
    model
        A package name or folder to benchmark instead (its trained weights decide which
        reduced-precision paths pass the tolerance check).
    size, batch
        Frame size and frames per call.
    device
        ``auto``, ``cpu``, ``cuda``...
    repeats
        Timed calls of each path (after warm-up).
    compile
        Let the best path try ``torch.compile``.
    reference
        Another encoder (e.g. ``"paper"``) whose eager float32 runs in the same interleaved
        loop, for a fair "fast model vs paper model" ratio on a shared machine.

    Returns
    -------
    A JSON-ready dict: both paths' p50/p95 latency per call and per frame, frames per second,
    the speed-up, the active path and the paths tried with their errors.
    """
    dev = select_device(device)
    with tempfile.TemporaryDirectory() as tmp:
        pkg = _package(encoder, model, Path(tmp) / "model")
        ref_pkg = _package(reference, None, Path(tmp) / "ref") if reference else None
    eager = DenoiseOptions(device=dev, path="eager", batch_size=batch)
    runs = {
        "eager": Denoiser(pkg, options=eager),
        "best": Denoiser(pkg, options=eager, path="auto", compile=compile),
    }
    if ref_pkg is not None:
        runs["reference"] = Denoiser(ref_pkg, options=eager)
    frames = np.random.default_rng(0).poisson(5.0 * 44.0, size=(batch, size, size))
    frames = frames.astype(np.uint16)
    warmup_s = _warm_up(runs, frames.shape)
    stats = _time_interleaved(runs, frames, repeats)
    e, b = stats["eager"], stats["best"]
    return {
        "model": pkg.card.name if model else encoder,
        "architecture": pkg.card.summary(),
        "parameters": sum(p.numel() for p in pkg.model.parameters()),
        "size": size,
        "batch": batch,
        "repeats": repeats,
        "device": str(dev),
        "device_name": device_name(dev),
        "eager": e,
        "best": b,
        "best_path": runs["best"].path_name,
        **_ratios("speedup", e, b),
        "warmup_s": warmup_s,
        "paths_tried": _paths_tried(runs["best"]),
        **_reference_comparison(reference, ref_pkg, stats),
    }


def _warm_up(runs: dict[str, Denoiser], shape: tuple[int, ...]) -> float:
    """Warm every denoiser up at this shape; the seconds the best path's warm-up took."""
    t0 = time.perf_counter()
    runs["best"].warmup(shape)
    warmup_s = time.perf_counter() - t0
    for name, den in runs.items():
        if name != "best":
            den.warmup(shape)
    return warmup_s


def _time_interleaved(
    runs: dict[str, Denoiser], frames: np.ndarray, repeats: int
) -> dict[str, dict[str, float]]:
    """Time ``repeats`` calls of each denoiser, alternating call by call; stats per denoiser."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, den in runs.items():
            t, c = time.perf_counter(), time.process_time()
            den.denoise_batch(frames, 44.0)
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return {name: _stats(times[name], cpu[name], frames.shape[0]) for name in runs}


def _ratios(prefix: str, slow: dict[str, float], fast: dict[str, float]) -> dict[str, float]:
    """How much faster ``fast`` is: by median wall time, CPU time and least-disturbed call."""
    return {
        prefix: slow["p50_ms"] / fast["p50_ms"],
        f"{prefix}_cpu_time": slow["cpu_ms_per_frame"] / fast["cpu_ms_per_frame"],
        f"{prefix}_min": slow["min_ms"] / fast["min_ms"],
    }


def _reference_comparison(
    reference: str | None, ref_pkg: LoadedPackage | None, stats: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """The reference encoder's timings and the best path's speed-up over it (if one ran)."""
    if reference is None or ref_pkg is None:
        return {}
    ref = stats["reference"]
    return {
        "reference": {"model": reference, "architecture": ref_pkg.card.summary(), **ref},
        **_ratios("best_vs_reference", ref, stats["best"]),
    }


def _paths_tried(den: Denoiser) -> list[dict[str, Any]]:
    """The paths the denoiser tried at warm-up, JSON-ready."""
    return [
        {
            "name": t.name,
            "ok": t.ok,
            "rel_rms": t.rel_rms,
            "rel_max": t.rel_max,
            "ms": None if np.isnan(t.ms) else t.ms,
            "note": t.note,
        }
        for t in den.selection
    ]


def format_result(r: dict[str, Any]) -> str:
    """Readable lines for one :func:`bench_denoise` result."""
    lines = [
        f"{r['architecture']} ({r['parameters'] / 1e6:.2f} M params), {r['size']}x{r['size']}, "
        f"batch {r['batch']}, {r['device_name']}",
        f"  eager fp32: p50 {r['eager']['p50_ms']:.1f} ms, p95 {r['eager']['p95_ms']:.1f} ms "
        f"per call; {r['eager']['p50_ms_per_frame']:.1f} ms/frame, "
        f"{r['eager']['frames_per_s']:.1f} frames/s",
        f"  best ({r['best_path']}): p50 {r['best']['p50_ms']:.1f} ms, "
        f"p95 {r['best']['p95_ms']:.1f} ms per call; {r['best']['p50_ms_per_frame']:.1f} "
        f"ms/frame, {r['best']['frames_per_s']:.1f} frames/s",
        f"  speed-up {r['speedup']:.2f}x wall, {r['speedup_cpu_time']:.2f}x CPU time "
        f"({r['eager']['cpu_ms_per_frame']:.0f} vs {r['best']['cpu_ms_per_frame']:.0f} "
        f"CPU ms/frame; warm-up {r['warmup_s']:.1f} s)",
    ]
    if "reference" in r:
        ref = r["reference"]
        lines.append(
            f"  reference {ref['architecture']} eager fp32 (same loop): p50 {ref['p50_ms']:.1f} ms;"
            f" best is {r['best_vs_reference']:.2f}x faster wall, "
            f"{r['best_vs_reference_cpu_time']:.2f}x in CPU time"
        )
    for t in r["paths_tried"]:
        ms = "" if t["ms"] is None else f"{t['ms']:.1f} ms"
        status = "ok" if t["ok"] else "rejected"
        lines.append(
            f"    path {t['name']:<24} {status:<8} rel RMS {t['rel_rms']:.2g} "
            f"rel max {t['rel_max']:.2g} {ms} {t['note']}".rstrip()
        )
    return "\n".join(lines)
