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

A denoiser that fails (out of GPU memory, an exception) stops denoising but never raw
recording: the error goes into the store and :meth:`FramePipeline.close` raises
:class:`DenoiserFailedError` after every raw frame is safely written.

Raw frames wait in memory only while the writer is behind; past ``max_pending_bytes``,
:meth:`submit` blocks (slowing the acquisition rather than dropping frames) and warns, so the
acquisition is told instead of silently losing data. Nothing here imports pycro-manager.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from tem_acq.errors import AcquisitionError, ConfigError, DenoiserFailedError

log = logging.getLogger(__name__)

Policy = Literal["skip", "block"]


class FrameSink(Protocol):
    """Where the pipeline's writer thread puts frames (an acquisition store writer)."""

    def append_raw(self, frame: np.ndarray, record: Any) -> int:
        """Append a raw frame with its per-frame record; return its index."""
        ...

    def write_denoised(self, index: int, frame: np.ndarray, latency_ms: float) -> None:
        """Store the denoised frame of raw frame ``index``."""
        ...

    def mark_skipped(self, index: int, reason: str) -> None:
        """Record that raw frame ``index`` was not denoised, and why."""
        ...

    def record_error(self, message: str) -> None:
        """Record an error in the store."""
        ...

    def close(self) -> None:
        """Flush everything and mark the store complete."""
        ...


class FrameDenoiser(Protocol):
    """What the pipeline needs of a denoiser (:class:`tem_acq.denoise.Denoiser` fits)."""

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
        }


@dataclass
class _Pending:
    index: int
    frame: np.ndarray
    submitted: float


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
        Frames waiting for the denoiser before ``"block"`` makes the camera wait.
    max_pending_bytes
        Raw bytes waiting for the writer before :meth:`submit` blocks.
    on_denoised
        Called as ``on_denoised(index, frame)`` from the denoiser thread with each denoised
        frame (for live display); its exceptions are recorded, never raised into the run.
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
        on_denoised: Callable[[int, np.ndarray], None] | None = None,
    ) -> None:
        if policy not in ("skip", "block"):
            raise ConfigError(f"policy must be 'skip' or 'block', got {policy!r}")
        if max_batch < 1 or max_pending_frames < 1:
            raise ConfigError("max_batch and max_pending_frames must be at least 1")
        if not counts_per_electron > 0:
            raise ConfigError(f"counts_per_electron must be > 0, got {counts_per_electron}")
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
        self._on_denoised = on_denoised

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._ops: deque[tuple[str, Any]] = deque()  # writer's work, in order
        self._pending_bytes = 0
        self._to_denoise: deque[_Pending] = deque()
        self._next_index = 0
        self._closing = False
        self._camera_can_wait = True
        self._warned_fallback = False
        self._warned_backpressure = False
        self._denoiser_error: BaseException | None = None
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
            if self._writer_error is not None:
                raise AcquisitionError(
                    f"raw frames cannot be recorded: {self._writer_error}"
                ) from self._writer_error
            waited = False
            while self._pending_bytes + frame.nbytes > self._max_pending_bytes and self._ops:
                waited = True
                self._changed.wait(0.05)
                if self._writer_error is not None:
                    raise AcquisitionError(
                        f"raw frames cannot be recorded: {self._writer_error}"
                    ) from self._writer_error
            if waited:
                self._summary.backpressure_waits += 1
                if not self._warned_backpressure:
                    self._warned_backpressure = True
                    warnings.warn(
                        "tem-acq: the store writer cannot keep up with the camera; the "
                        f"acquisition is being slowed to keep every raw frame (more than "
                        f"{self._max_pending_bytes / 2**20:.0f} MiB were waiting). Use a faster "
                        "disk or fewer frames per second.",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            index = self._next_index
            self._next_index += 1
            self._ops.append(("raw", (index, frame, record)))
            self._pending_bytes += frame.nbytes
            # wake the writer now: under "block" the denoising queue below may wait, and the
            # raw frame must reach the disk meanwhile
            self._changed.notify_all()
            if self._denoiser is not None:
                if self._denoiser_error is None:
                    self._enqueue_for_denoising(_Pending(index, frame, time.perf_counter()))
                else:
                    self._ops.append(("skip", (index, "denoiser failed")))
            self._changed.notify_all()
        return index

    def _enqueue_for_denoising(self, item: _Pending) -> None:
        # called with the lock held
        self._to_denoise.append(item)
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
                self._ops.append(("skip", (oldest.index, "denoiser busy during a sequence")))
                return
            self._summary.backpressure_waits += 1
            self._changed.wait(0.05)

    # -- denoiser thread ------------------------------------------------------------------

    def _take_batch(self) -> list[_Pending] | None:
        with self._lock:
            while not self._to_denoise and not self._closing:
                self._changed.wait()
            if not self._to_denoise:
                return None
            n = min(self._max_batch, len(self._to_denoise))
            if self._policy == "skip":
                # newest frames first for live viewing; everything older is skipped
                batch = [self._to_denoise.pop() for _ in range(n)][::-1]
                while self._to_denoise:
                    stale = self._to_denoise.popleft()
                    self._ops.append(("skip", (stale.index, "denoiser busy: newer frame shown")))
            else:
                batch = [self._to_denoise.popleft() for _ in range(n)]
            self._changed.notify_all()
            return batch

    def _denoise_loop(self) -> None:
        assert self._denoiser is not None
        while (batch := self._take_batch()) is not None:
            try:
                stack = np.stack([p.frame for p in batch])
                out = self._denoiser.denoise(stack, counts_per_electron=self._counts_per_electron)
            except BaseException as exc:  # any failure: stop denoising, keep recording raw
                self._fail_denoiser(exc, batch)
                return
            done = time.perf_counter()
            with self._lock:
                for p, d in zip(batch, out, strict=True):
                    latency = (done - p.submitted) * 1000.0
                    self._latencies.append(latency)
                    self._ops.append(("denoised", (p.index, d, latency)))
                self._changed.notify_all()
            if self._on_denoised is not None:
                try:
                    self._on_denoised(batch[-1].index, out[-1])
                except Exception as exc:  # a display callback must not stop the run
                    with self._lock:
                        self._ops.append(("error", f"live-view callback failed: {exc!r}"))
                        self._changed.notify_all()

    def _fail_denoiser(self, exc: BaseException, batch: list[_Pending]) -> None:
        log.exception("denoiser failed; raw recording continues")
        with self._lock:
            self._denoiser_error = exc
            self._ops.append(("error", f"denoiser failed: {exc!r}"))
            for p in [*batch, *self._to_denoise]:
                self._ops.append(("skip", (p.index, "denoiser failed")))
            self._to_denoise.clear()
            self._changed.notify_all()

    # -- writer thread --------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._lock:
                while not self._ops and not (self._closing and self._workers_done()):
                    self._changed.wait()
                if not self._ops:
                    return
                kind, payload = self._ops.popleft()
            try:
                self._apply(kind, payload)
            except BaseException as exc:
                log.exception("writing to the store failed")
                with self._lock:
                    self._writer_error = exc
                    self._ops.clear()
                    self._pending_bytes = 0
                    self._changed.notify_all()
                return
            if kind == "raw":
                with self._lock:
                    self._pending_bytes -= payload[1].nbytes
                    self._changed.notify_all()

    def _workers_done(self) -> bool:
        return self._denoise_thread is None or not self._denoise_thread.is_alive()

    def _apply(self, kind: str, payload: Any) -> None:
        if kind == "raw":
            index, frame, record = payload
            if self._sink is None:
                assert self._sink_factory is not None
                self._sink = self._sink_factory(frame)
            written = self._sink.append_raw(frame, record)
            if written != index:
                raise AcquisitionError(f"store out of step: frame {index} written as {written}")
            self._summary.frames += 1
            return
        if self._sink is None:  # no raw frame yet: nothing to attach this to
            if kind == "error":
                self._summary.errors.append(payload)
            return
        if kind == "denoised":
            index, frame, latency = payload
            self._sink.write_denoised(index, frame, latency)
            self._summary.denoised += 1
        elif kind == "skip":
            index, reason = payload
            self._sink.mark_skipped(index, reason)
            self._summary.skipped += 1
        elif kind == "error":
            self._summary.errors.append(payload)
            self._sink.record_error(payload)

    # -- closing --------------------------------------------------------------------------

    def close(self) -> PipelineSummary:
        """Finish every waiting frame, close the sink and return the run's summary.

        Raises
        ------
        DenoiserFailedError
            If the denoiser failed during the run (after every raw frame was written).
        AcquisitionError
            If raw frames could not be written (disk full, store removed, ...).
        """
        with self._lock:
            already = self._closing
            self._closing = True
            self._changed.notify_all()
        if not already:
            if self._denoise_thread is not None:
                self._denoise_thread.join()
            with self._lock:
                self._changed.notify_all()
            self._writer.join()
            self._summary.elapsed_s = time.perf_counter() - self._started
            if self._latencies:
                self._summary.latency_ms_p50 = float(np.percentile(self._latencies, 50))
                self._summary.latency_ms_p95 = float(np.percentile(self._latencies, 95))
            if self._sink is not None:
                try:
                    self._sink.close()
                except Exception as exc:
                    # after a write error, closing is best effort: it keeps what it can
                    if self._writer_error is None:
                        self._writer_error = exc
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

    @property
    def pending_frames(self) -> int:
        """Raw frames handed over and not yet written."""
        with self._lock:
            return self._next_index - self._summary.frames

    @property
    def summary(self) -> PipelineSummary:
        """The summary so far (final after :meth:`close`)."""
        return self._summary
