"""Denoiser speed table: the paper's resnet18 U-Net and the fast configuration, eager fp32 vs
the engine's best path, at 256, 512 and 1024 px, on this machine's CPU (and GPU if present).

Run: ``python benchmarks/bench_denoise.py [--sizes 256 512 1024] [--repeats 7] [--no-compile]``.
Writes ``benchmarks/results/denoise-<device>.md`` and ``.json``. ``paper``/``fast`` weights are
freshly initialised, so reduced-precision paths (bf16) face the tolerance check on random
weights; a trained package (pass its folder in ``--models``) may pass where these do not.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from tem_acq.denoise.bench import bench_denoise, format_result

RESULTS = Path(__file__).resolve().parent / "results"


def table(results: list[dict]) -> str:
    lines = [
        "| model | size | eager fp32 p50 ms | eager p95 | best path | best p50 ms | best p95 | "
        "best vs own eager | best vs paper eager in the same loop: p50 wall (CPU time; min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        vs_paper = (
            f"{r['best_vs_reference']:.1f}x ({r['best_vs_reference_cpu_time']:.1f}x; "
            f"{r['best_vs_reference_min']:.1f}x)"
            if "reference" in r
            else f"{r['speedup']:.1f}x ({r['speedup_cpu_time']:.1f}x; {r['speedup_min']:.1f}x)"
        )
        lines.append(
            f"| {r['model']} | {r['size']} | {r['eager']['p50_ms']:.1f} | "
            f"{r['eager']['p95_ms']:.1f} | {r['best_path'].split(' ', 1)[1]} | "
            f"{r['best']['p50_ms']:.1f} | {r['best']['p95_ms']:.1f} | {r['speedup']:.2f}x | "
            f"{vs_paper} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["paper", "fast"],
        help="paper, fast, an smp encoder name, or a package folder (its own weights)",
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    results = []
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    for size in args.sizes:
        for model in args.models:
            package = model if Path(model).is_dir() else None  # a package folder
            r = bench_denoise(
                encoder=model,
                model=package,
                size=size,
                device=args.device,
                repeats=args.repeats,
                compile=not args.no_compile,
                reference="paper" if model != "paper" else None,
            )
            r["model"] = model  # a package row is labelled by the path given
            print(format_result(r), flush=True)
            results.append(r)
    device = results[0]["device"].split(":")[0]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"denoise-{device}.json").write_text(json.dumps(results, indent=2) + "\n")
    ratio_512 = [r for r in results if r["size"] == 512 and r["model"] == "fast"]
    header = [
        f"# Denoiser speed on {results[0]['device_name']}",
        "",
        f"`python benchmarks/bench_denoise.py` ({time.strftime('%Y-%m-%d')}, "
        f"{time.perf_counter() - t0:.0f} s; 1-minute load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} CPUs: other processes were "
        "competing for the cores when the load exceeds the CPU count). Batch 1, "
        f"p50/p95 of {args.repeats} calls per path, "
        "eager and best alternating call by call (the machine is shared: compare ratios "
        "within one run). Each call is the full `Denoiser.denoise_batch` (normalisation, "
        "padding, network). `paper` and `fast` have freshly initialised weights; rows "
        "labelled with a package folder use that package's trained weights. OpenMP waits "
        "passively "
        "(OMP_WAIT_POLICY=PASSIVE, set by tem_acq.denoise).",
        "",
        table(results),
        "",
        "Paths tried per row (rel RMS / rel max difference from eager fp32 on a 5 e-/px "
        "Poisson frame; tolerance 1e-2 / 1e-1):",
        "",
    ]
    for r in results:
        tried = "; ".join(
            f"{t['name']} {'ok' if t['ok'] else 'REJECTED'} {t['rel_rms']:.1g}/{t['rel_max']:.1g}"
            + (f" {t['ms']:.0f} ms" if t["ms"] is not None else "")
            for t in r["paths_tried"]
        )
        header.append(f"- {r['model']} {r['size']}: {tried}")
    if ratio_512:
        header += ["", f"Fast configuration at 512x512: {ratio_512[0]['architecture']}."]
    (RESULTS / f"denoise-{device}.md").write_text("\n".join(header) + "\n")
    print(f"wrote {RESULTS / f'denoise-{device}.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
