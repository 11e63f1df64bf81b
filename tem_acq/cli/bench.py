"""``tem-acq bench denoise``: eager float32 versus the engine's best path, same run."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``bench`` subcommand group (``bench denoise``)."""
    parser = subparsers.add_parser("bench", help="benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="bench_command", metavar="WHAT", required=True)
    den = sub.add_parser(
        "denoise",
        help="denoiser latency and throughput: eager fp32 vs the best path",
        description=(
            "Measure denoiser latency (p50, p95) and throughput per frame for plain eager "
            "float32 and the engine's best path (checked against eager), alternating calls "
            "in one run, and print both and their ratio."
        ),
    )
    den.add_argument("--size", type=int, default=512, help="frame size in pixels (square)")
    den.add_argument(
        "--encoder",
        default="fast",
        help="fast (default), paper (resnet18 U-Net) or an smp encoder name; fresh weights",
    )
    den.add_argument("--model", default=None, help="benchmark this package instead")
    den.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    den.add_argument("--batch", type=int, default=1, help="frames per call")
    den.add_argument("--repeats", type=int, default=10, help="timed calls per path")
    den.add_argument(
        "--no-compile", action="store_true", help="do not try torch.compile for the best path"
    )
    den.add_argument(
        "--reference",
        default=None,
        help="also time this encoder's eager fp32 in the same loop (e.g. paper)",
    )
    den.add_argument("--json", action="store_true", help="print JSON")
    den.set_defaults(func=run_denoise)


def run_denoise(args: argparse.Namespace) -> int:
    """Run the benchmark and print it."""
    from tem_acq.denoise.bench import bench_denoise, format_result
    from tem_acq.errors import TemAcqError

    for name in ("size", "batch", "repeats"):
        if getattr(args, name) < 1:
            raise TemAcqError(f"--{name} must be >= 1, got {getattr(args, name)}")
    result = bench_denoise(
        encoder=args.encoder,
        model=args.model,
        size=args.size,
        device=args.device,
        batch=args.batch,
        repeats=args.repeats,
        compile=not args.no_compile,
        reference=args.reference,
    )
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0
