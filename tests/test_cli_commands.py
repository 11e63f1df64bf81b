"""How ``tem-acq`` finds its commands (entry points), survives broken ones, and reports errors."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import tem_acq.cli
from tem_acq.cli import ENTRY_POINT_GROUP, Command, build_parser, main
from tem_acq.errors import StoreError

#: What ``tem-acq --help`` listed before commands came from entry points.
COMMANDS_IN_HELP_ORDER = [
    "info",
    "recover",
    "view",
    "report",
    "train",
    "adapt",
    "evaluate",
    "denoise",
    "model",
    "models",
    "bench",
    "acquire",
    "collect-pairs",
    "live",
    "demo",
]


def listed_commands(parser: argparse.ArgumentParser) -> list[str]:
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [choice.dest for choice in subparsers._choices_actions]


def test_every_command_comes_in_the_order_help_lists_them() -> None:
    assert listed_commands(build_parser()) == COMMANDS_IN_HELP_ORDER


def test_help_lists_the_commands_in_order(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    positions = [out.index(f"\n    {name}") for name in COMMANDS_IN_HELP_ORDER]
    assert positions == sorted(positions)


def fake(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def hello_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--who", default="world")


def run_hello(args: argparse.Namespace) -> int:
    print(f"hello {args.who}")
    return 0


def run_failing(args: argparse.Namespace) -> int:
    raise StoreError("a message that embeds another report:\n  first line\n\n  second line")


def clashing_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--who")
    parser.add_argument("--who")


#: A plug-in command that works, and one whose arguments argparse refuses.
HELLO = Command("hello", help="say hello", arguments=hello_arguments, run=run_hello)
CLASHING = Command("clash", help="--who twice", arguments=clashing_arguments, run=run_hello)
FAILING = Command("fail", help="raises a multi-line error", run=run_failing)


@pytest.fixture
def with_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    real = tem_acq.cli.command_entry_points()
    plugins = [
        fake("missing", "no_such_module_of_tem_acq:COMMAND"),
        fake("no-attribute", "tem_acq.cli.info:NO_SUCH_COMMAND"),
        fake("not-a-command", "tem_acq.cli:main"),
        fake("clash", f"{__name__}:CLASHING"),
        fake("info-again", "tem_acq.cli.info:COMMAND"),
        fake("hello", f"{__name__}:HELLO"),
        fake("fail", f"{__name__}:FAILING"),
    ]
    monkeypatch.setattr(tem_acq.cli, "command_entry_points", lambda: [*plugins, *real])


@pytest.mark.usefixtures("with_plugins")
def test_broken_plugins_are_reported_and_the_others_still_work(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert listed_commands(build_parser()) == [*COMMANDS_IN_HELP_ORDER, "fail", "hello"]
    err = capsys.readouterr().err.splitlines()
    expected = {
        "missing": "(no_such_module_of_tem_acq:COMMAND) is unavailable: ModuleNotFoundError",
        "no-attribute": "(tem_acq.cli.info:NO_SUCH_COMMAND) is unavailable: AttributeError",
        "not-a-command": "is unavailable: TypeError: it is a function, not a tem_acq.cli.Command",
        "clash": "is unavailable: ArgumentError",
        "info-again": "is left out: a command named 'info' is already registered",
    }
    assert len(err) == len(expected)
    for name, message in expected.items():
        (line,) = (line for line in err if f"command entry point {name!r}" in line)
        assert line.startswith("tem-acq: warning: ") and message in line
    assert main(["hello", "--who", "tem"]) == 0
    assert "hello tem" in capsys.readouterr().out
    assert main(["models", "--json"]) == 0


@pytest.mark.usefixtures("with_plugins")
def test_an_error_is_printed_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fail"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (
        "tem-acq fail: error: a message that embeds another report: first line second line"
    )


def test_no_commands_at_all_says_how_to_fix_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tem_acq.cli, "command_entry_points", list)
    build_parser()
    assert "no commands are registered" in capsys.readouterr().err


def test_a_broken_installed_plugin_leaves_the_cli_working(tmp_path: Path) -> None:
    # a real distribution on the path that declares a command whose module does not exist
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nbroken = broken_plugin.cli:COMMAND\n"
    )
    code = "import sys; from tem_acq.cli import main; sys.exit(main())"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", code, "models", "--json"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert '"packages"' in result.stdout
    (line,) = result.stderr.splitlines()
    assert "command entry point 'broken' (broken_plugin.cli:COMMAND) is unavailable" in line


def test_a_command_needs_a_run_function_or_subcommands() -> None:
    with pytest.raises(TypeError, match="needs either run or subcommands"):
        Command("nothing", help="does nothing")
    with pytest.raises(TypeError, match="needs either run or subcommands"):
        Command("both", help="x", run=lambda args: 0, subcommands=(HELLO,))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # settings argparse lets through and our code rejects
        (["bench", "denoise", "--size", "0"], "--size must be >= 1, got 0"),
        (["bench", "denoise", "--size", "64", "--device", "mps"], "device 'mps' is not supported"),
        (["train", "--pairs", "p.ome.zarr", "--out", "m", "--max-steps", "0"], "--max-steps"),
        (["report", "r.zarr", "--frames", "-1"], "give 0 or more frames"),
        (["view", "v.zarr", "--percentiles", "5", "1"], "give LOW < HIGH"),
        (["denoise", "in.npy", "--out", "o.npy", "--counts-per-electron", "0"], "must be > 0"),
        (["acquire", "--simulated", "--out", "a.ome.zarr", "--frames", "0"], "at least 1"),
        (["acquire", "--simulated", "--out", "a.ome.zarr", "--exposure-ms", "0"], "must be > 0"),
        # settings the simulator rejects (pydantic) become one line too
        (
            ["acquire", "--simulated", "--out", "a.ome.zarr", "--size", "0", "--frames", "1"],
            "invalid simulation settings: size: Input should be greater than 0",
        ),
        (
            ["collect-pairs", "--simulated", "--out", "p.ome.zarr", "--dose-rate", "-1"],
            "invalid simulation settings: dose_rate",
        ),
        (
            ["collect-pairs", "--simulated", "--out", "p.ome.zarr", "--fields", "0"],
            "invalid collection plan: fields: Input should be greater than or equal to 1",
        ),
        # nan and inf pass argparse's float and stalled the acquisition
        (["acquire", "--simulated", "--out", "a.ome.zarr", "--exposure-ms", "inf"], "finite"),
        (
            ["collect-pairs", "--simulated", "--out", "p.ome.zarr", "--long-exposure-ms", "inf"],
            "--long-exposure-ms must be a finite number, got inf",
        ),
        (["demo", "--out", "d", "--interval-ms", "nan"], "--interval-ms must be a finite number"),
        (["demo", "--out", "d", "--frames", "0"], "--frames must be at least 1"),
        (["demo", "--out", "d", "--size", "0"], "invalid simulation settings: size"),
    ],
)
def test_every_setting_mistake_is_one_line_and_exit_code_2(
    args: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.npy").write_bytes(b"")
    assert main(args) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"tem-acq {args[0]}: error: ")
    assert message in line


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "denoise", "--size", "x"],
        ["denoise", "in.npy", "--out", "o.npy", "--path", "turbo"],
        ["acquire", "--out", "a.ome.zarr", "--policy", "never"],
        ["nonsense"],
    ],
)
def test_argparse_mistakes_exit_with_code_2(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("tem-acq")
