"""tem-acq: live low-dose TEM denoising for Micro-Manager / pycro-manager, recorded to OME-Zarr.

This package is the core (simulation, storage, denoising, training, metrics, CLI) and never
imports pycro-manager; ``acquisition_hooks`` adapts it to pycro-manager and Micro-Manager cores.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

# torch's OpenMP threads spin while they wait; on a small shared CPU (2 cores running the camera,
# the engine, the writer and the denoiser) that made inference 3-4x slower. Set here, before any
# tem-acq module imports torch (live pipeline, training, CLI); a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    from tem_acq.denoise import load_model

try:
    __version__ = version("tem-acq")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "load_model"]


def __getattr__(name: str) -> Any:
    # Lazy: ``import tem_acq`` must not import torch (seconds); ``tem_acq.load_model`` does.
    if name == "load_model":
        from tem_acq.denoise import load_model

        return load_model
    raise AttributeError(f"module 'tem_acq' has no attribute {name!r}")
