"""tem-acq: live low-dose TEM denoising for Micro-Manager / pycro-manager, recorded to OME-Zarr.

This package is the core (simulation, storage, denoising, training, metrics, CLI) and never
imports pycro-manager; ``acquisition_hooks`` adapts it to pycro-manager and Micro-Manager cores.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tem-acq")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
