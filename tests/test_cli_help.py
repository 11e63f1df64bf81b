"""Every ``--help`` shows each option's default and no docstring markup (a newcomer read them)."""

from __future__ import annotations

import argparse

from tem_acq.cli import build_parser
from tem_acq.cli.command import _has_default


def _parsers(parser: argparse.ArgumentParser, name: str = "tem-acq"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub, child in action.choices.items():
                yield from _parsers(child, f"{name} {sub}")


def _help_of(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The lines ``--help`` prints for one option."""
    return parser._get_formatter()._format_action(action)


def test_every_help_shows_defaults_and_no_markup() -> None:
    checked = 0
    for name, parser in _parsers(build_parser()):
        text = parser.format_help()
        assert "``" not in text, f"{name} --help shows raw double backticks"
        for action in parser._actions:
            if not _has_default(action):
                continue
            line = _help_of(parser, action)
            flag = action.option_strings[-1]
            assert "default" in line.lower(), f"{name} {flag}: no default in its help: {line!r}"
            checked += 1
    assert checked > 50  # the commands and options were really there


def test_the_options_a_newcomer_asked_about_show_their_defaults() -> None:
    parser = build_parser()
    for argv, flag, default in [
        (["collect-pairs"], "--n-short", "2"),
        (["collect-pairs"], "--short-exposure-ms", "2.0"),
        (["collect-pairs"], "--size", "512"),
        (["acquire"], "--exposure-ms", None),
    ]:
        sub = next(c for n, c in _parsers(parser) if n == f"tem-acq {argv[0]}")
        action = next(a for a in sub._actions if flag in a.option_strings)
        line = _help_of(sub, action)
        assert "default" in line.lower()
        if default is not None:
            assert default in line
