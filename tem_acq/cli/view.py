"""``tem-acq view STORE``: open an acquisition or pairs store in napari."""

from __future__ import annotations

import argparse

from tem_acq.cli.command import STORE, Command


def arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``view`` arguments."""
    STORE.add(parser)
    parser.add_argument(
        "--describe",
        action="store_true",
        help="print the layers (shape, scale, contrast limits) instead of opening napari",
    )
    parser.add_argument(
        "--percentiles",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        default=None,
        help="percentiles of a few frames that set the contrast limits (default 0.5 99.5)",
    )


def run(args: argparse.Namespace) -> int:
    """Open the viewer (or print the layers); problems raise TemAcqError (exit 2)."""
    from tem_acq.errors import TemAcqError
    from tem_acq.viewer import DEFAULT_PERCENTILES, build_view, describe, show

    percentiles = DEFAULT_PERCENTILES
    if args.percentiles is not None:
        low, high = args.percentiles
        if not 0 <= low < high <= 100:
            raise TemAcqError(
                f"--percentiles {low:g} {high:g}: give LOW < HIGH, both between 0 and 100"
            )
        percentiles = (low, high)
    spec = build_view(args.store, percentiles=percentiles)
    if args.describe:
        print(describe(spec))
        return 0
    show(spec, block=True, path=args.store)
    return 0


COMMAND = Command(
    "view",
    help="open a store in napari (raw and denoised side by side)",
    description=(
        "Open an acquisition store in napari: raw frames (counts) and denoised frames "
        "(electrons per pixel) as two layers side by side, scaled in angstrom and seconds, "
        "with contrast from percentiles of a few frames and the acquisition's metadata in "
        "the title and an overlay. A pairs store shows its low, high and truth images. "
        "Needs napari: pip install 'tem-acq[viewer]'."
    ),
    arguments=arguments,
    run=run,
    rank=20,
)
