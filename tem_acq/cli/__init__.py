"""The ``tem-acq`` command line.

Each subcommand lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``func`` (called with the parsed arguments, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from tem_acq.errors import TemAcqError

# Subcommand modules, in the order ``tem-acq --help`` lists them. Bare names live in
# ``tem_acq.cli``; dotted names are full module paths (the acquisition commands live in
# ``acquisition_hooks`` and import pycro-manager only when they run).
COMMAND_MODULES: tuple[str, ...] = (
    "info",
    "view",
    "report",
    "train",
    "evaluate",
    "denoise",
    "model",
    "models",
    "bench",
    "acquisition_hooks.commands",
    "acquisition_hooks.demo",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="tem-acq",
        description="Live low-dose TEM denoising, paired-data collection and OME-Zarr recording.",
    )
    from tem_acq import __version__

    parser.add_argument("--version", action="version", version=f"tem-acq {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name if "." in name else f"tem_acq.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TemAcqError as exc:
        print(f"tem-acq {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tem-acq {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
