"""Live mode: denoise Micro-Manager's live view (a continuous sequence acquisition).

While a user focuses, the camera runs ``core.startContinuousSequenceAcquisition``; this module
pops its frames on a thread of its own, on either stack's core (both are a ``UniMMCore``):

- recording (``recorder=LiveRecorder(...)``): every frame goes to the recorder
  (``process(image, metadata)``), which writes it and denoises as its policy says;
- not recording: only the newest frame is denoised (the others are dropped, nothing is
  written), so the view keeps up whatever the model's speed.

::

    from acquisition_hooks import simulated_microscope
    from acquisition_hooks.live_view import live_view

    with simulated_microscope(stack="pymmcore-plus") as scope:
        with live_view(scope, model="default", on_denoised=show) as view:
            ...  # focus; view.stats says what was seen, denoised and recorded
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from typing import Any, ClassVar

import numpy as np

from tem_acq.errors import AcquisitionError

from .recorder import FrameRecorder

#: How long the popping thread sleeps when the buffer is empty.
POLL_S = 0.001


@dataclass
class LiveStats:
    """What a live view did: frames the core delivered, denoised, recorded, and its time."""

    seen: int = 0
    denoised: int = 0
    recorded: int = 0
    elapsed_s: float = 0.0

    @property
    def fps(self) -> float:
        """Frames delivered per second."""
        return self.seen / self.elapsed_s if self.elapsed_s > 0 else 0.0


class LiveView:
    """A running live view (see :func:`live_view`); :meth:`stop` ends it."""

    def __init__(
        self,
        core: Any,
        *,
        recorder: Any | None = None,
        denoise: Callable[[np.ndarray], np.ndarray] | None = None,
        on_denoised: Callable[[int, np.ndarray], None] | None = None,
    ) -> None:
        self._core = core
        self._recorder = recorder
        self._denoise = denoise
        self._on_denoised = on_denoised
        self.stats = LiveStats()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, name="tem-acq live", daemon=True)

    def start(self) -> None:
        """Start the continuous acquisition and the popping thread."""
        if self._core.isSequenceRunning():
            raise AcquisitionError("a sequence acquisition is already running; stop it first")
        if self._recorder is not None:  # a continuous sequence cannot wait for the denoiser
            self._recorder.set_camera_can_wait(False)
        self._core.startContinuousSequenceAcquisition(0)
        self._t0 = time.perf_counter()
        self._thread.start()

    def stop(self) -> LiveStats:
        """Stop the camera at once, then the thread; a recorder gets every frame left.

        The camera stops here, not after the thread's current frame: a slow model must not
        keep the beam on while it finishes.
        """
        self._stop.set()
        if self._thread.is_alive():
            self._core.stopSequenceAcquisition()
        self._thread.join()
        self.stats.elapsed_s = time.perf_counter() - self._t0
        if self.error is not None:
            raise AcquisitionError(f"live view failed: {self.error}") from self.error
        return self.stats

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._step():
                    time.sleep(POLL_S)
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            self._core.stopSequenceAcquisition()
        if self.error is None and self._recorder is not None:  # taken: kept
            while self._step():
                pass

    def _step(self) -> bool:
        """Handle the frames waiting in the buffer; False when there were none."""
        core = self._core
        n = core.getRemainingImageCount()
        if n == 0:
            return False
        if self._recorder is not None:
            for _ in range(n):
                image, md = core.popNextImageAndMD()
                self.stats.seen += 1
                self._recorder.process(image, dict(md))
                self.stats.recorded += 1
            return True
        for _ in range(n - 1):  # not recording: only the newest frame matters
            core.popNextImage()
        image = core.popNextImage()
        self.stats.seen += n
        if self._denoise is not None:
            out = self._denoise(np.asarray(image))
            if self._on_denoised is not None:
                self._on_denoised(self.stats.seen - 1, out)
            self.stats.denoised += 1
        return True


class LiveViewRecorder(FrameRecorder):
    """The recorder of a live view on either stack's core (the store's backend says so)."""

    BACKEND: ClassVar[str] = "live view"


@contextmanager
def live_view(
    scope_or_core: Any,
    *,
    recorder: Any | None = None,
    model: Any | None = None,
    device: str = "auto",
    on_denoised: Callable[[int, np.ndarray], None] | None = None,
    counts_per_electron: float | None = None,
) -> Iterator[LiveView]:
    """Run the live view, denoised, for the ``with`` block (recording when given a recorder).

    Parameters
    ----------
    scope_or_core
        A :class:`~acquisition_hooks.session.MicroscopeSession` (either stack) or a core.
    recorder
        A :class:`LiveViewRecorder` (or any :class:`~acquisition_hooks.recorder.FrameRecorder`):
        every frame is recorded (and denoised as
        its policy and model say; pass ``on_denoised`` to the recorder). None: nothing is
        written.
    model
        Not recording: a model package name or path, or a loaded denoiser, for the newest
        frame; None shows nothing denoised.
    on_denoised
        Not recording: called with ``(frame number, electrons)`` for each denoised frame.
    counts_per_electron
        The camera's conversion factor (default: the simulated camera's).

    The camera stops when the block ends, also on an exception or Ctrl-C.
    """
    core = getattr(scope_or_core, "core", scope_or_core)
    denoise = None
    if recorder is None and model is not None:
        denoise = _denoiser(scope_or_core, model, device, counts_per_electron)
    view = LiveView(core, recorder=recorder, denoise=denoise, on_denoised=on_denoised)
    view.start()
    try:
        yield view
    finally:
        view.stop()


def _denoiser(
    scope: Any, model: Any, device: str, counts_per_electron: float | None
) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a raw frame to its denoised electrons."""
    from tem_acq.denoise import load_model

    denoiser = load_model(model, device=device) if isinstance(model, str | PathLike) else model
    settings: dict[str, Any] = {}
    if hasattr(scope, "recorder_settings") and getattr(scope, "camera", None) is not None:
        s = scope.recorder_settings()
        settings = {"detector": s["detector_model"] or s["detector"], "binning": s["binning"]}
        counts_per_electron = counts_per_electron or s["counts_per_electron"]
    if counts_per_electron is None:
        raise AcquisitionError("live_view needs counts_per_electron for a camera without one")
    cpe = float(counts_per_electron)

    def denoise(frame: np.ndarray) -> np.ndarray:
        return np.asarray(denoiser.denoise(frame, counts_per_electron=cpe, **settings))

    return denoise
