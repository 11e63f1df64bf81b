"""Shared test configuration: ``--runslow`` enables tests marked ``slow``; ``gpu`` needs CUDA."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The real Gatan OneView frames from Katsuno et al. (MIT licence), beside the checkout.
ONEVIEW_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "katsuno-oneview"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    cuda = _cuda_available()
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.fixture(scope="session")
def oneview_dir() -> Path:
    """Folder of the four real OneView frames; skips when the shared data is not beside the repo."""
    if not ONEVIEW_DIR.is_dir():
        pytest.skip(f"real OneView frames not found at {ONEVIEW_DIR}")
    return ONEVIEW_DIR
