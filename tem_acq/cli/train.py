"""``tem-acq train --pairs P [P ...] --out MODEL_DIR``: train a denoiser on pairs stores."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from tem_acq.cli.command import (
    DEVICE,
    FAST,
    OVERWRITE,
    PACKAGE_NAME,
    PAIRS,
    RESUME,
    SEED,
    Command,
    require_at_least_one,
)


def arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` arguments."""
    PAIRS.add(parser, required=True, help="pairs store(s) (*.ome.zarr) to train on")
    parser.add_argument("--out", required=True, metavar="MODEL_DIR", help="package folder to write")
    parser.add_argument("--config", metavar="YAML", help="training config (TrainConfig fields)")
    parser.add_argument(
        "--init", metavar="PACKAGE", help="start from this package's weights (name or folder)"
    )
    parser.add_argument("--max-steps", type=int, metavar="N", help="override max_steps")
    FAST.add(parser, help="train the fast architecture")
    parser.add_argument("--mode", choices=["supervised", "noise2noise"], help="override mode")
    SEED.add(parser, help="override seed")
    DEVICE.add(parser)
    RESUME.add(parser, help="continue the run's checkpoint")
    OVERWRITE.add(parser, help="replace an existing MODEL_DIR")
    PACKAGE_NAME.add(parser, help="package name (default: the folder's name)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Train; returns 0, or 130 when interrupted (the best model is still written)."""
    from tem_acq.pairs import from_pairs_store
    from tem_acq.train import TrainConfig, train

    config = TrainConfig.from_yaml(args.config) if args.config else TrainConfig()
    updates: dict[str, object] = {}
    require_at_least_one(args, "max_steps")
    if args.max_steps is not None:
        updates["max_steps"] = args.max_steps
    if args.fast:
        updates["fast"] = True
    if args.mode:
        updates["mode"] = args.mode
    if args.seed is not None:
        updates["seed"] = args.seed
    if updates:
        config = TrainConfig.from_mapping(
            {**config.model_dump(), **updates}, source="the training config with overrides"
        )
    _check_paths(args)
    pairs = from_pairs_store(args.pairs)
    result = train(
        pairs,
        config,
        args.out,
        init=args.init,
        resume=args.resume,
        device=args.device,
        name=args.name,
        overwrite=args.overwrite,
        progress=False if args.quiet else None,
    )
    psnr = (
        "no validation fields"
        if math.isnan(result.best_val_psnr_db)
        else f"best validation PSNR {result.best_val_psnr_db:.2f} dB at step {result.best_step}"
    )
    state = "interrupted at" if result.interrupted else "trained"
    print(
        f"{state} {result.steps}/{result.total_steps} steps in {result.wall_s:.0f} s; {psnr}\n"
        f"wrote {result.package} ({result.card.summary()})\n"
        f"checkpoint: {result.checkpoint_dir} (resume with --resume; delete when done)"
    )
    return 130 if result.interrupted else 0


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse a ``--out`` that overlaps an input or may not be replaced, before reading.

    Neither the package folder nor its checkpoint beside it may be one of the pairs stores or
    the ``--init`` package, inside one, or hold one.
    """
    from tem_acq.denoise.package import package_folder
    from tem_acq.outputs import check_not_an_input, claim_output
    from tem_acq.train.loop import default_checkpoint_dir

    inputs = [*args.pairs, *([package_folder(args.init)] if args.init else [])]
    out = Path(args.out)
    claim_output(out, overwrite=args.overwrite or args.resume, kind="model package", inputs=inputs)
    check_not_an_input(default_checkpoint_dir(out), inputs, kind="model package")


COMMAND = Command(
    "train",
    help="train a denoiser on pairs stores",
    description=(
        "Train a U-Net denoiser on (short, long) pairs from pairs stores and write a model "
        "package. The last fields (by --config val_fraction) are held out for validation; "
        "the package keeps the weights with the best validation PSNR. Ctrl-C stops cleanly "
        "and still writes the best model; --resume continues from the checkpoint "
        "(MODEL_DIR.ckpt)."
    ),
    arguments=arguments,
    run=run,
    rank=40,
)
