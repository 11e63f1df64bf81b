"""The ``tem-acq`` command line.

Every command is a :class:`~tem_acq.cli.command.Command` contributed through the
``tem_acq.commands`` entry-point group (``pyproject.toml``): the core's own commands and the
hook layer's (the acquisition commands, which import pycro-manager only when they run) come in
the same way, so the core never names the layers above it. ``tem-acq --help`` lists them by
:attr:`Command.rank <tem_acq.cli.command.Command.rank>`. A command that cannot be loaded is
reported in one line and left out; the others still work.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from importlib.metadata import EntryPoint, entry_points

from tem_acq.cli.command import Command, HelpFormatter, Option
from tem_acq.errors import TemAcqError

#: The entry-point group that contributes ``tem-acq`` commands.
ENTRY_POINT_GROUP = "tem_acq.commands"


def command_entry_points() -> list[EntryPoint]:
    """The entry points that declare commands (in no particular order)."""
    return list(entry_points(group=ENTRY_POINT_GROUP))


def _warn(message: str) -> None:
    print(f"tem-acq: warning: {message}", file=sys.stderr)


def _load(entry_point: EntryPoint) -> Command:
    """The command an entry point names, checked by registering it on a scratch parser."""
    command = entry_point.load()
    if not isinstance(command, Command):
        raise TypeError(f"it is a {type(command).__name__}, not a tem_acq.cli.Command")
    command.register(argparse.ArgumentParser().add_subparsers())
    return command


def load_commands() -> list[Command]:
    """Every command that loads, in ``--help`` order; each one that does not is reported.

    A missing module, an import error, an object that is not a :class:`Command`, arguments
    that argparse refuses or a name already taken: one warning line on stderr naming the entry
    point, and the command is left out.
    """
    found = command_entry_points()
    if not found:
        _warn(
            f"no commands are registered (entry-point group {ENTRY_POINT_GROUP!r}); "
            "reinstall tem-acq, e.g. pip install -e ."
        )
    commands: dict[str, Command] = {}
    for entry_point in sorted(found, key=lambda ep: ep.name):
        where = f"command entry point {entry_point.name!r} ({entry_point.value})"
        try:
            command = _load(entry_point)
        except Exception as exc:  # a broken plug-in must not take the other commands down
            _warn(f"{where} is unavailable: {type(exc).__name__}: {exc}")
            continue
        if command.name in commands:
            _warn(f"{where} is left out: a command named {command.name!r} is already registered")
            continue
        commands[command.name] = command
    return sorted(commands.values(), key=lambda command: (command.rank, command.name))


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered command."""
    parser = argparse.ArgumentParser(
        prog="tem-acq",
        description="Live low-dose TEM denoising, paired-data collection and OME-Zarr recording.",
        formatter_class=HelpFormatter,
    )
    from tem_acq import __version__

    parser.add_argument("--version", action="version", version=f"tem-acq {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in load_commands():
        command.register(subparsers)
    return parser


def _one_line(exc: BaseException) -> str:
    """An error's message on one line (a message that embeds another tool's report may not be)."""
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # what was typed, for a command that starts itself again (train --nproc under torchrun)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except TemAcqError as exc:
        print(f"tem-acq {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tem-acq {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        # What an error's traceback kept alive (a microscope core, its device threads) goes
        # now, not at interpreter exit, where tearing a core down aborted the process
        # (exit 134 instead of 2 in up to half the runs).
        gc.collect()


__all__ = ["ENTRY_POINT_GROUP", "Command", "Option", "build_parser", "load_commands", "main"]

if __name__ == "__main__":
    sys.exit(main())
