"""The thin layer that plugs tem-acq into pycro-manager and Micro-Manager cores.

- :class:`LiveRecorder`: the hook a microscopist attaches to ``pycromanager.Acquisition`` to
  record every raw frame to OME-Zarr and denoise live.
- :func:`simulated_microscope`: a real Micro-Manager core with a simulated TEM camera, attached
  to pycro-manager's Python backend (no microscope needed).
- :class:`SimulatedTEMCamera`: the camera device itself, for any pymmcore-plus ``UniMMCore``.
- ``tem-acq acquire``, ``collect-pairs`` and ``demo``: the commands this layer contributes to
  the core's command line (:mod:`.commands`, :mod:`.demo`; entry points in pyproject.toml).

Names are imported on first use, so ``tem-acq`` commands that need none of them stay quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .camera import SimulatedTEMCamera
    from .recorder import LiveRecorder
    from .session import MicroscopeSession, simulated_microscope

_EXPORTS = {
    "LiveRecorder": ".recorder",
    "MicroscopeSession": ".session",
    "SimulatedTEMCamera": ".camera",
    "simulated_microscope": ".session",
}

__all__ = ["LiveRecorder", "MicroscopeSession", "SimulatedTEMCamera", "simulated_microscope"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'acquisition_hooks' has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
