"""Offline denoising throughput: one process against a 2-worker Dask LocalCluster, same store.

One run measures, on copies of one store (``--frames`` frames of ``--size`` px, OneView-like
counts), the frames per second of ``tem_acq.denoise.batch.run_jobs`` in this process
(``scheduler=None``) and on a LocalCluster of ``--workers`` worker processes started before the
clock (its start-up is timed apart; the first, warm-up run on the cluster loads the model in
each worker and is not counted). Medians of ``--repeats`` runs each; the results go to
``benchmarks/results/denoise-dask-<device>.json``.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_denoise_dask.py --model fast --size 256 --frames 96
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

import numpy as np

from tem_acq.denoise import load_model
from tem_acq.denoise.batch import plan_stores, run_jobs
from tem_acq.denoise.options import DenoiseOptions
from tem_acq.denoise.package import package_folder
from tem_acq.denoise.provenance import model_provenance
from tem_acq.store import AcquisitionWriter

META: dict[str, Any] = {
    "instrument": {"voltage_kV": 200, "pixel_size_A": 29.88, "magnification": 20000},
    "camera": {"name": "Gatan OneView", "counts_per_electron": 44, "binning": 8},
    "exposure_ms": 3.3,
    "frame_interval_ms": 8.0,
    "dose_e_per_px": 4.6,
}


def make_store(path: Path, size: int, frames: int) -> Path:
    rng = np.random.default_rng(0)
    with AcquisitionWriter(path, META, (size, size), denoised=False) as writer:
        for _ in range(frames):
            writer.append_raw(rng.poisson(4.6 * 44, (size, size)).astype("uint16"))
    return path


def timed(
    src: Path, work: Path, model: str, options: DenoiseOptions, scheduler: str | None
) -> float:
    """Frames per second of one run over a fresh copy of ``src``."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src, work)
    denoiser = load_model(model, options=options)
    jobs = plan_stores([work], model_provenance(denoiser))
    t0 = time.perf_counter()
    frames = run_jobs(jobs, model, options, scheduler=scheduler)
    return frames / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="fast")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="results JSON (default: benchmarks/results/)")
    args = parser.parse_args()
    from distributed import LocalCluster

    model = str(package_folder(args.model))
    options = DenoiseOptions.from_settings(device=args.device, path="eager")
    with tempfile.TemporaryDirectory() as tmp:
        src = make_store(Path(tmp) / "src.zarr", args.size, args.frames)
        work = Path(tmp) / "work.zarr"
        timed(src, work, model, options, None)  # warm-up: model load, allocator
        single = [timed(src, work, model, options, None) for _ in range(args.repeats)]
        t0 = time.perf_counter()
        threads = max(1, (os.cpu_count() or 1) // args.workers)
        with LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster:
            startup = time.perf_counter() - t0
            timed(src, work, model, options, cluster.scheduler_address)  # loads per worker
            multi = [
                timed(src, work, model, options, cluster.scheduler_address)
                for _ in range(args.repeats)
            ]
    result = {
        "benchmark": "bench_denoise_dask",
        "model": args.model,
        "device": args.device,
        "frame_px": args.size,
        "frames": args.frames,
        "workers": args.workers,
        "torch_threads_per_worker": threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "single_process_fps": single,
        "local_cluster_fps": multi,
        "single_process_fps_median": statistics.median(single),
        "local_cluster_fps_median": statistics.median(multi),
        "speedup": statistics.median(multi) / statistics.median(single),
        "cluster_startup_s": startup,
    }
    out = Path(args.out or Path(__file__).parent / "results" / f"denoise-dask-{args.device}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
