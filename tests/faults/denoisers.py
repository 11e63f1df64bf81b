"""Faulty denoisers: each misbehaves the way a real model or a user's plug-in could.

Every one answers its first ``good_calls`` calls correctly (with :func:`good_result`, so a
test can check the frames that were denoised), then shows its fault on every later call.
``FAULTS`` names them all. Each class says what the recorder must do about it: ``fails``
(denoising must end with the error recorded, ``error_text`` a part of that error) or not (a
slow denoiser is no failure: frames are skipped or the camera waits, by policy).
"""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import numpy as np


def good_result(frames: np.ndarray, counts_per_electron: float) -> np.ndarray:
    """What a good call returns: known float32 electrons, different from the raw counts."""
    return frames.astype(np.float32) / counts_per_electron + 0.5


class FaultyDenoiser:
    """Good for ``good_calls`` calls, then :meth:`fault` on every call.

    Attributes
    ----------
    name
        The fault's name (a key of :data:`FAULTS`).
    fails
        Whether the fault must end denoising (with its error recorded in the store).
    error_text
        A part of the error the store must record.
    calls
        Calls so far.
    """

    name: ClassVar[str] = ""
    fails: ClassVar[bool] = True
    error_text: ClassVar[str] = ""

    def __init__(self, good_calls: int = 2) -> None:
        self.good_calls = good_calls
        self.calls = 0

    def denoise(self, frames: np.ndarray, *, counts_per_electron: float = 1.0) -> Any:
        self.calls += 1
        if self.calls <= self.good_calls:
            return good_result(frames, counts_per_electron)
        return self.fault(frames, counts_per_electron)

    def fault(self, frames: np.ndarray, counts_per_electron: float) -> Any:
        raise NotImplementedError

    def release(self) -> None:
        """Let a call that is stuck return (only :class:`Hangs` ever is)."""


class Raises(FaultyDenoiser):
    """Raises, as a GPU running out of memory does."""

    name = "raises"
    error_text = "RuntimeError('CUDA out of memory (injected)')"

    def fault(self, frames: np.ndarray, counts_per_electron: float) -> Any:
        raise RuntimeError("CUDA out of memory (injected)")


class WrongShape(FaultyDenoiser):
    """Returns frames cropped by one row (a model that forgot to crop its padding back)."""

    name = "wrong_shape"
    error_text = "it returned shape"

    def fault(self, frames: np.ndarray, counts_per_electron: float) -> Any:
        return good_result(frames, counts_per_electron)[:, :-1, :]


class WrongDtype(FaultyDenoiser):
    """Returns the raw counts (uint16) instead of float electrons."""

    name = "wrong_dtype"
    error_text = "it returned dtype uint16"

    def fault(self, frames: np.ndarray, counts_per_electron: float) -> Any:
        return frames.copy()


class WrongCount(FaultyDenoiser):
    """Returns one frame too many (a batch bug)."""

    name = "wrong_count"
    error_text = "frame(s) for"

    def fault(self, frames: np.ndarray, counts_per_electron: float) -> Any:
        out = good_result(frames, counts_per_electron)
        return np.concatenate([out, out[:1]])


class ReturnsNone(FaultyDenoiser):
    """Returns None (a plug-in that writes its result somewhere else)."""

    name = "none"
    error_text = "it returned None"

    def fault(self, frames: np.ndarray, counts_per_electron: float) -> Any:
        return None


class NonFinite(FaultyDenoiser):
    """Returns NaN and inf (a model whose weights or arithmetic blew up)."""

    name = "non_finite"
    error_text = "non-finite values"

    def fault(self, frames: np.ndarray, counts_per_electron: float) -> Any:
        out = good_result(frames, counts_per_electron)
        out[:, 0, 0] = np.nan
        out[:, -1, -1] = np.inf
        return out


class Hangs(FaultyDenoiser):
    """Never returns (a deadlocked driver) until :meth:`release`; then returns a good result."""

    name = "hangs"
    error_text = "denoiser stopped answering"

    def __init__(self, good_calls: int = 2) -> None:
        super().__init__(good_calls)
        self.stuck = threading.Event()
        self._released = threading.Event()

    def fault(self, frames: np.ndarray, counts_per_electron: float) -> Any:
        self.stuck.set()
        self._released.wait()
        return good_result(frames, counts_per_electron)

    def release(self) -> None:
        self._released.set()


class Slow(FaultyDenoiser):
    """Answers correctly but slower than the camera (no failure: the policy decides)."""

    name = "slow"
    fails = False

    def __init__(self, good_calls: int = 0, delay_s: float = 0.03) -> None:
        super().__init__(good_calls)
        self.delay_s = delay_s

    def fault(self, frames: np.ndarray, counts_per_electron: float) -> Any:
        time.sleep(self.delay_s)
        return good_result(frames, counts_per_electron)


#: Every faulty denoiser, by name.
FAULTS: dict[str, type[FaultyDenoiser]] = {
    cls.name: cls
    for cls in (Raises, WrongShape, WrongDtype, WrongCount, ReturnsNone, NonFinite, Hangs, Slow)
}
