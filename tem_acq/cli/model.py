"""``tem-acq model new|info|rehash``: create, inspect and re-hash model packages."""

from __future__ import annotations

import argparse
import json

from tem_acq.cli.command import FAST, JSON, OVERWRITE, PACKAGE_NAME, SEED, Command, keywords


def new_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``model new`` arguments."""
    parser.add_argument("--out", required=True, help="package folder to create")
    parser.add_argument("--encoder", default=None, help="smp encoder name (or tu-<timm name>)")
    PACKAGE_NAME.add(parser, default=None)
    FAST.add(parser, help="the fast configuration / decoder")
    parser.add_argument(
        "--weights-dtype",
        choices=("float32", "float16", "bfloat16"),
        default="float32",
        help="dtype of the weights on disk (float16 halves the size)",
    )
    SEED.add(parser, default=0, help="initialisation seed")
    OVERWRITE.add(parser, help="replace an existing folder")


def info_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``model info`` arguments."""
    parser.add_argument("package", help="package name or folder")
    JSON.add(parser, help="print the card as JSON")


def rehash_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``model rehash`` arguments."""
    parser.add_argument("package", help="package folder")


def run_new(args: argparse.Namespace) -> int:
    """Create the package and print its summary (the output is checked before any work)."""
    from tem_acq.denoise import new_package
    from tem_acq.outputs import claim_output

    claim_output(args.out, overwrite=args.overwrite, kind="model package")
    card = new_package(
        args.out, **keywords(args, "encoder", "fast", "name", "weights_dtype", "seed", "overwrite")
    )
    print(f"created {args.out}: {card.name}: {card.summary()}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    """Load the package fully (every check) and print its card."""
    from tem_acq.denoise import load_package, resolve_package

    pkg = load_package(resolve_package(args.package))
    n_params = sum(p.numel() for p in pkg.model.parameters())
    if args.json:
        print(
            json.dumps(
                {
                    "path": str(pkg.path),
                    "parameters": n_params,
                    "card": pkg.card.model_dump(mode="json"),
                },
                indent=2,
            )
        )
        return 0
    card = pkg.card
    print(f"{card.name}  ({pkg.path})")
    print(f"  {card.summary()}")
    print(f"  parameters {n_params:,}; weights {card.weights_dtype}; schema {card.schema_version}")
    print(f"  normalization {card.normalization.model_dump()}")
    print(f"  corrects for: {card.describe_normalization()}")
    print(f"  output: {card.output}")
    print(f"  package hash {card.package_hash}")
    if card.training_data is not None:
        print(f"  trained on: {card.training_data.description} ({card.training_data.sha256})")
    for row in card.quality:
        print(
            f"  {row.image_kind}, {row.detector}, {row.dose_e_per_px:g} e-/px: "
            f"{row.metric} {row.value:.4g} (raw {row.raw}, gaussian {row.gaussian})"
        )
    return 0


def run_rehash(args: argparse.Namespace) -> int:
    """Rewrite the card's package hash."""
    from tem_acq.denoise import rehash_package

    card = rehash_package(args.package)
    print(f"{args.package}: package hash now {card.package_hash}")
    return 0


COMMAND = Command(
    "model",
    help="create or inspect a model package",
    description=__doc__,
    subcommands=(
        Command(
            "new",
            help="create a package with freshly initialised (untrained) weights",
            description=(
                "Create a model package (config.json + model.safetensors + card.json) with "
                "freshly initialised weights; its card says untrained. Without --encoder: the "
                "paper's resnet18 U-Net, or with --fast the fast CPU configuration "
                "(MobileNetV3-small minimal, depth 4, decoder 64-32-16-16). --fast with "
                "--encoder puts that encoder on the fast decoder."
            ),
            arguments=new_arguments,
            run=run_new,
        ),
        Command(
            "info",
            help="check a package and print its card",
            arguments=info_arguments,
            run=run_info,
        ),
        Command(
            "rehash",
            help="record the hash of changed weights/config in the card",
            description="Recompute the package hash after an intended change to its weights.",
            arguments=rehash_arguments,
            run=run_rehash,
        ),
    ),
    rank=70,
)
