"""``tem-acq adapt INPUT [INPUT ...] --init MODEL --out DIR``: adapt a model to your specimen."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from tem_acq.cli.command import (
    COUNTS_PER_ELECTRON,
    DEVICE,
    JSON,
    OVERWRITE,
    SEED,
    Command,
    require_at_least_one,
)

if TYPE_CHECKING:
    from tem_acq.adapt import AdaptResult
    from tem_acq.quality import PairEstimate

#: Exit code when the adapted model did not improve (nothing written).
NOT_IMPROVED = 3


def arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``adapt`` arguments."""
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="acquisition stores (*.ome.zarr) or stacks of frames (TIFF, NPY, MRC) of static "
        "fields, in recording order",
    )
    parser.add_argument(
        "--init", required=True, metavar="MODEL", help="model to start from (name or folder)"
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="package folder to write")
    COUNTS_PER_ELECTRON.add(
        parser, help="camera counts per electron (default: what the inputs say)"
    )
    parser.add_argument("--max-steps", type=int, metavar="N", help="optimiser steps (default 300)")
    parser.add_argument("--minutes", type=float, metavar="M", help="stop training after M minutes")
    parser.add_argument(
        "--force", action="store_true", help="write the package even if it did not improve"
    )
    OVERWRITE.add(parser, help="replace an existing package at --out")
    DEVICE.add(parser)
    SEED.add(parser, help="seed of the training and the estimate (default 0)")
    JSON.add(parser, help="print before, after and improved as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Adapt; 0 when written, 3 when it did not improve (nothing written), 130 on Ctrl-C."""
    from tem_acq.adapt import DEFAULT_STEPS, adapt

    require_at_least_one(args, "max_steps")
    quiet = args.quiet or args.json
    result = adapt(
        args.inputs,
        args.init,
        args.out,
        counts_per_electron=args.counts_per_electron,
        max_steps=args.max_steps if args.max_steps is not None else DEFAULT_STEPS,
        minutes=args.minutes,
        force=args.force,
        overwrite=args.overwrite,
        device=args.device,
        seed=args.seed if args.seed is not None else 0,
        progress=False if quiet else None,
        say=None if quiet else (lambda line: print(line, file=sys.stderr)),
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        print(_text(result))
    if result.package is None:
        print(
            "tem-acq adapt: the adapted model did not improve beyond the interval on the "
            f"held-out frames (MSE after {_mse(result.after)} vs before {_mse(result.before)} "
            "e-^2/px^2); nothing written (--force writes it anyway; more frames or "
            "--max-steps may help)",
            file=sys.stderr,
        )
        return NOT_IMPROVED
    return 130 if result.interrupted else 0


def _mse(estimate: PairEstimate) -> str:
    """The model row's MSE with its interval, e.g. ``0.812 [0.79, 0.83]``."""
    row = estimate.rows["model"]
    lo, hi = row.mse_ci
    return f"{row.mse:.4g} [{lo:.4g}, {hi:.4g}]"


def _text(result: AdaptResult) -> str:
    """The human-readable report: both estimates, then what was decided."""
    lines = ["before (base model) on the held-out frames:"]
    lines += ["  " + line for line in result.before.render().splitlines()]
    lines += ["after (adapted model) on the held-out frames:"]
    lines += ["  " + line for line in result.after.render().splitlines()]
    db, (lo, hi) = result.gain.db, result.gain.ci
    lines.append(
        "adapted over base: "
        + ("n/a" if db is None else f"{db:+.2f} dB")
        + ("" if lo is None or hi is None else f" [{lo:+.2f}, {hi:+.2f}]")
    )
    state = "interrupted after" if result.interrupted else "trained"
    lines.append(
        f"{state} {result.steps} steps in {result.wall_s:.0f} s on {result.device}; "
        + ("improved" if result.improved else "did NOT improve")
        + (f": wrote {result.package}" if result.package is not None else "")
    )
    return "\n".join(lines)


COMMAND = Command(
    "adapt",
    help="adapt a model to your specimen (Noise2Noise on your own frames)",
    description=(
        "Fine-tune a model on your own frames with Noise2Noise on consecutive registered "
        "frames of a static field (no long exposure, no ground truth). A fifth of the time "
        "blocks are held back; the ground-truth-free estimate judges the model on them "
        "before and after. The package is written only when the adapted model's MSE "
        "interval lies wholly below the base model's (exit 3 otherwise; --force writes "
        "anyway). Ctrl-C stops training and judges the best weights so far."
    ),
    arguments=arguments,
    run=run,
    rank=45,
)
