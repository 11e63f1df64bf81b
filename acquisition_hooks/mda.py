"""The handler a microscopist passes to pymmcore-plus' MDA engine: record (and denoise) live.

::

    import useq
    from acquisition_hooks.mda import MDARecorder

    sequence = useq.MDASequence(time_plan={"interval": 0, "loops": 100},
                                grid_plan={"rows": 2, "columns": 2})
    with MDARecorder("run1.ome.zarr", core=core, model="default", pixel_size_A=29.9,
                     counts_per_electron=44.0, exposure_ms=3.3) as live:
        core.mda.run(sequence, output=live)
    print(live.summary)

pymmcore-plus calls a handler's ``sequenceStarted``, ``frameReady`` and ``sequenceFinished`` on
its relay thread, through an unbounded queue: a handler that blocks lets frames pile up there.
So these methods only put the call on this recorder's own queue and return; a feeder thread
hands each frame to :class:`~acquisition_hooks.recorder.FrameRecorder` (the same store, rows,
pipeline and policies as the pycro-manager recorder). The queue is bounded on the runner's
thread: two synchronous listeners on ``core.mda.events`` count the frames the camera delivers
(``frameReady``) and, before each event (``eventStarted``), make the runner wait while too
many of them are not yet handed over: ``max_queued_frames`` under ``policy="skip"``, any under
``"block"`` (the camera then waits for the denoiser, as pycro-manager's snaps do). A hardware
sequence cannot wait: its frames are denoised or skipped as they come (the pipeline falls back
to skipping), and if the store cannot keep up with one for ``max_queued_bytes`` the run is
cancelled and the error recorded, every frame delivered still written. No global engine is
replaced.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tem_acq.errors import AcquisitionError, ConfigError
from tem_acq.pipeline import PipelineSummary
from tem_acq.store import AcquisitionAxes

from .recorder import FrameRecorder

log = logging.getLogger(__name__)

#: Default of ``max_queued_frames``: frames delivered but not yet handed over before the runner
#: waits between events (``policy="skip"``).
MAX_QUEUED_FRAMES = 16
#: Default of ``max_queued_bytes``: beyond this a hardware sequence outruns the store and the
#: run is cancelled (as a core's circular buffer overflows under pycro-manager).
MAX_QUEUED_BYTES = 1 << 30

CameraTags = Callable[[], Mapping[str, Any]]


class MDARecorder(FrameRecorder):
    """Record every raw frame of a pymmcore-plus MDA run to an OME-Zarr store, and denoise.

    Pass it as ``output=`` to ``core.mda.run`` (or ``core.run_mda``). One recorder records one
    sequence into one store; the store's header records the useq sequence and its axes, each
    row the event's index, stage position (x, y, z, name), exposure and time.

    Parameters
    ----------
    store
        Path of the new acquisition store.
    core
        The ``CMMCorePlus`` (or ``UniMMCore``) whose ``core.mda`` runs the sequence: the
        recorder listens to its ``eventStarted`` and ``frameReady`` synchronously (to bound its
        queue) and cancels its run on :meth:`abort`.
    camera_tags
        Called on the runner's thread right after a snapped frame, for the camera's own tags
        of that frame (pymmcore-plus gives snaps none; hardware-sequenced frames carry theirs):
        e.g. ``scope.camera.last_frame_tags`` of the simulated microscope. ``None``: snapped
        rows take what the MDA metadata says.
    max_queued_frames
        Frames delivered and not yet handed to the pipeline before the runner waits between
        events (``policy="skip"``; ``"block"`` waits for every one).
    max_queued_bytes
        Bytes delivered and not yet handed over beyond which a run is cancelled (only a
        hardware sequence, which cannot wait, gets there).
    **settings
        Every other :class:`~acquisition_hooks.recorder.FrameRecorder` parameter
        (``pixel_size_A``, ``counts_per_electron``, ``exposure_ms``, ``model``, ``policy``, ...).
    """

    BACKEND: ClassVar[str] = "pymmcore-plus"

    def __init__(
        self,
        store: str | Path,
        *,
        core: Any,
        camera_tags: CameraTags | None = None,
        max_queued_frames: int = MAX_QUEUED_FRAMES,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        **settings: Any,
    ) -> None:
        if not (isinstance(max_queued_frames, int) and max_queued_frames >= 1):
            raise ConfigError(
                f"max_queued_frames must be an integer >= 1, got {max_queued_frames!r}"
            )
        if not (isinstance(max_queued_bytes, int) and max_queued_bytes >= 1):
            raise ConfigError(f"max_queued_bytes must be an integer >= 1, got {max_queued_bytes!r}")
        super().__init__(store, **settings)
        self._core = core
        self._camera_tags = camera_tags
        self._wait_limit = (
            1 if self.metadata.protocol.settings["policy"] == "block" else max_queued_frames
        )
        self._max_bytes = max_queued_bytes
        self._queue: deque[tuple[str, tuple[Any, ...]]] = deque()
        self._cond = threading.Condition()
        self._delivered = self._handed = self._queued_bytes = 0
        self._snap_tags: dict[int, dict[str, Any]] = {}
        self._sequence: Any = None  # the hardware sequence in progress: (its events, taken)
        self._sequence_taken = 0
        self._feeding = True
        self._feed_error: BaseException | None = None
        self._overflowed = False
        self._sequences = 0
        self._record_versions()
        events = core.mda.events
        events.eventStarted.connect(self._on_event_started)
        events.frameReady.connect(self._on_frame_taken)
        self._feeder = threading.Thread(target=self._feed, name="tem-acq mda feeder", daemon=True)
        self._feeder.start()

    @property
    def core(self) -> Any:
        """The core whose MDA runs are recorded."""
        return self._core

    # -- the handler protocol (pymmcore-plus' relay thread: never blocks) ------------------

    def sequenceStarted(self, sequence: Any, meta: Mapping[str, Any] | None = None) -> None:
        """The run began: its sequence goes into the store's header (before frame 0)."""
        self._put("start", sequence)

    def frameReady(self, image: np.ndarray, event: Any, meta: Mapping[str, Any]) -> None:
        """A frame: queued for the feeder thread, at once."""
        self._put("frame", image, event, meta)

    def sequenceFinished(self, sequence: Any) -> None:
        """The run ended (nothing to do: :meth:`close` closes the store)."""

    def _put(self, kind: str, *args: Any) -> None:
        with self._cond:
            self._queue.append((kind, args))
            self._cond.notify_all()

    # -- synchronous listeners (the runner's thread) --------------------------------------

    def _on_event_started(self, event: Any) -> None:
        """Before each event: cancel after an abort; else wait while the queue is too long."""
        if self.aborted:
            self._core.mda.cancel()
            return
        with self._cond:
            while (
                self._delivered - self._handed >= self._wait_limit
                and self._feeding
                and not self.aborted
            ):
                self._cond.wait(0.05)
            events = getattr(event, "events", None)
            self._sequence = list(events) if events else None
            self._sequence_taken = 0

    def _on_frame_taken(self, image: np.ndarray, event: Any, meta: Mapping[str, Any]) -> None:
        """Count the frame; note a snapped frame's camera tags; cancel on overflow."""
        tags = None
        if self._camera_tags is not None and not meta.get("camera_metadata"):
            tags = dict(self._camera_tags())
        with self._cond:
            if tags is not None:
                self._snap_tags[self._delivered] = tags
            self._delivered += 1
            self._sequence_taken += 1
            self._queued_bytes += int(getattr(image, "nbytes", 0))
            overflow = self._queued_bytes > self._max_bytes and not self._overflowed
            self._overflowed = self._overflowed or overflow
        if overflow:
            message = (
                f"the store could not keep up with the hardware sequence (over "
                f"{self._max_bytes / 2**20:.0f} MiB of frames waiting): the run was cancelled; "
                "every frame delivered is recorded"
            )
            log.warning("tem-acq: %s", message)
            self._pipeline.record_error(message)
            self._core.mda.cancel()

    # -- the feeder thread ----------------------------------------------------------------

    def _feed(self) -> None:
        delivered = 0
        while True:
            with self._cond:
                while not self._queue and self._feeding:
                    self._cond.wait()
                if not self._queue:
                    return
                kind, args = self._queue.popleft()
            if kind == "start":
                self._start(args[0])
                continue
            image, event, meta = args
            with self._cond:
                tags = self._snap_tags.pop(delivered, None)
            delivered += 1
            self._hand_over(np.asarray(image), frame_metadata(event, meta, tags), meta)
            with self._cond:
                self._handed += 1
                self._queued_bytes -= int(getattr(image, "nbytes", 0))
                self._cond.notify_all()

    def _hand_over(
        self, frame: np.ndarray, metadata: dict[str, Any], meta: Mapping[str, Any]
    ) -> None:
        """Give one frame to the pipeline; an error stops the run (and is raised at close)."""
        self._pipeline.set_camera_can_wait(not meta.get("hardware_triggered"))
        try:
            self.process(frame, metadata)
        except Exception as exc:  # a refused frame (shape change) or a failing store
            if self._feed_error is None:
                self._feed_error = exc
                self._pipeline.record_error(f"frames refused, the run was cancelled: {exc}")
                self._core.mda.cancel()

    def _start(self, sequence: Any) -> None:
        """Record the sequence's axes in the header (one sequence per recorder)."""
        self._sequences += 1
        if self._sequences > 1:
            self._hand_over_refusal(
                "one MDARecorder records one sequence: use a new recorder (and store) per "
                "core.mda.run"
            )
            return
        axes = sequence_axes(sequence)
        if axes is not None:
            self.metadata = self.metadata.model_copy(update={"axes": axes})

    def _hand_over_refusal(self, message: str) -> None:
        if self._feed_error is None:
            self._feed_error = AcquisitionError(message)
            self._pipeline.record_error(message)
        self._core.mda.cancel()

    # -- stopping ---------------------------------------------------------------------------

    def abort(self) -> None:
        """Cancel the MDA run now, keeping every frame taken; :meth:`close` marks it aborted.

        Safe from any thread and idempotent: pymmcore-plus stops at the next event, or stops
        a hardware sequence at its next frame; the frames the camera finished are recorded
        (those a stopped sequence left in the core's buffer at :meth:`close`).
        """
        super().abort()
        self._core.mda.cancel()
        with self._cond:
            self._cond.notify_all()

    def close(self) -> PipelineSummary:
        """Hand over every frame delivered, close the store and return the summary.

        Call it after ``core.mda.run`` returned (the ``with`` block's end): pymmcore-plus has
        then delivered every frame.

        Raises
        ------
        tem_acq.errors.AcquisitionError
            If frames were refused (a frame shape change, a second sequence); every frame
            before is recorded.
        tem_acq.pipeline.DenoiserFailedError
            If the model failed during the run; every raw frame is recorded regardless.
        """
        if self._feeding:
            with self._cond:
                self._feeding = False
                self._cond.notify_all()
            self._feeder.join()
            events = self._core.mda.events
            events.eventStarted.disconnect(self._on_event_started)
            events.frameReady.disconnect(self._on_frame_taken)
        summary = super().close()
        if self._feed_error is not None:
            raise AcquisitionError(str(self._feed_error)) from self._feed_error
        return summary

    def _record_left_frames(self) -> None:
        """Record the frames a cancelled hardware sequence left in the core's buffer."""
        core = self._core
        events = self._sequence or []
        taken = self._sequence_taken
        while core.getRemainingImageCount():
            image, tags = core.popNextImageAndMD()
            event = events[taken] if taken < len(events) else None
            taken += 1
            meta = {"camera_metadata": _tags(tags), "hardware_triggered": True}
            self.process(np.asarray(image), frame_metadata(event, meta, None))

    def _record_versions(self) -> None:
        """The store records the versions of pymmcore-plus and useq-schema."""
        other = dict(self.metadata.software.other)
        for dist in ("pymmcore-plus", "useq-schema"):
            try:
                other[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                continue
        software = self.metadata.software.model_copy(update={"other": other})
        self.metadata = self.metadata.model_copy(update={"software": software})


def sequence_axes(sequence: Any) -> AcquisitionAxes | None:
    """The store header's axes of a useq sequence: its non-empty axes and its JSON.

    ``None`` for an iterable of events without a sequence (the rows' axes then say it).
    """
    sizes = getattr(sequence, "sizes", None)
    if not sizes:
        return None
    named = {str(getattr(k, "value", k)): int(n) for k, n in sizes.items() if n}
    if not named:
        return None
    dump = getattr(sequence, "model_dump", None)
    as_json = None if dump is None else dump(mode="json", exclude_unset=True)
    try:
        source: str | None = f"useq-schema {importlib.metadata.version('useq-schema')}"
    except importlib.metadata.PackageNotFoundError:
        source = None
    return AcquisitionAxes(sizes=named, sequence=as_json, source=source)


def frame_metadata(
    event: Any, meta: Mapping[str, Any], tags: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One frame's metadata in Micro-Manager's keys, from the useq event and the MDA metadata.

    The camera's own tags (a hardware sequence's ``camera_metadata``, else ``tags``) come
    first; the MDA metadata adds the exposure, the stage position, the runner's time, and the
    event its axes and position name.
    """
    out: dict[str, Any] = dict(_tags(meta.get("camera_metadata")) or tags or {})
    position = meta.get("position") or {}
    for key, axis in (("XPositionUm", "x"), ("YPositionUm", "y"), ("ZPositionUm", "z")):
        if position.get(axis) is not None:
            out.setdefault(key, position[axis])
    if meta.get("exposure_ms") is not None:
        out.setdefault("Exposure-ms", meta["exposure_ms"])
    if meta.get("runner_time_ms") is not None:
        out.setdefault("ElapsedTime-ms", meta["runner_time_ms"])
    if event is not None:
        out["Axes"] = {str(k): int(v) for k, v in dict(event.index).items()}
        if getattr(event, "pos_name", None):
            out["PositionName"] = str(event.pos_name)
    return out


def _tags(tags: Any) -> dict[str, Any] | None:
    """A core's image metadata (a ``Metadata`` object or a mapping) as a dict; None if none."""
    if not tags:
        return None
    if isinstance(tags, Mapping):
        return dict(tags)
    keys = getattr(tags, "GetKeys", None)
    if keys is None:
        return None
    return {key: tags.GetSingleTag(key).GetValue() for key in keys()}


def time_series(frames: int, interval_s: float = 0.0) -> Any:
    """A useq sequence of ``frames`` time points ``interval_s`` apart (0: as fast as possible).

    With no interval pymmcore-plus runs it as one hardware sequence; with one, as snaps.
    """
    import useq

    return useq.MDASequence(time_plan={"interval": interval_s, "loops": frames})


def run_sequence(
    sequence: Any, recorder: MDARecorder, stop: threading.Event | None = None
) -> None:
    """Run ``sequence`` on the recorder's core, recorded by it (``core.mda.run``, this thread).

    Setting ``stop`` (Ctrl-C: :func:`acquisition_hooks.commands.ctrl_c_stops`) aborts the run
    through :meth:`MDARecorder.abort` within milliseconds.
    """
    from ._engine import abort_when

    with abort_when(stop, recorder.abort):
        if stop is None or not stop.is_set():
            recorder.core.mda.run(sequence, output=recorder)
