"""``tem-acq recover STORE``: bring a store's metadata in line with its frames (after a crash)."""

from __future__ import annotations

import argparse
import json

from tem_acq.cli.command import JSON, STORE, Command


def arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``recover`` arguments."""
    STORE.add(parser)
    JSON.add(parser, help="print JSON instead of text")


def run(args: argparse.Namespace) -> int:
    """Recover the store, print what changed and the check afterwards; its exit code."""
    from tem_acq.store.recover import recover_store

    recovery = recover_store(args.store)
    print(json.dumps(recovery.as_dict(), indent=2) if args.json else "\n".join(recovery.lines()))
    return recovery.check.exit_code


COMMAND = Command(
    "recover",
    help="bring a store's metadata in line with its frames (after a crash)",
    description=(
        "Bring an acquisition or pairs store's derived metadata in line with what is on disk: "
        "array lengths (frames never recorded dropped, frames whole on disk with their rows "
        "added), the measured frame interval, the OME-XML's sizes, and a closing event marked "
        "incomplete and recovered. Frame data is never changed. Run it when no writer uses "
        "the store. Exit code as tem-acq info --check afterwards: 0 all verified, 1 recorded "
        "data damaged, 3 derived data damaged."
    ),
    arguments=arguments,
    run=run,
    rank=15,
)
