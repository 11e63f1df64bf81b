"""The core package never imports pycro-manager; the CLI starts without it."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import tem_acq

FORBIDDEN = ("pycromanager", "pymmcore", "pymmcore_plus", "mmpycorex")


def test_no_tem_acq_module_imports_pycromanager() -> None:
    modules = sorted(m.name for m in pkgutil.walk_packages(tem_acq.__path__, prefix="tem_acq."))
    assert "tem_acq.cli" in modules and "tem_acq.store.pairs" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "from tem_acq.cli import build_parser; build_parser()\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)


def test_core_sources_do_not_mention_pycromanager_imports() -> None:
    root = Path(tem_acq.__file__).parent
    offenders = [
        str(p.relative_to(root))
        for p in root.rglob("*.py")
        if any(
            line.lstrip().startswith(("import pycromanager", "from pycromanager"))
            for line in p.read_text().splitlines()
        )
    ]
    assert offenders == []
