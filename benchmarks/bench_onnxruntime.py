"""ONNX Runtime against tem-acq's own engine, side by side, on the shipped models.

Each round denoises the same frame once with the engine (``Denoiser``, its fastest path on this
device) and once with ONNX Runtime running the model's ONNX export (the network of a bioimage.io
export, :mod:`tem_acq.denoise.exported`: normalisation included), alternating so that both see
the same machine load; the table gives medians and the ratio. It also checks that both outputs
agree. The issue that asked for ``--backend onnxruntime`` keeps it only if it is faster on some
device: this is the measurement that decides.

Run: ``python benchmarks/bench_onnxruntime.py [--sizes 256 512] [--repeats 9]``. Writes
``benchmarks/results/onnxruntime-<device>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def onnx_session(package: str, size: int, workdir: Path) -> object:
    """An ONNX Runtime session of the package's exported network (CPU provider)."""
    import onnxruntime as ort
    import torch

    from tem_acq.denoise import load_package, resolve_package
    from tem_acq.denoise.bioimageio import exported_network
    from tem_acq.denoise.onnx import export_onnx

    network = exported_network(load_package(resolve_package(package)))
    onnx = export_onnx(network, torch.zeros(1, 1, size, size))
    return ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])


def measure(package: str, size: int, repeats: int, workdir: Path) -> dict:
    """Median ms per frame of the engine and of ONNX Runtime, measured alternately."""
    from tem_acq.denoise import load_model

    frame = np.random.default_rng(0).poisson(5.0, (size, size)).astype(np.float32)
    engine = load_model(package, device="cpu")
    engine.warmup((1, size, size))
    session = onnx_session(package, size, workdir)
    feed = {"raw": frame[None, None]}
    ours = engine.denoise(frame[None])[0]
    theirs = session.run(None, feed)[0][0, 0]  # type: ignore[attr-defined]
    times: dict[str, list[float]] = {"engine": [], "onnxruntime": []}
    for _ in range(repeats):
        t = time.perf_counter()
        engine.denoise(frame[None])
        times["engine"].append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        session.run(None, feed)  # type: ignore[attr-defined]
        times["onnxruntime"].append((time.perf_counter() - t) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": package,
        "size": size,
        "engine_path": engine.path_name,
        "engine_ms": med["engine"],
        "onnxruntime_ms": med["onnxruntime"],
        "onnxruntime_vs_engine": med["engine"] / med["onnxruntime"],
        "max_abs_difference_e": float(np.max(np.abs(ours - theirs))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--models", nargs="+", default=["default", "fast"])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    import onnxruntime
    import torch

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(m, s, args.repeats, Path(tmp)) for m in args.models for s in args.sizes]
    device = "cpu"
    info = {
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "load_average_at_start": load,
        "repeats": args.repeats,
        "rows": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"onnxruntime-{device}.json").write_text(json.dumps(info, indent=1) + "\n")
    lines = [
        f"# ONNX Runtime vs the tem-acq engine ({device}, {os.cpu_count()} cores, load "
        f"{load:.1f} at start; torch {torch.__version__}, onnxruntime {onnxruntime.__version__})",
        "",
        "| model | size | engine ms (p50) | ONNX Runtime ms (p50) | ORT speed vs engine | "
        "max difference e-/px |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['size']} | {r['engine_ms']:.1f} | {r['onnxruntime_ms']:.1f} | "
            f"{r['onnxruntime_vs_engine']:.2f}x | {r['max_abs_difference_e']:.2g} |"
        )
    (RESULTS / f"onnxruntime-{device}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
