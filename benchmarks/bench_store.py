"""Store-writing throughput against a plain sequential write of the same bytes to the same disk.

For each frame size (uint16 raw, optionally plus float32 denoised) it writes an acquisition with
AcquisitionWriter (every shard fsynced, as the store always does) and, in the same run and
directory, a plain file of the same bytes written sequentially and fsynced at the same cadence
(once per shard's worth of bytes). Throughput counts uncompressed frame bytes per second; the
ratio is store / plain (median of the repeats, which alternate in order). Also printed: the
99th percentile of the time one append (plus write_denoised) took, the bytes on disk per frame
byte, and the store's CPU time per frame (less sensitive to other load than wall time).
Frames are simulated like the paper's camera (Gatan OneView: about 4.6 e-/px per frame, 44
counts per electron, gain noise), so compression sees realistic counts.

Usage::

    python benchmarks/bench_store.py                 # 512 and 1024, raw and raw+denoised
    python benchmarks/bench_store.py --sizes 512 --repeats 3 --variants
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tem_acq.store import AcquisitionMetadata, AcquisitionWriter, Camera, Instrument

MB = 1e6


def make_frames(size: int, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pools of low-dose raw frames (uint16 counts) and smooth denoised frames (float32)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    specimen = 1.0 + 0.3 * np.sin(40 * x) * np.cos(25 * y)
    electrons = rng.poisson(4.6 * specimen, size=(count, size, size))
    counts = electrons * 44.0 + rng.normal(0.0, 35.0, size=electrons.shape)
    raw = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)
    denoised = (4.6 * specimen + rng.normal(0, 0.05, size=(count, size, size))).astype(np.float32)
    return raw, denoised


def metadata() -> AcquisitionMetadata:
    return AcquisitionMetadata(
        instrument=Instrument(voltage_kV=200, pixel_size_A=29.88),
        camera=Camera(name="simulated OneView", counts_per_electron=44, binning=8),
        exposure_ms=3.3,
        dose_e_per_px=4.6,
    )


def bench_store(
    where: Path,
    raw: np.ndarray,
    denoised: np.ndarray | None,
    n_frames: int,
    compression: str,
    denoised_compression: str,
) -> tuple[float, float, int]:
    """Write one store; return (seconds, p99 append latency in ms, bytes on disk)."""
    path = where / "bench.zarr"
    pool = len(raw)
    latencies = []
    start = time.perf_counter()
    with AcquisitionWriter(
        path,
        metadata(),
        raw.shape[1:],
        "uint16",
        denoised=denoised is not None,
        compression=compression,  # type: ignore[arg-type]
        denoised_compression=denoised_compression,  # type: ignore[arg-type]
        flush_interval_s=None,
    ) as writer:
        for i in range(n_frames):
            t0 = time.perf_counter()
            index = writer.append_raw(raw[i % pool])
            if denoised is not None:
                writer.write_denoised(index, denoised[i % pool], latency_ms=1.0)
            latencies.append(time.perf_counter() - t0)
    seconds = time.perf_counter() - start
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    shutil.rmtree(path)
    return seconds, float(np.percentile(latencies, 99) * 1e3), size


def bench_plain(where: Path, frames: list[np.ndarray], n_frames: int, shard: int) -> float:
    """Write the same frame bytes sequentially to one file, fsync per shard's worth; seconds."""
    path = where / "plain.bin"
    start = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(n_frames):
            for pool in frames:
                os.write(fd, pool[i % len(pool)].data)
            if (i + 1) % shard == 0:
                os.fsync(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    seconds = time.perf_counter() - start
    path.unlink()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--megabytes", type=float, default=256, help="raw bytes per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="disk to test (default: temp)")
    parser.add_argument("--variants", action="store_true", help="also compare compression choices")
    args = parser.parse_args()

    # The defaults (lz4 for both) first; --variants adds the other compression choices.
    configs = [("raw", False, "lz4", "lz4"), ("raw+denoised", True, "lz4", "lz4")]
    if args.variants:
        configs += [
            ("raw zstd", False, "zstd", "zstd"),
            ("raw none", False, "none", "none"),
            ("raw+denoised zstd", True, "zstd", "zstd"),
            ("raw+denoised none", True, "none", "none"),
        ]
    print(
        f"{'frames':>10} {'what':<26} {'store MB/s':>10} {'plain MB/s':>10} {'ratio':>6} "
        f"{'p99 ms':>7} {'disk/raw':>8} {'cpu ms':>6}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        where = Path(tmp)
        warm_raw, warm_den = make_frames(64, 2)
        bench_store(where, warm_raw, warm_den, 32, "lz4", "lz4")  # imports, first-call costs
        for size in args.sizes:
            n_frames = max(32, int(args.megabytes * MB / (size * size * 2)))
            raw, den = make_frames(size, 8)
            for label, with_den, comp, den_comp in configs:
                pools = [raw, den] if with_den else [raw]
                nbytes = n_frames * sum(p[0].nbytes for p in pools)
                stores, plains, ratios, p99s = [], [], [], []
                disk = 0
                cpus = []
                for repeat in range(args.repeats):
                    # Alternate which goes first, so drifting load favours neither.
                    if repeat % 2:
                        plain = bench_plain(where, list(pools), n_frames, 16)
                    c0 = time.process_time()
                    seconds, p99, disk = bench_store(
                        where, raw, den if with_den else None, n_frames, comp, den_comp
                    )
                    cpus.append((time.process_time() - c0) / n_frames * 1e3)
                    if not repeat % 2:
                        plain = bench_plain(where, list(pools), n_frames, 16)
                    stores.append(nbytes / seconds / MB)
                    plains.append(nbytes / plain / MB)
                    ratios.append(plain / seconds)
                    p99s.append(p99)
                print(
                    f"{n_frames:>4}x{size:<5} {label:<26} {statistics.median(stores):>10.0f} "
                    f"{statistics.median(plains):>10.0f} {statistics.median(ratios):>6.2f} "
                    f"{statistics.median(p99s):>7.1f} {disk / nbytes:>8.2f} "
                    f"{statistics.median(cpus):>6.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
