"""The live quality estimate: every few seconds, how good the denoising is on these frames.

:class:`LiveQuality` is the :class:`~tem_acq.pipeline.PairObserver` a
:class:`~acquisition_hooks.LiveRecorder` gives its pipeline. When an estimate is due it asks
for two consecutive denoised frames, checks that the stage did not move between them, and
runs :func:`tem_acq.quality.estimate_pair` on the two raw frames and the two outputs the live
denoiser already made (nothing is denoised again) in a thread of its own, so the denoiser's
thread only hands the frames over. The estimate goes into the store's per-frame table (the
row of the pair's second frame) and the recorder's summary; the first trusted estimate whose
model is below the best Gaussian filter beyond its interval warns once per acquisition.

A pair is skipped, and counted, when the previous estimate is still running (``busy``) or the
stage moved between the two frames by more than a pixel (``stage moved``); either way the next
one is due ``every_s`` later. The estimate's thread runs at the lowest priority, and waits so
that it computes at most ``max_share`` of the time (5 %): where it shares the CPU with the
denoiser (a machine without a GPU) its interval stretches rather than the frame rate falling.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from tem_acq.pipeline import DenoisedFrame
from tem_acq.quality import saturation_electrons
from tem_acq.schema import StrictModel

log = logging.getLogger(__name__)

#: The estimate's name for the live model's row (``PairEstimate.rows``).
MODEL_ROW = "model"


class LiveQualityOptions(StrictModel):
    """Settings of the live quality estimate (``LiveRecorder(quality_every_s=...)``).

    Attributes
    ----------
    every_s
        Seconds between estimates (the first comes ``every_s`` after the recorder starts);
        ``None`` or 0 turns the estimate off.
    max_size_px
        The estimate uses at most the central ``max_size_px`` square of the frames, which
        bounds its cost on big frames (4096x4096) without biasing it.
    max_share
        Largest share of the time the estimate may compute: after an estimate that took ``t``
        seconds the next waits at least ``t / max_share``, so on a machine where it competes
        with the denoiser for the CPU it takes at most that share (the interval stretches).
    """

    every_s: float | None = Field(default=5.0)
    max_size_px: int = Field(default=1024, ge=64)
    max_share: float = Field(default=0.05, gt=0.0, le=1.0)

    @field_validator("every_s")
    @classmethod
    def _finite_interval(cls, value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"quality_every_s must be >= 0 s or None (off), got {value}")
        return value or None

    @property
    def enabled(self) -> bool:
        """True when estimates are computed."""
        return self.every_s is not None


class LiveQuality:
    """Estimates denoising quality on consecutive live frames, in the background.

    Parameters
    ----------
    options
        How often, and on how much of each frame.
    counts_per_electron
        The camera's conversion factor (raw counts to electrons).
    pixel_size_A
        The pixel size at the specimen: a stage move of more than one pixel between the two
        frames suppresses the estimate.
    model_id
        The live model (``{"name", "sha256"}``), recorded with each estimate.
    write
        Called as ``write(index, estimate)`` with each estimate (JSON-ready) for the row of
        frame ``index`` (the pipeline's ``record_quality``); from the estimate's thread.
    report_error
        Called with a one-line message when an estimate fails (the pipeline's
        ``record_error``); estimating goes on.
    clock
        Seconds, monotonic (for tests: the real clock is the default).
    """

    def __init__(
        self,
        options: LiveQualityOptions,
        *,
        counts_per_electron: float,
        pixel_size_A: float,
        model_id: dict[str, str] | None,
        write: Callable[[int, dict[str, Any]], None],
        report_error: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert options.every_s is not None, "a LiveQuality needs an interval"
        self._every_s = options.every_s
        self._max_size = options.max_size_px
        self._max_share = options.max_share
        self._cpe = float(counts_per_electron)
        self._pixel_um = pixel_size_A * 1e-4
        self._model_id = model_id
        self._write = write
        self._report_error = report_error
        self._clock = clock
        self._lock = threading.Lock()
        self._next_due = clock() + self._every_s
        self._worker: threading.Thread | None = None
        self._closed = False
        self._warning: str | None = None
        self._latest: dict[str, Any] | None = None
        self._compute_s: list[float] = []
        self._counts = {"estimates": 0, "untrusted": 0, "skipped_busy": 0, "skipped_stage": 0}
        self._failures = 0

    # -- the pipeline's side (denoiser thread: return at once) -----------------------------

    def wants_pair(self) -> bool:
        """True when an estimate is due (the pipeline then denoises two consecutive frames)."""
        return not self._closed and self._clock() >= self._next_due

    def offer(self, first: DenoisedFrame, second: DenoisedFrame) -> None:
        """Start an estimate on the pair, or count why not; never waits."""
        with self._lock:
            if self._closed or self._clock() < self._next_due:
                return
            self._next_due = self._clock() + self._every_s
            if self._worker is not None and self._worker.is_alive():
                self._counts["skipped_busy"] += 1
                return
            if _stage_moved(first.record, second.record, self._pixel_um):
                self._counts["skipped_stage"] += 1
                return
            frames = self._crops(first, second)
            self._worker = threading.Thread(
                target=self._estimate,
                args=(second.index, *frames),
                name="tem-acq quality",
                daemon=True,
            )
            self._worker.start()

    def _crops(
        self, first: DenoisedFrame, second: DenoisedFrame
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float | None]:
        """Both raw frames in electrons and both outputs, centrally cropped; the saturation."""
        rows, cols = _central(first.raw.shape, self._max_size)
        a = first.raw[rows, cols].astype(np.float64) / self._cpe
        b = second.raw[rows, cols].astype(np.float64) / self._cpe
        fa = first.electrons[rows, cols].astype(np.float64)
        fb = second.electrons[rows, cols].astype(np.float64)
        return a, b, fa, fb, saturation_electrons(first.raw.dtype, self._cpe)

    # -- the estimate's thread ------------------------------------------------------------

    def _estimate(
        self,
        index: int,
        a: np.ndarray,
        b: np.ndarray,
        fa: np.ndarray,
        fb: np.ndarray,
        saturation_e: float | None,
    ) -> None:
        _lower_priority()
        start = time.perf_counter()
        try:
            from tem_acq.quality import estimate_pair

            est = estimate_pair(
                a, b, outputs={MODEL_ROW: (fa, fb)}, saturation_e=saturation_e, seed=index
            )
            row = {**est.to_dict(), "pair": [index - 1, index], "denoised_by": self._model_id}
            verdict = est.verdict(MODEL_ROW) if est.trusted else None
        except Exception as exc:  # the estimate must never disturb recording
            log.exception("live quality estimate failed")
            with self._lock:
                self._failures += 1
            self._report_error(f"live quality estimate of frame {index} failed: {exc!r}")
            return
        seconds = time.perf_counter() - start
        with self._lock:
            # at most max_share of the time: the rest is the denoiser's
            rest = seconds * (1.0 / self._max_share - 1.0)
            self._next_due = max(self._next_due, self._clock() + rest)
            self._compute_s.append(seconds)
            self._counts["estimates"] += 1
            self._counts["untrusted"] += 0 if est.trusted else 1
            self._latest = _latest(index, row)
            warn = est.trusted and _below_gaussian(est) and self._warning is None
            if warn:
                self._warning = (
                    f"tem-acq: the model is below the best Gaussian filter on these frames "
                    f"(frames {index - 1}-{index}): {verdict}; the model does not suit this "
                    "specimen or dose"
                )
        self._write(index, row)
        if warn:  # logged (printed on stderr where logging is not set up: tem-acq acquire)
            log.warning("%s", self._warning)

    # -- results and closing --------------------------------------------------------------

    def close(self, timeout_s: float = 30.0) -> None:
        """Start no more estimates; wait at most ``timeout_s`` for the one running."""
        with self._lock:
            self._closed = True
            worker = self._worker
        if worker is not None:
            worker.join(timeout_s)
            if worker.is_alive():
                self._report_error(
                    f"the live quality estimate still ran {timeout_s:g} s after close; it "
                    "was abandoned"
                )

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the interval, counts, the latest estimate, the warning (if any)."""
        with self._lock:
            p50 = float(np.median(self._compute_s)) if self._compute_s else None
            return {
                "every_s": self._every_s,
                **self._counts,
                "failed": self._failures,
                "compute_s_p50": None if p50 is None else round(p50, 3),
                "latest": self._latest,
                "warning": self._warning,
            }


def _lower_priority() -> None:
    """Let the scheduler prefer the recording and denoising threads to this one.

    On Linux a thread has its own nice value; elsewhere this does nothing.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):
        pass


def _below_gaussian(est: Any) -> bool:
    """The model's error is above the best Gaussian's beyond the paired interval."""
    gain = est.gains.get(MODEL_ROW)
    return gain is not None and gain.worse


def _latest(index: int, row: dict[str, Any]) -> dict[str, Any]:
    """The summary's view of one estimate: PSNR per row and the model's gain."""
    psnr = {
        name: row[name].get("psnr_db")
        for name in ("raw", "gaussian", MODEL_ROW)
        if isinstance(row.get(name), dict)
    }
    gain = (row.get("gain_over_gaussian_db") or {}).get(MODEL_ROW)
    return {"frame": index, "trusted": row.get("trusted"), "psnr_db": psnr, "gain_db": gain}


def _central(shape: tuple[int, ...], size: int) -> tuple[slice, slice]:
    """The central ``size`` x ``size`` window (or less) of a frame of ``shape``."""
    height, width = int(shape[0]), int(shape[1])
    top, left = max(height - size, 0) // 2, max(width - size, 0) // 2
    return slice(top, top + min(size, height)), slice(left, left + min(size, width))


def _stage_moved(first: Any, second: Any, tolerance_um: float) -> bool:
    """The stage positions of two records differ by more than ``tolerance_um``.

    Unknown positions count as unmoved: the estimate itself says when the field moved.
    """
    delta = []
    for axis in ("stage_x_um", "stage_y_um"):
        x0, x1 = getattr(first, axis, None), getattr(second, axis, None)
        if x0 is None or x1 is None:
            return False
        delta.append(x1 - x0)
    return math.hypot(*delta) > tolerance_um
