"""``tem-acq report STORE [--out FILE]``: a self-contained HTML report of an acquisition."""

from __future__ import annotations

import argparse
from pathlib import Path

from tem_acq.cli.command import STORE, Command


def arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` arguments."""
    STORE.add(parser, help="path of the acquisition store (a directory NAME.zarr)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output file or folder (default: NAME.report.html beside the store)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=3,
        help="frames shown raw next to denoised, first to last (default 3; 0 for none)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the report and print its path; problems raise TemAcqError (exit 2)."""
    from tem_acq.errors import TemAcqError
    from tem_acq.report import write_report

    if args.frames < 0:
        raise TemAcqError(f"--frames {args.frames}: give 0 or more frames to show")
    path = write_report(args.store, args.out, frames=args.frames)
    print(f"wrote {path}")
    return 0


COMMAND = Command(
    "report",
    help="write an HTML report of an acquisition store",
    description=(
        "Write one self-contained HTML file (images embedded, no external assets): the "
        "acquisition's metadata (dose, exposure, pixel size, voltage, camera, model), "
        "recorded errors, per-frame plots (dose, denoise latency with skipped frames, frame "
        "interval) and raw next to denoised for the first, middle and last frame."
    ),
    arguments=arguments,
    run=run,
    rank=30,
)
