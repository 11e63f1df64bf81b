"""``tem-acq model new|info|rehash|export|import``: create, inspect, re-hash and share packages."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from tem_acq.cli.command import (
    COUNTS_PER_ELECTRON,
    FAST,
    JSON,
    OVERWRITE,
    PACKAGE_NAME,
    SEED,
    Command,
    keywords,
)


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
    parser.add_argument(
        "--full", action="store_true", help="print every quality row of the card (a summary else)"
    )


def rehash_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``model rehash`` arguments."""
    parser.add_argument("package", help="package folder")


def export_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``model export`` arguments."""
    parser.add_argument("package", help="package name or folder")
    parser.add_argument(
        "--format", choices=("bioimageio",), default="bioimageio", help="default: bioimageio"
    )
    parser.add_argument("--out", required=True, help="the package to write (DIR.zip)")
    COUNTS_PER_ELECTRON.add(
        parser,
        default=1.0,
        help="your camera's counts per electron, the package's preprocessing (default: 1, a "
        "counting camera)",
    )
    parser.add_argument(
        "--sample",
        default=None,
        metavar="FRAMES",
        help="a frame file (.tif/.npy/.mrc) or acquisition store whose first frame becomes the "
        "package's test frame (default: a simulated 256x256 frame)",
    )
    OVERWRITE.add(parser, help="replace an existing .zip")


def import_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``model import`` arguments."""
    parser.add_argument("package", help="a bioimage.io package (.zip) that tem-acq exported")
    parser.add_argument("--out", required=True, help="the tem-acq package folder to write")
    OVERWRITE.add(parser, help="replace an existing package folder")


def run_export(args: argparse.Namespace) -> int:
    """Export, test with bioimage.io's own model test, and write only when it passes."""
    from tem_acq.denoise.bioimageio import export_bioimageio

    sample, source = _sample(args.sample, args.counts_per_electron)
    report = export_bioimageio(
        args.package,
        args.out,
        counts_per_electron=args.counts_per_electron,
        sample=sample,
        sample_source=source,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {report.path}: bioimage.io model package ({', '.join(report.weights)}); "
        f"bioimageio.core test {report.test_status}; its prediction on the test frame is "
        f"within {report.max_abs_error:.2g} e-/px of tem-acq's ({report.rule} mean rule; test "
        f"frame: {report.sample})"
    )
    return 0


#: Side of the simulated test frame when no ``--sample`` is given (pixels).
SAMPLE_SIZE = 256


def _sample(path: str | None, counts_per_electron: float) -> tuple[np.ndarray, str]:
    """The first frame of ``--sample`` (counts), or a simulated one; and its description."""
    if path is None:
        from tem_acq.sim import SimulationConfig, TEMSimulator

        config = {"size": SAMPLE_SIZE, "seed": 0, "dose_rate": 2500.0}
        sim = TEMSimulator(SimulationConfig.model_validate(config))
        counts = sim.render(exposure_s=0.002) * np.float32(counts_per_electron)
        return counts, "a simulated nanoparticle frame (counting camera, 5 e-/px)"
    from pathlib import Path

    from tem_acq.denoise import io

    src = Path(path)
    if src.is_dir():
        from tem_acq.store import open_store

        with open_store(src) as store:
            return np.asarray(store.raw[0]), f"raw frame 0 of {src.name}"
    frames = io.read_frames(src).data
    first = frames if frames.ndim == 2 else frames[0]
    return np.asarray(first), f"the first frame of {src.name}"


def run_import(args: argparse.Namespace) -> int:
    """Write the tem-acq package a tem-acq bioimage.io export holds."""
    from tem_acq.denoise.bioimageio import import_bioimageio

    card = import_bioimageio(args.package, args.out, overwrite=args.overwrite)
    print(f"imported {args.package} into {args.out}: {card.name}: {card.summary()}")
    return 0


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
    if args.full:
        for row in card.quality:
            print(
                f"  {row.image_kind}, {row.detector}, {row.dose_e_per_px:g} e-/px: "
                f"{row.metric} {row.value:.4g} (raw {row.raw}, gaussian {row.gaussian})"
            )
        return 0
    for line in _quality_summary(card.quality):
        print(line)
    for independent in (False, True):
        helped = card.measured_help(independent=independent)
        if helped:
            where = "independent fields" if independent else "in-distribution fields"
            said = "; ".join(
                f"{det} at {', '.join(f'{d:g}' for d in doses)} e-/px"
                if doses
                else f"{det} at none of the doses measured"
                for det, doses in helped.items()
            )
            print(f"  measured to beat the best Gaussian (mean within 1 %), {where}: {said}")
    if card.quality:
        print(f"  ({len(card.quality)} quality rows in the card: --full prints them all)")
    return 0


#: The dose the short summary of a card's quality reports (e-/px, the paper's).
SUMMARY_DOSE = 5.0


def _quality_summary(rows: list[Any]) -> list[str]:
    """PSNR at the dose nearest :data:`SUMMARY_DOSE` for each image kind and detector."""
    best: dict[tuple[str, str], Any] = {}
    for row in rows:
        if row.metric != "psnr_db":
            continue
        key = (row.image_kind, row.detector)
        distance = abs(math.log(row.dose_e_per_px / SUMMARY_DOSE))
        if key not in best or distance < abs(math.log(best[key].dose_e_per_px / SUMMARY_DOSE)):
            best[key] = row
    if not best:
        return []
    lines = ["  PSNR (dB): model / best Gaussian / raw"]
    for (kind, detector), row in sorted(best.items()):
        gaussian = "-" if row.gaussian is None else f"{row.gaussian:.1f}"
        raw = "-" if row.raw is None else f"{row.raw:.1f}"
        lines.append(
            f"    {kind}, {detector}, {row.dose_e_per_px:g} e-/px: "
            f"{row.value:.1f} / {gaussian} / {raw}"
        )
    return lines


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
        Command(
            "export",
            help="write a bioimage.io model package (tested before it is written)",
            description=(
                "Write a bioimage.io model package (spec 0.5): PyTorch state dict, TorchScript "
                "and ONNX weights with tem-acq's dose normalisation built into the network, the "
                "camera's counts per electron as preprocessing, test tensors, a cover, the "
                "card's quality table and the licence. bioimageio.core's model test runs first; "
                "nothing is written unless it passes. Needs the bioimageio extra: pip install "
                "'tem-acq[bioimageio]'."
            ),
            arguments=export_arguments,
            run=run_export,
        ),
        Command(
            "import",
            help="read a bioimage.io package that tem-acq exported back into a tem-acq package",
            arguments=import_arguments,
            run=run_import,
        ),
    ),
    rank=70,
)
