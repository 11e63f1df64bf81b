"""``tem-acq train --pairs P [P ...] --out MODEL_DIR``: train a denoiser on pairs stores."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

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
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train on N processes with DistributedDataParallel, started through torchrun: "
        "one per GPU (NCCL), or CPU processes (gloo); the config's batch_size is split "
        "across them (default: 1, no torchrun)",
    )


def run(args: argparse.Namespace) -> int:
    """Train; returns 0, or 130 when interrupted (the best model is still written)."""
    from tem_acq.pairs import from_pairs_store
    from tem_acq.train import train
    from tem_acq.train.distributed import Ranks, check_nproc, device_for, launch, ranks_from_env

    nproc = check_nproc(args.nproc)
    ranks = ranks_from_env()
    config = _config(args)
    _check_paths(args)
    if nproc > 1 and ranks is None:  # checked here first: a bad input is one line, not N
        device_for(Ranks(rank=0, local_rank=0, world=nproc), args.device)
        _check_pairs_stores(args.pairs, config.crop)
        return launch(nproc, _without_nproc(args.argv))
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
    if ranks is not None and not ranks.is_main:
        return 130 if result.interrupted else 0  # rank 0 reports
    psnr = (
        "no validation fields"
        if math.isnan(result.best_val_psnr_db)
        else f"best validation PSNR {result.best_val_psnr_db:.2f} dB at step {result.best_step}"
    )
    state = "interrupted at" if result.interrupted else "trained"
    where = "" if ranks is None else f" on {ranks.world} processes"
    print(
        f"{state} {result.steps}/{result.total_steps} steps{where} in {result.wall_s:.0f} s; "
        f"{psnr}\n"
        f"wrote {result.package} ({result.card.summary()})\n"
        f"checkpoint: {result.checkpoint_dir} (resume with --resume; delete when done)"
    )
    return 130 if result.interrupted else 0


def _check_pairs_stores(paths: list[str], crop: int) -> None:
    """Refuse a path that is not a pairs store, or frames smaller than the training crop.

    Checked here, in one line, before the processes start (each would report it again).
    """
    from tem_acq.errors import TemAcqError
    from tem_acq.store import open_pairs
    from tem_acq.train.loop import check_crop

    for path in paths:
        if not Path(path).exists():
            raise TemAcqError(f"pairs store {path} does not exist")
        check_crop(crop, open_pairs(path).low.shape[-2:])  # the header and array shape only


def _without_nproc(argv: list[str]) -> list[str]:
    """The command line as typed, less its ``--nproc`` (what each process runs)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def _config(args: argparse.Namespace) -> Any:
    """The training config: the ``--config`` file (or the defaults) with the overrides."""
    from tem_acq.train import TrainConfig

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
    return config


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
