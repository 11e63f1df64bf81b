"""``tem-acq bench denoise``: eager float32 versus the engine's best path, same run."""

from __future__ import annotations

import argparse
import json

from tem_acq.cli.command import DEVICE, JSON, MODEL, Command, keywords, require_at_least_one


def denoise_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench denoise`` arguments."""
    parser.add_argument("--size", type=int, default=512, help="frame size in pixels (square)")
    parser.add_argument(
        "--encoder",
        default="fast",
        help="fast (default), paper (resnet18 U-Net) or an smp encoder name; fresh weights",
    )
    MODEL.add(parser, default=None, help="benchmark this package instead")
    DEVICE.add(parser)
    parser.add_argument("--batch", type=int, default=1, help="frames per call")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per path")
    parser.add_argument(
        "--no-compile", action="store_true", help="do not try torch.compile for the best path"
    )
    parser.add_argument(
        "--reference",
        default=None,
        help="also time this encoder's eager fp32 in the same loop (e.g. paper)",
    )
    JSON.add(parser)


def run_denoise(args: argparse.Namespace) -> int:
    """Run the benchmark and print it."""
    from tem_acq.denoise.bench import bench_denoise, format_result

    require_at_least_one(args, "size", "batch", "repeats")
    result = bench_denoise(
        **keywords(args, "encoder", "model", "size", "device", "batch", "repeats", "reference"),
        compile=not args.no_compile,
    )
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


COMMAND = Command(
    "bench",
    help="benchmarks",
    description=__doc__,
    subcommands=(
        Command(
            "denoise",
            help="denoiser latency and throughput: eager fp32 vs the best path",
            description=(
                "Measure denoiser latency (p50, p95) and throughput per frame for plain eager "
                "float32 and the engine's best path (checked against eager), alternating calls "
                "in one run, and print both and their ratio."
            ),
            arguments=denoise_arguments,
            run=run_denoise,
        ),
    ),
    subcommand_metavar="WHAT",
    rank=90,
)
