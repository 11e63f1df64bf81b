"""The one shape of a ``tem-acq`` command, and the options several commands share.

A command module declares a :class:`Command` (its name, help line, description, the function
that adds its arguments and the function that runs it); ``pyproject.toml`` lists it in the
``tem_acq.commands`` entry-point group and :func:`tem_acq.cli.build_parser` registers it. An
option that several commands take is an :class:`Option` defined once below; each command adds
it, changing only what differs for it (its help text, default or whether it is required).
"""

from __future__ import annotations

import argparse
import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from tem_acq.errors import ConfigError

#: What argparse hands a command to add its parser to.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class HelpFormatter(argparse.HelpFormatter):
    """``--help`` as a user reads it: every option's default shown, no reST markup.

    An option with a default (other than None or a flag's False) whose help does not already
    say it gets ``(default: X)``; the double backticks of docstring-style text print as quotes.
    """

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and _has_default(action):  # argparse prints no help line otherwise
            action = copy.copy(action)
            action.help = "default: %(default)s"
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = _plain(action.help or "")
        if _has_default(action) and "default" not in text.lower():
            text = f"{text} (default: %(default)s)"
        return text

    def _format_text(self, text: str) -> str:
        return super()._format_text(_plain(text))


class RawDescriptionHelpFormatter(HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """:class:`HelpFormatter` that keeps the description's line breaks."""


def _has_default(action: argparse.Action) -> bool:
    """Whether an option has a default worth printing (not None, a flag's False, SUPPRESS)."""
    default = action.default
    return bool(action.option_strings) and not (
        default is None or default is False or default == argparse.SUPPRESS
    )


def _plain(text: str) -> str:
    """Docstring markup (double backticks) as plain quotes; ``%`` stays literal for argparse."""
    return text.replace("``", "'")


@dataclass(frozen=True)
class Command:
    """One ``tem-acq`` subcommand, or a group of them (``tem-acq model new|info|rehash``).

    Attributes
    ----------
    name
        What the user types after ``tem-acq`` (or after the group's name).
    help
        The command's line in its group's ``--help`` listing.
    description
        The text of the command's own ``--help`` (``None``: none).
    arguments
        Adds the command's arguments to its parser.
    run
        Runs the command on the parsed arguments and returns the exit code. A problem the
        user can fix raises :class:`~tem_acq.errors.TemAcqError`: one line, exit code 2.
    subcommands
        A group's commands, chosen by the word after the group's name.
    subcommand_metavar
        How the group's usage line names that word.
    rank
        Where ``tem-acq --help`` lists the command: by rank, then by name (entry points come
        in no reliable order). The core's commands rank 10 to 90, the hook layer's 100 to 120;
        a plug-in that gives none comes after them.
    raw_description
        Print the description with its line breaks instead of reflowing it.
    """

    name: str
    help: str
    description: str | None = None
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    run: Callable[[argparse.Namespace], int] | None = None
    subcommands: tuple[Command, ...] = ()
    subcommand_metavar: str = "ACTION"
    rank: int = field(default=1000, kw_only=True)
    raw_description: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        if (self.run is None) == (not self.subcommands):
            raise TypeError(f"command {self.name!r} needs either run or subcommands (not both)")

    def register(self, subparsers: Subparsers) -> argparse.ArgumentParser:
        """Add this command's parser, with its arguments and subcommands, to ``subparsers``."""
        layout: dict[str, Any] = {
            "formatter_class": (
                RawDescriptionHelpFormatter if self.raw_description else HelpFormatter
            )
        }
        parser = subparsers.add_parser(
            self.name, help=self.help, description=self.description, **layout
        )
        if self.arguments is not None:
            self.arguments(parser)
        if self.subcommands:
            group = parser.add_subparsers(
                dest=f"{self.name}_command", metavar=self.subcommand_metavar, required=True
            )
            for command in self.subcommands:
                command.register(group)
        else:
            parser.set_defaults(func=self.run)
        return parser


@dataclass(frozen=True)
class Option:
    """An option several commands take: its flags and argparse settings, defined once.

    Attributes
    ----------
    flags
        The option strings (``("--device",)``) or a positional argument's name.
    settings
        ``add_argument`` keywords every command gets (type, default, action, help...).
    """

    flags: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)

    def add(
        self, parser: argparse._ActionsContainer, *aliases: str, **changes: Any
    ) -> argparse.Action:
        """Add the option to a parser or argument group.

        Parameters
        ----------
        parser
            The command's parser, or one of its argument groups.
        *aliases
            Further option strings for this command (e.g. ``"-m"``).
        **changes
            ``add_argument`` keywords that differ for this command (its help, default...).
        """
        return parser.add_argument(*self.flags, *aliases, **{**self.settings, **changes})


#: Where the network runs (the denoiser's or training's device).
DEVICE = Option(("--device",), {"default": "auto", "help": "auto, cpu, cuda or cuda:N"})
#: A model package: a name looked up in the model folders, or a package folder.
MODEL = Option(("--model",), {"default": "default", "help": "model package name or folder"})
#: Replace the output if it exists (otherwise an existing output is an error).
OVERWRITE = Option(("--overwrite",), {"action": "store_true", "help": "replace an existing store"})
#: Print the result as JSON instead of text.
JSON = Option(("--json",), {"action": "store_true", "help": "print JSON"})
#: Test-time augmentation: average the model over the 8 flips/rotations of each frame.
TTA = Option(("--tta",), {"action": "store_true"})
#: The camera's counts per electron (default: what the input says).
COUNTS_PER_ELECTRON = Option(("--counts-per-electron",), {"type": float, "default": None})
#: A random seed.
SEED = Option(("--seed",), {"type": int})
#: The fast architecture (MobileNetV3-small encoder, narrow decoder).
FAST = Option(("--fast",), {"action": "store_true"})
#: A model package's name (default: its folder's name).
PACKAGE_NAME = Option(("--name",), {"help": "package name (default: the folder name)"})
#: Continue an interrupted run.
RESUME = Option(("--resume",), {"action": "store_true"})
#: An existing store, the positional argument of the commands that read one.
STORE = Option(("store",), {"help": "path of the store (a directory NAME.zarr)"})
#: Pairs stores (short/long exposures of the same fields).
PAIRS = Option(("--pairs",), {"nargs": "+", "metavar": "STORE"})


def keywords(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The parsed options ``names`` (argparse dests), as keyword arguments of the same names.

    For the options a command hands on unchanged to the function that does the work.
    """
    return {name: getattr(args, name) for name in names}


def require_finite(args: argparse.Namespace, *names: str) -> None:
    """Check that the number options ``names`` (argparse dests) are finite (not nan or inf).

    argparse's ``float`` takes ``nan`` and ``inf``; an exposure or interval of either would
    stall an acquisition instead of failing.

    Raises
    ------
    ConfigError
        Naming the first option that is not finite.
    """
    for name in names:
        value = getattr(args, name)
        if not math.isfinite(value):
            raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value}")


def require_at_least_one(args: argparse.Namespace, *names: str) -> None:
    """Check that the integer options ``names`` (argparse dests) are >= 1 where given.

    Raises
    ------
    ConfigError
        Naming the first option below 1 (``--max-steps must be >= 1, got 0``).
    """
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


__all__ = [
    "COUNTS_PER_ELECTRON",
    "DEVICE",
    "FAST",
    "JSON",
    "MODEL",
    "OVERWRITE",
    "PACKAGE_NAME",
    "PAIRS",
    "RESUME",
    "SEED",
    "STORE",
    "TTA",
    "Command",
    "Option",
    "keywords",
    "require_at_least_one",
    "require_finite",
]
