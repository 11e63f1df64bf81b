"""The frame pipeline behind live recording: hand-over, in-order raw writing, denoising.

An acquisition's image processor calls :meth:`FramePipeline.submit` with each raw frame and
returns at once. Two worker threads do the rest:

- the **writer** owns the store: it appends raw frames in arrival order (always, whatever the
  denoiser does) and writes denoised frames, skips and errors as they come;
- the **denoiser** takes waiting frames in batches and runs the model. When it cannot keep up
  the policy decides: ``"skip"`` denoises the newest frames and marks the older ones skipped
  (live viewing); ``"block"`` denoises every frame and, while the camera can wait (snapping),
  makes :meth:`submit` wait for room. During a hardware sequence the camera cannot wait (the
  core's circular buffer would overflow and abort the acquisition), so ``"block"`` then warns
  once and falls back to skipping the oldest frames.

Nothing on the denoiser's side stops raw recording. Every result is checked (one float array
of the frames' shape per frame given, every value finite); a denoiser that raises, returns
anything else, or takes longer than ``denoiser_timeout_s`` over one call (it is then
abandoned, never waited on again) stops denoising: the error goes into the store, every frame
not denoised is marked skipped with the reason, raw frames keep being written, and
:meth:`FramePipeline.close` raises :class:`DenoiserFailedError` after every raw frame is
safely written. ``close`` waits at most ``denoiser_timeout_s`` for the denoiser.

Raw frames wait in memory only while the writer is behind: at most ``max_unwritten_frames``
(16) handed over and not yet written, and at most ``max_pending_bytes``; beyond either,
:meth:`submit` waits (slowing the acquisition rather than dropping frames; past the byte
limit it also warns). The frame limit is what bounds a crash's loss: a killed process loses
only the frames the store writer has not committed (its open shard) plus those waiting for it.
Nothing here imports pycro-manager.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from tem_acq.detector import DEFAULT_MODELS, DetectorModel
from tem_acq.errors import AcquisitionError, ConfigError, DenoiserFailedError

log = logging.getLogger(__name__)

Policy = Literal["skip", "block"]

#: Why a frame got no denoised version (the per-frame table's ``skipped`` column).
SKIP_BUSY = "denoiser busy: newer frame shown"
SKIP_SEQUENCE = "denoiser busy during a sequence"
SKIP_FAILED = "denoiser failed"
SKIP_STUCK = "denoiser stopped answering"
SKIP_ABORTED = "acquisition aborted"
SKIP_NOT_STORED = "denoised frame could not be stored"

#: Default of ``denoiser_timeout_s``: the longest one denoiser call may take (and the longest
#: ``close`` waits for the denoiser). Generous: a 4096x4096 frame through the paper's model
#: is 16 tiles of 1024x1024 at about 1 s each on the README's 2-core CPU (not measured whole).
DENOISER_TIMEOUT_S = 60.0
#: Default of ``max_unwritten_frames``: one shard of the store (see the crash-safety bound).
MAX_UNWRITTEN_FRAMES = 16


class FrameSink(Protocol):
    """Where the pipeline's writer thread puts frames (an acquisition store writer)."""

    def append_raw(self, frame: np.ndarray, record: Any) -> int:
        """Append a raw frame with its per-frame record; return its index."""
        ...

    def write_denoised(
        self,
        index: int,
        frame: np.ndarray,
        latency_ms: float,
        *,
        model: dict[str, str] | None = None,
    ) -> None:
        """Store the denoised frame of raw frame ``index`` (and the model that made it).

        The pipeline passes ``model`` only when it was given a ``model_id``: a sink for
        pipelines without one may leave the keyword out.
        """
        ...

    def record_quality(self, index: int, estimate: dict[str, Any]) -> None:
        """Record a quality estimate in the row of frame ``index``.

        Called only for :meth:`FramePipeline.record_quality`: a sink for pipelines without a
        pair observer may leave it out.
        """
        ...

    def record_model_swap(self, index: int, details: dict[str, Any]) -> None:
        """Record that frame ``index`` is the first one a swapped-in model denoised.

        Called only after :meth:`FramePipeline.swap_denoiser`: a sink for pipelines that never
        swap may leave it out.
        """
        ...

    def mark_skipped(self, index: int, reason: str) -> None:
        """Record that raw frame ``index`` was not denoised, and why."""
        ...

    def record_error(self, message: str) -> None:
        """Record an error in the store."""
        ...

    def close(self) -> None:
        """Flush everything and mark the store complete.

        For an aborted run (:meth:`FramePipeline.close` with ``aborted=True``) the pipeline
        calls ``close(aborted=True)`` instead: a sink used for such runs takes that keyword.
        """
        ...


@dataclass(frozen=True)
class DenoisedFrame:
    """One frame after the live denoiser: what a :class:`PairObserver` is shown.

    Attributes
    ----------
    index
        The frame's index along t.
    raw
        The raw frame as the camera delivered it (counts; do not modify).
    record
        The per-frame record given to :meth:`FramePipeline.submit` (stage position, ...).
    electrons
        The denoiser's output, float32 electrons per pixel (do not modify).
    """

    index: int
    raw: np.ndarray
    record: Any
    electrons: np.ndarray


class PairObserver(Protocol):
    """Looks at two consecutive denoised frames now and then (a live quality estimate).

    Both methods are called from the denoiser thread and must return at once: hand the work
    to a thread or process of your own. Their exceptions are recorded, never raised.
    """

    def wants_pair(self) -> bool:
        """True when a pair is due.

        Under ``"skip"`` the next batch then holds the newest two waiting frames (both
        denoised), so that a consecutive pair exists.
        """
        ...

    def offer(self, first: DenoisedFrame, second: DenoisedFrame) -> None:
        """Two consecutive frames (``second.index == first.index + 1``), both denoised."""
        ...


class FrameDenoiser(Protocol):
    """What the pipeline needs of a denoiser (:class:`tem_acq.denoise.Denoiser` fits).

    A denoiser whose ``denoise`` also takes ``detector=`` and ``binning=`` keywords is given
    the pipeline's detector and binning (when a detector is known).
    """

    def denoise(self, frames: np.ndarray, *, counts_per_electron: float = 1.0) -> np.ndarray:
        """Denoise a stack (n, y, x) of raw counts into float32 electrons per pixel."""
        ...


@dataclass
class PipelineSummary:
    """What happened to the frames of one run."""

    frames: int = 0
    denoised: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0
    latency_ms_p50: float | None = None
    latency_ms_p95: float | None = None
    max_pending_frames: int = 0
    backpressure_waits: int = 0
    errors: list[str] = field(default_factory=list)
    quality: dict[str, Any] | None = None
    adaptation: dict[str, Any] | None = None

    @property
    def fps(self) -> float:
        """Raw frames recorded per second of the run."""
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "frames": self.frames,
            "denoised": self.denoised,
            "skipped": self.skipped,
            "elapsed_s": round(self.elapsed_s, 3),
            "fps": round(self.fps, 2),
            "latency_ms_p50": self.latency_ms_p50,
            "latency_ms_p95": self.latency_ms_p95,
            "max_pending_frames": self.max_pending_frames,
            "backpressure_waits": self.backpressure_waits,
            "errors": list(self.errors),
            "quality": self.quality,
            "adaptation": self.adaptation,
        }


@dataclass(frozen=True)
class _Swap:
    """A model waiting to replace the live one (see :meth:`FramePipeline.swap_denoiser`)."""

    denoiser: FrameDenoiser
    model_id: dict[str, str] | None
    details: dict[str, Any]
    on_applied: Callable[[int], None] | None


@dataclass
class _Pending:
    index: int
    frame: np.ndarray
    submitted: float
    record: Any = None


class DoseCorrection:
    """A camera's corrected dose for each raw-only frame: its detector model at its binning.

    :meth:`DetectorModel.corrected_dose` inverts the model's cached response table (microseconds
    per frame), so the writer thread can call this for every frame.

    Parameters
    ----------
    model
        The camera's detector model (electrons).
    binning
        The camera's binning.
    """

    def __init__(self, model: DetectorModel, binning: int = 1) -> None:
        self.model = model
        self.binning = int(binning)
        self.model.corrected_dose(1.0, self.binning)  # build the table now, not at frame 1

    def __call__(self, observed_mean_e: float) -> float:
        """The dose (e-/px, >= 0) whose expected observed mean is ``observed_mean_e``."""
        return float(self.model.corrected_dose(observed_mean_e, self.binning))


def raw_mean_electrons(frame: np.ndarray, counts_per_electron: float) -> float | None:
    """A raw frame's mean electrons per pixel (counts mean over the conversion factor).

    ``None`` for a frame with NaN or infinite pixels: it is recorded as it came, its dose is
    unknown.
    """
    mean = float(np.mean(frame, dtype=np.float64)) / counts_per_electron
    return mean if math.isfinite(mean) else None


def _detector_model(detector: DetectorModel | str | None) -> DetectorModel | None:
    """The model the corrected dose uses: the one given, else the kind's default (or None)."""
    if isinstance(detector, DetectorModel):
        return detector
    return DEFAULT_MODELS.get(detector) if detector else None


def _accepts_detector(denoiser: FrameDenoiser | None) -> bool:
    """True when ``denoiser.denoise`` takes ``detector=`` and ``binning=`` keywords."""
    if denoiser is None:
        return False
    try:
        params = inspect.signature(denoiser.denoise).parameters
    except (TypeError, ValueError):
        return False
    return "detector" in params and "binning" in params


def result_problem(result: object, expected: tuple[int, ...]) -> str | None:
    """What is wrong with a denoiser's result for a stack of shape ``expected``, or None.

    A good result is an array of that shape (one frame out per frame in) of a floating-point
    dtype whose values, as float32 electrons per pixel, are all finite.
    """
    n = expected[0]
    if result is None:
        return f"it returned None for {n} frame(s)"
    try:
        out = np.asarray(result)
    except Exception as exc:  # an object numpy cannot read as an array
        return f"its result is not an array ({type(result).__name__}: {exc})"
    if out.shape != expected:
        if out.ndim == len(expected) and out.shape[1:] == expected[1:]:
            return f"it returned {out.shape[0]} frame(s) for {n}"
        return f"it returned shape {out.shape} for {n} frame(s) of shape {expected[1:]}"
    if out.dtype.kind != "f":
        return f"it returned dtype {out.dtype}, not floating-point electrons per pixel"
    with np.errstate(over="ignore"):  # float64 beyond float32's range is reported below
        finite = np.isfinite(out.astype(np.float32, copy=False))
    if not finite.all():
        bad = np.flatnonzero(~finite.reshape(n, -1).all(axis=1)).tolist()
        return f"it returned non-finite values (NaN or inf, as float32) in frame(s) {bad} of {n}"
    return None


def _frames_text(batch: list[_Pending]) -> str:
    first, last = batch[0].index, batch[-1].index
    return f"frame {first}" if first == last else f"frames {first}-{last}"


class FramePipeline:
    """Raw frames in from any one thread; raw + denoised frames out to a sink, in order.

    Parameters
    ----------
    sink
        Receives frames from the writer thread only (it need not be thread-safe). Created
        lazily by calling ``sink_factory(first_frame)`` when a factory is given instead.
    denoiser
        ``None`` records raw frames only.
    counts_per_electron
        The camera's conversion factor, passed to the denoiser.
    policy
        ``"skip"`` or ``"block"`` (see the module docstring).
    max_batch
        Most frames denoised in one call (batching helps on a GPU, not on a CPU).
    max_pending_frames
        Frames waiting for the denoiser before ``"block"`` makes the camera wait (``"skip"``
        marks the oldest of them skipped instead).
    max_pending_bytes
        Raw bytes waiting for the writer before :meth:`submit` blocks (and warns).
    max_unwritten_frames
        Raw frames handed over and not yet written before :meth:`submit` blocks: part of the
        crash-safety bound (see the module docstring).
    denoiser_timeout_s
        The longest one denoiser call (with the live-view callback) may take before the
        denoiser is abandoned as stuck; also the longest :meth:`close` waits for it.
    on_denoised
        Called as ``on_denoised(index, frame)`` from the denoiser thread with each denoised
        frame (for live display); its exceptions are recorded, never raised into the run.
    model_id
        Which model the denoiser is (``{"name": ..., "sha256": ...}``), recorded with every
        frame it denoises (``sink.write_denoised(..., model=model_id)``); ``None`` records none.
    pair_observer
        Shown consecutive denoised frames when it wants them (see :class:`PairObserver`).
    detector
        The camera's detector: a :class:`~tem_acq.detector.DetectorModel`, a kind
        (``"integrating"``: its default model) or ``None`` (unknown). Passed to a denoiser whose
        ``denoise`` takes ``detector=`` and ``binning=``, and used for each row's corrected dose.
    binning
        The camera's binning (the detector model's read noise and light spread depend on it).

    Every raw frame's record that is a :class:`~tem_acq.store.FrameRecord` gets, in the writer
    thread before it is appended, ``raw_mean_e_per_px`` (mean counts / counts per electron,
    when the record lacks it) and ``corrected_dose_e_per_px`` (the detector model inverted at
    that mean, when a detector is known): one mean and one table look-up per frame. The raw
    frame itself is never altered; a denoised frame's dose is its own mean (the store writer
    records it).
    """

    def __init__(
        self,
        sink: FrameSink | Callable[[np.ndarray], FrameSink],
        *,
        denoiser: FrameDenoiser | None = None,
        counts_per_electron: float = 1.0,
        policy: Policy = "skip",
        max_batch: int = 1,
        max_pending_frames: int = 8,
        max_pending_bytes: int = 1 << 30,
        max_unwritten_frames: int = MAX_UNWRITTEN_FRAMES,
        denoiser_timeout_s: float = DENOISER_TIMEOUT_S,
        on_denoised: Callable[[int, np.ndarray], None] | None = None,
        model_id: dict[str, str] | None = None,
        pair_observer: PairObserver | None = None,
        detector: DetectorModel | str | None = None,
        binning: int = 1,
    ) -> None:
        _check_settings(
            policy, max_batch, max_pending_frames, max_unwritten_frames, counts_per_electron
        )
        if not (isinstance(binning, int) and binning >= 1):
            raise ConfigError(f"binning must be a whole number >= 1, got {binning!r}")
        if not (denoiser_timeout_s > 0 and math.isfinite(denoiser_timeout_s)):
            raise ConfigError(f"denoiser_timeout_s must be > 0 s, got {denoiser_timeout_s}")
        self._sink: FrameSink | None = None
        self._sink_factory: Callable[[np.ndarray], FrameSink] | None = None
        if callable(getattr(sink, "append_raw", None)):
            self._sink = sink  # type: ignore[assignment]
        else:
            self._sink_factory = sink  # type: ignore[assignment]
        self._denoiser = denoiser
        self._counts_per_electron = float(counts_per_electron)
        self._policy: Policy = policy
        self._max_batch = max_batch
        self._max_pending_frames = max_pending_frames
        self._max_pending_bytes = max_pending_bytes
        self._max_unwritten = max_unwritten_frames
        self._timeout = float(denoiser_timeout_s)
        self._on_denoised = on_denoised
        self._model_id = model_id
        self._observer = pair_observer
        self._detector = detector
        self._binning = binning
        self._detector_keywords = _accepts_detector(denoiser)
        model = _detector_model(detector)
        self._dose_correction = None if model is None else DoseCorrection(model, binning)
        self._last_done: DenoisedFrame | None = None  # the denoiser thread's latest frame
        self._pending_swap: _Swap | None = None  # applied by the denoiser thread, between batches

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ops: deque[tuple[str, Any]] = deque()  # writer's work, in order
        self._pending_bytes = 0
        self._to_denoise: deque[_Pending] = deque()
        self._in_flight: list[_Pending] = []  # taken by the denoiser, not yet resolved
        self._busy_since: float | None = None  # when the denoiser's current call began
        self._next_index = 0
        self._closing = False
        self._close_deadline: float | None = None
        self._camera_can_wait = True
        self._warned_fallback = False
        self._warned_backpressure = False
        self._denoiser_error: BaseException | None = None
        self._skip_reason = SKIP_FAILED  # for frames arriving after denoising stopped
        self._writer_error: BaseException | None = None
        self._latencies: list[float] = []
        self._summary = PipelineSummary()
        self._started = time.perf_counter()
        self._writer = threading.Thread(target=self._write_loop, name="tem-acq writer", daemon=True)
        self._writer.start()
        self._denoise_thread: threading.Thread | None = None
        if denoiser is not None:
            self._denoise_thread = threading.Thread(
                target=self._denoise_loop, name="tem-acq denoiser", daemon=True
            )
            self._denoise_thread.start()

    # -- producer side --------------------------------------------------------------------

    def set_camera_can_wait(self, can_wait: bool) -> None:
        """Tell the pipeline whether the camera can wait (snaps) or not (a hardware sequence)."""
        with self._lock:
            self._camera_can_wait = can_wait
            self._changed.notify_all()

    def submit(self, frame: np.ndarray, record: Any) -> int:
        """Hand a raw frame over; returns its index. Blocks only to avoid losing frames."""
        with self._lock:
            if self._closing:
                raise AcquisitionError("the recorder is closed; frames can no longer be submitted")
            self._raise_writer_error()
            self._wait_for_writer(frame.nbytes)
            if self._closing:  # closed from another thread while this frame waited
                raise AcquisitionError("the recorder was closed while a frame was handed over")
            index = self._next_index
            self._next_index += 1
            self._ops.append(("raw", (index, frame, record)))
            self._pending_bytes += frame.nbytes
            # wake the writer now: under "block" the denoising queue below may wait, and the
            # raw frame must reach the disk meanwhile
            self._changed.notify_all()
            if self._denoiser is not None:
                self._check_denoiser_answers()
                if self._denoiser_error is None:
                    pending = _Pending(index, frame, time.perf_counter(), record)
                    self._enqueue_for_denoising(pending)
                else:
                    self._ops.append(("skip", (index, self._skip_reason)))
            self._changed.notify_all()
        return index

    def _raise_writer_error(self) -> None:
        if self._writer_error is not None:
            raise AcquisitionError(
                f"raw frames cannot be recorded: {self._writer_error}"
            ) from self._writer_error

    def _wait_for_writer(self, nbytes: int) -> None:
        """Wait (lock held) while the writer holds too many frames or bytes; warn for bytes."""
        waited = over_bytes = False
        while True:
            too_many = self._next_index - self._summary.frames >= self._max_unwritten
            too_big = self._pending_bytes > 0 and (
                self._pending_bytes + nbytes > self._max_pending_bytes
            )
            if not (too_many or too_big):
                break
            waited, over_bytes = True, over_bytes or too_big
            self._changed.wait(0.05)
            self._raise_writer_error()
        if waited:
            self._summary.backpressure_waits += 1
        if over_bytes and not self._warned_backpressure:
            self._warned_backpressure = True
            warnings.warn(
                "tem-acq: the store writer cannot keep up with the camera; the acquisition is "
                f"being slowed to keep every raw frame (more than "
                f"{self._max_pending_bytes / 2**20:.0f} MiB were waiting). Use a faster disk or "
                "fewer frames per second.",
                RuntimeWarning,
                stacklevel=3,
            )

    def _enqueue_for_denoising(self, item: _Pending) -> None:
        # called with the lock held
        self._to_denoise.append(item)
        if self._policy != "block":
            # only the newest frames will be shown: the oldest beyond the room are skipped now,
            # so that a denoiser that stops answering holds no more than that in memory
            while len(self._to_denoise) > max(self._max_pending_frames, self._max_batch):
                stale = self._to_denoise.popleft()
                self._ops.append(("skip", (stale.index, SKIP_BUSY)))
        self._summary.max_pending_frames = max(
            self._summary.max_pending_frames, len(self._to_denoise)
        )
        if self._policy != "block":
            return
        while len(self._to_denoise) > self._max_pending_frames and self._denoiser_error is None:
            if not self._camera_can_wait:
                if not self._warned_fallback:
                    self._warned_fallback = True
                    warnings.warn(
                        "tem-acq: policy 'block' cannot hold a hardware sequence (the core's "
                        "buffer would overflow); skipping frames the denoiser cannot keep up "
                        "with during sequences",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                oldest = self._to_denoise.popleft()
                self._ops.append(("skip", (oldest.index, SKIP_SEQUENCE)))
                return
            self._summary.backpressure_waits += 1
            self._changed.wait(0.05)
            self._check_denoiser_answers()

    # -- denoiser thread ------------------------------------------------------------------

    def _take_batch(self) -> list[_Pending] | None:
        with self._lock:
            while not self._to_denoise and not self._closing and self._denoiser_error is None:
                self._changed.wait()
            if not self._to_denoise or self._denoiser_error is not None:
                self._busy_since = None
                return None
            n = min(self._batch_size(), len(self._to_denoise))
            if self._policy == "skip":
                # newest frames first for live viewing; everything older is skipped
                batch = [self._to_denoise.pop() for _ in range(n)][::-1]
                while self._to_denoise:
                    stale = self._to_denoise.popleft()
                    self._ops.append(("skip", (stale.index, SKIP_BUSY)))
            else:
                batch = [self._to_denoise.popleft() for _ in range(n)]
            self._in_flight = batch
            self._busy_since = time.monotonic()
            self._changed.notify_all()
            return batch

    def _batch_size(self) -> int:
        """Frames for the next call (lock held): two at least when the observer wants a pair."""
        if self._observer is None or self._max_batch >= 2 or self._policy != "skip":
            return self._max_batch
        try:
            wants = self._observer.wants_pair()
        except Exception as exc:  # an observer must not stop denoising
            self._observer_failed(exc)
            return self._max_batch
        return 2 if wants else self._max_batch

    def _observer_failed(self, exc: BaseException) -> None:
        """Record (lock held) an observer's failure once, and stop showing it frames."""
        log.error("pair observer failed: %r; it is not called again", exc)
        self._observer = None
        self._ops.append(("error", f"live quality estimate failed: {exc!r}"))
        self._changed.notify_all()

    def _offer_pair(self, batch: list[_Pending], out: np.ndarray) -> None:
        """Show the observer the newest consecutive pair among the denoised frames, if any."""
        frames = [
            DenoisedFrame(p.index, p.frame, p.record, o) for p, o in zip(batch, out, strict=True)
        ]
        previous, self._last_done = self._last_done, frames[-1]
        observer = self._observer
        if observer is None:
            return
        chain = ([previous] if previous is not None else []) + frames
        pairs = [(a, b) for a, b in itertools.pairwise(chain) if b.index == a.index + 1]
        if not pairs:
            return
        try:
            if observer.wants_pair():
                observer.offer(*pairs[-1])
        except Exception as exc:  # an observer must not stop denoising
            with self._lock:
                self._observer_failed(exc)

    def _denoise_loop(self) -> None:
        assert self._denoiser is not None
        while (batch := self._take_batch()) is not None:
            model_id = self._apply_swap(batch[0].index)
            try:
                stack = np.stack([p.frame for p in batch])
                result = self._denoiser.denoise(stack, **self._denoise_keywords())
                problem = result_problem(result, stack.shape)
            except BaseException as exc:  # any failure: stop denoising, keep recording raw
                log.exception("denoiser failed; raw recording continues")
                self._stop_denoising(f"denoiser failed on {_frames_text(batch)}: {exc!r}", exc)
                return
            if problem is not None:
                message = f"denoiser failed on {_frames_text(batch)}: {problem}"
                log.error("%s; raw recording continues", message)
                self._stop_denoising(message, ValueError(message))
                return
            out = np.asarray(result).astype(np.float32, copy=False)
            if not self._deliver(batch, out, model_id):
                return  # abandoned as stuck meanwhile: the result is not used
            self._show(batch[-1].index, out[-1])
            self._offer_pair(batch, out)
            with self._lock:
                self._busy_since = None
                self._changed.notify_all()

    def _denoise_keywords(self) -> dict[str, Any]:
        """What the denoiser is told besides the frames: conversion, and the detector if it can."""
        keywords: dict[str, Any] = {"counts_per_electron": self._counts_per_electron}
        if self._detector_keywords and self._detector is not None:
            keywords.update(detector=self._detector, binning=self._binning)
        return keywords

    def _apply_swap(self, first_index: int) -> dict[str, str] | None:
        """Swap in a waiting model before the batch starting at ``first_index``; its model id.

        Runs in the denoiser thread, the only one that reads ``_denoiser`` for denoising or
        ``_model_id``, so a batch is denoised and recorded by one model from start to end.
        """
        with self._lock:
            swap, self._pending_swap = self._pending_swap, None
            if swap is not None:
                self._denoiser, self._model_id = swap.denoiser, swap.model_id
                self._detector_keywords = _accepts_detector(swap.denoiser)
                details = {**swap.details, "model": swap.model_id}
                self._ops.append(("model_swap", (first_index, details)))
                self._changed.notify_all()
            model_id = self._model_id
        if swap is not None and swap.on_applied is not None:
            try:
                swap.on_applied(first_index)
            except Exception as exc:  # a caller's bookkeeping must not stop denoising
                self.record_error(f"the model swap's callback failed: {exc!r}")
        return model_id

    def _deliver(
        self, batch: list[_Pending], out: np.ndarray, model_id: dict[str, str] | None
    ) -> bool:
        """Queue the batch's frames (denoised by ``model_id``); False if abandoned meanwhile."""
        done = time.perf_counter()
        with self._lock:
            if self._denoiser_error is not None:
                return False
            for p, denoised in zip(batch, out, strict=True):
                latency = (done - p.submitted) * 1000.0
                self._latencies.append(latency)
                self._ops.append(("denoised", (p.index, denoised, latency, model_id)))
            self._in_flight = []
            self._changed.notify_all()
        return True

    def _show(self, index: int, frame: np.ndarray) -> None:
        """Call the live-view callback; its failures are recorded, never raised."""
        if self._on_denoised is None:
            return
        try:
            self._on_denoised(index, frame)
        except Exception as exc:  # a display callback must not stop the run
            with self._lock:
                if self._denoiser_error is None:
                    self._ops.append(("error", f"live-view callback failed: {exc!r}"))
                    self._changed.notify_all()

    def _stop_denoising(self, message: str, cause: BaseException) -> None:
        with self._lock:
            self._stop_denoising_locked(message, cause, SKIP_FAILED)

    def _stop_denoising_locked(self, message: str, cause: BaseException, reason: str) -> None:
        """End denoising for good: record why, mark every frame not denoised skipped."""
        if self._denoiser_error is not None:
            return  # already stopped (a stuck call that came back later): nothing left to do
        self._denoiser_error = cause
        self._skip_reason = reason
        self._ops.append(("error", message))
        for p in [*self._in_flight, *self._to_denoise]:
            self._ops.append(("skip", (p.index, reason)))
        self._in_flight = []
        self._to_denoise.clear()
        self._busy_since = None
        self._changed.notify_all()

    def _check_denoiser_answers(self) -> None:
        """Abandon (lock held) a denoiser whose call has outlived its deadline."""
        if self._denoiser_error is not None:
            return
        now = time.monotonic()
        closing_late = self._close_deadline is not None and now >= self._close_deadline
        if self._busy_since is not None and now - self._busy_since >= self._timeout:
            what = (
                f"its call on {_frames_text(self._in_flight)}"
                if self._in_flight
                else "its live-view callback"
            )
            message = (
                f"denoiser stopped answering: {what}"
                f" has run {now - self._busy_since:.1f} s (denoiser_timeout_s="
                f"{self._timeout:g}); it was abandoned and raw recording continues"
            )
        elif closing_late and (self._busy_since is not None or self._to_denoise):
            message = (
                f"the denoiser had not finished {len(self._in_flight) + len(self._to_denoise)} "
                f"waiting frame(s) {self._timeout:g} s (denoiser_timeout_s) after close(); it "
                "was abandoned"
            )
        else:
            return
        log.error(message)
        self._stop_denoising_locked(message, TimeoutError(message), SKIP_STUCK)

    # -- writer thread --------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._ops and not (self._closing and self._denoiser_done()):
                    self._changed.wait()
                if not self._ops:
                    return
                kind, payload = self._ops.popleft()
            try:
                self._apply(kind, payload)
            except BaseException as exc:
                if kind != "raw":  # derived data: never a reason to stop recording raw frames
                    self._derived_write_failed(kind, payload, exc)
                    continue
                log.exception("writing to the store failed")
                with self._lock:
                    self._writer_error = exc
                    self._ops.clear()
                    self._pending_bytes = 0
                    self._changed.notify_all()
                return
            if kind == "raw":
                with self._lock:
                    self._summary.frames += 1
                    self._pending_bytes -= payload[1].nbytes
                    self._changed.notify_all()

    def _denoiser_done(self) -> bool:
        """True once the denoiser thread will queue no more work (finished, failed, abandoned)."""
        thread = self._denoise_thread
        return thread is None or not thread.is_alive() or self._denoiser_error is not None

    def _apply(self, kind: str, payload: Any) -> None:
        if kind == "raw":
            index, frame, record = payload
            if self._sink is None:
                assert self._sink_factory is not None
                self._sink = self._sink_factory(frame)
            written = self._sink.append_raw(frame, self._with_doses(record, frame))
            if written != index:
                raise AcquisitionError(f"store out of step: frame {index} written as {written}")
            return
        if self._sink is None:  # no raw frame yet: nothing to attach this to
            if kind == "error":
                self._summary.errors.append(payload)
            return
        if kind == "denoised":
            index, frame, latency, model_id = payload
            if model_id is None:
                self._sink.write_denoised(index, frame, latency)
            else:
                self._sink.write_denoised(index, frame, latency, model=model_id)
            self._summary.denoised += 1
        elif kind == "model_swap":
            index, details = payload
            self._sink.record_model_swap(index, details)
        elif kind == "quality":
            index, estimate = payload
            self._sink.record_quality(index, estimate)
        elif kind == "skip":
            index, reason = payload
            self._sink.mark_skipped(index, reason)
            self._summary.skipped += 1
        elif kind == "error":
            self._summary.errors.append(payload)
            self._sink.record_error(payload)

    def _with_doses(self, record: Any, frame: np.ndarray) -> Any:
        """``record`` with the frame's raw mean and corrected dose, when it is a store row."""
        if "corrected_dose_e_per_px" not in getattr(type(record), "model_fields", {}):
            return record
        raw_mean = record.raw_mean_e_per_px
        if raw_mean is None:
            raw_mean = raw_mean_electrons(frame, self._counts_per_electron)
            if raw_mean is None:
                return record
        update: dict[str, float] = {"raw_mean_e_per_px": raw_mean}
        if record.corrected_dose_e_per_px is None and self._dose_correction is not None:
            update["corrected_dose_e_per_px"] = self._dose_correction(raw_mean)
        return record.model_copy(update=update)

    def _derived_write_failed(self, kind: str, payload: Any, exc: BaseException) -> None:
        """A denoised frame, skip or error could not be stored: stop denoising, keep raw."""
        log.exception("storing %s failed; raw recording continues", kind)
        message = f"storing a {kind} entry failed: {exc!r}"
        with self._lock:
            if kind == "denoised":  # the frame still gets its row: skipped, and why
                self._ops.appendleft(("skip", (payload[0], SKIP_NOT_STORED)))
            if kind in ("quality", "model_swap"):  # not worth stopping the denoiser for
                self._ops.appendleft(("error", f"{message} (frame {payload[0]})"))
            elif kind == "error":
                self._summary.errors.append(f"{payload} (not stored: {exc!r})")
            elif self._denoiser_error is None:
                self._stop_denoising_locked(message, exc, SKIP_FAILED)
            else:
                self._summary.errors.append(message)
            self._changed.notify_all()

    # -- closing --------------------------------------------------------------------------

    def close(self, *, aborted: bool = False) -> PipelineSummary:
        """Finish every waiting frame, close the sink and return the run's summary.

        Waits at most ``denoiser_timeout_s`` for the denoiser (a denoiser still busy then is
        abandoned and recorded), then for the writer to write every raw frame.

        Parameters
        ----------
        aborted
            The acquisition was stopped early: frames still waiting for the denoiser are
            marked skipped at once (the call in progress may finish), and the sink is closed
            with ``close(aborted=True)``.

        Raises
        ------
        DenoiserFailedError
            If the denoiser failed during the run (after every raw frame was written).
        AcquisitionError
            If raw frames could not be written (disk full, store removed, ...).
        """
        with self._lock:
            already = self._closing
            if not already:
                self._closing = True
                self._close_deadline = time.monotonic() + self._timeout
                if aborted:
                    for p in self._to_denoise:
                        self._ops.append(("skip", (p.index, SKIP_ABORTED)))
                    self._to_denoise.clear()
            self._changed.notify_all()
        if not already:
            self._wait_for_denoiser()
            with self._lock:
                self._changed.notify_all()
            self._writer.join()
            self._finish(aborted)
        if self._writer_error is not None:
            raise AcquisitionError(
                f"recording failed after {self._summary.frames} raw frames were written "
                f"(they remain readable): {self._writer_error}"
            ) from self._writer_error
        if self._denoiser_error is not None:
            raise DenoiserFailedError(
                f"the denoiser failed during the acquisition ({self._denoiser_error!r}); all "
                f"{self._summary.frames} raw frames were recorded and the error is in the store"
            ) from self._denoiser_error
        return self._summary

    def _wait_for_denoiser(self) -> None:
        """Wait until the denoiser thread is done, or abandon it at its deadline."""
        thread = self._denoise_thread
        while thread is not None and thread.is_alive():
            with self._lock:
                self._check_denoiser_answers()
                if self._denoiser_error is not None:
                    return
                assert self._close_deadline is not None
                deadline = self._close_deadline
                if self._busy_since is not None:
                    deadline = min(deadline, self._busy_since + self._timeout)
            thread.join(max(deadline - time.monotonic(), 0.0) + 0.01)

    def _finish(self, aborted: bool) -> None:
        """The summary's statistics, then close the sink (best effort after a write error)."""
        self._summary.elapsed_s = time.perf_counter() - self._started
        if self._latencies:
            self._summary.latency_ms_p50 = float(np.percentile(self._latencies, 50))
            self._summary.latency_ms_p95 = float(np.percentile(self._latencies, 95))
        if self._sink is None:
            return
        try:
            if aborted:
                self._sink.close(aborted=True)  # type: ignore[call-arg]
            else:
                self._sink.close()
        except Exception as exc:
            # after a write error, closing is best effort: it keeps what it can
            if self._writer_error is None:
                self._writer_error = exc

    def record_error(self, message: str) -> None:
        """Record an error in the store from any thread (never stops recording)."""
        with self._lock:
            if self._writer.is_alive():
                self._ops.append(("error", str(message)))
                self._changed.notify_all()

    def swap_denoiser(
        self,
        denoiser: FrameDenoiser,
        model_id: dict[str, str] | None,
        *,
        details: dict[str, Any] | None = None,
        on_applied: Callable[[int], None] | None = None,
    ) -> None:
        """Denoise with ``denoiser`` from the next batch on (from any thread).

        The batch in progress finishes with the model it started with; the denoiser thread
        swaps between batches, so no batch sees two models. The frames the new model denoises
        record ``model_id``; the first of them gets a ``model_swap`` event in the store
        (``sink.record_model_swap(index, {**details, "model": model_id})``), and
        ``on_applied(index)`` is called from the denoiser thread. A second call before the
        first is applied replaces it; a pipeline that stopped denoising never applies it.

        Raises
        ------
        ConfigError
            If the pipeline was created without a denoiser (there is nothing to swap).
        """
        if self._denoise_thread is None:
            raise ConfigError("this pipeline records raw frames only: there is no model to swap")
        with self._lock:
            self._pending_swap = _Swap(denoiser, model_id, dict(details or {}), on_applied)
            self._changed.notify_all()

    def record_quality(self, index: int, estimate: dict[str, Any]) -> None:
        """Queue a quality estimate for the row of frame ``index`` (from any thread).

        The writer thread passes it to ``sink.record_quality(index, estimate)``; a failure
        there is recorded as an error, never stops recording. Ignored once the pipeline's
        writer has finished (after :meth:`close`).
        """
        with self._lock:
            if self._writer.is_alive():
                self._ops.append(("quality", (index, estimate)))
                self._changed.notify_all()

    @property
    def dose_correction(self) -> DoseCorrection | None:
        """The corrected dose of a raw mean (the camera's detector model), or None if unknown."""
        return self._dose_correction

    @property
    def pending_frames(self) -> int:
        """Raw frames handed over and not yet written."""
        with self._lock:
            return self._next_index - self._summary.frames

    @property
    def summary(self) -> PipelineSummary:
        """The summary so far (final after :meth:`close`)."""
        return self._summary


def _check_settings(
    policy: str,
    max_batch: int,
    max_pending_frames: int,
    max_unwritten_frames: int,
    counts_per_electron: float,
) -> None:
    """Refuse bad pipeline settings before any thread starts."""
    if policy not in ("skip", "block"):
        raise ConfigError(f"policy must be 'skip' or 'block', got {policy!r}")
    if max_batch < 1 or max_pending_frames < 1:
        raise ConfigError("max_batch and max_pending_frames must be at least 1")
    if max_unwritten_frames < 1:
        raise ConfigError(f"max_unwritten_frames must be at least 1, got {max_unwritten_frames}")
    if not counts_per_electron > 0:
        raise ConfigError(f"counts_per_electron must be > 0, got {counts_per_electron}")
