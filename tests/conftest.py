"""Shared test configuration and builders.

``--runslow`` enables tests marked ``slow``; ``gpu`` needs CUDA. The fixtures build what many
test files need: the acquisition metadata of a Gatan OneView run (``metadata_dict``,
``metadata``) and a small untrained model package (``fast_pkg``, built once).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tem_acq.store import AcquisitionMetadata

#: The real Gatan OneView frames from Katsuno et al. (MIT licence), beside the checkout.
ONEVIEW_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "katsuno-oneview"

#: A Gatan OneView run at 200 kV and 20 000x, 29.88 A per (8x binned) pixel, 44 counts per
#: electron, 3.3 ms frames of 4.6 e-/px every 8 ms: what the store, report and CLI tests record.
ONEVIEW_METADATA: dict[str, Any] = {
    "instrument": {"voltage_kV": 200, "pixel_size_A": 29.88, "magnification": 20000},
    "camera": {"name": "Gatan OneView", "counts_per_electron": 44, "binning": 8},
    "exposure_ms": 3.3,
    "frame_interval_ms": 8.0,
    "dose_e_per_px": 4.6,
}


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


@pytest.fixture(scope="session")
def metadata_dict() -> Callable[..., dict[str, Any]]:
    """Builder of the OneView run's metadata fields as plain data (what a store's JSON holds).

    ``metadata_dict(**overrides)`` returns a new dict each call. An ``instrument=`` or
    ``camera=`` dict is merged into that record (``camera={"binning": 1}`` changes one field);
    any other override replaces the field (``dose_e_per_px=None`` removes the dose).
    """

    def build(**overrides: Any) -> dict[str, Any]:
        fields = copy.deepcopy(ONEVIEW_METADATA)
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(fields.get(key), dict):
                fields[key] = {**fields[key], **value}
            else:
                fields[key] = value
        return fields

    return build


@pytest.fixture(scope="session")
def metadata(
    metadata_dict: Callable[..., dict[str, Any]],
) -> Callable[..., AcquisitionMetadata]:
    """Builder of the OneView run's validated ``AcquisitionMetadata``, a new object each call.

    ``metadata(**overrides)`` takes the overrides of ``metadata_dict``; derived fields (the
    dose per square angstrom) are computed from the result, as a writer would.
    """
    from tem_acq.store import AcquisitionMetadata

    def build(**overrides: Any) -> AcquisitionMetadata:
        return AcquisitionMetadata.model_validate(metadata_dict(**overrides))

    return build


@pytest.fixture(scope="session")
def fast_pkg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The fast U-Net, untrained (seed 0), as a package named ``fast``, built once per session.

    Every test that asks for it shares the folder (the only package in its parent folder):
    read it, load it, point a search path at its parent, but copy it before changing anything.
    A test that changes it fails the session at teardown.
    """
    from tem_acq.denoise import new_package

    out = tmp_path_factory.mktemp("untrained") / "fast"
    new_package(out, fast=True, seed=0)
    before = _folder_digest(out.parent)
    yield out
    assert _folder_digest(out.parent) == before, (
        f"a test changed the shared untrained package at {out}: copy it before changing it"
    )


def _folder_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }
