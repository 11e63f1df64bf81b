"""The hook a microscopist attaches to ``pycromanager.Acquisition``: record (and denoise) live.

::

    from pycromanager import Acquisition
    from acquisition_hooks import LiveRecorder

    with LiveRecorder("run1.ome.zarr", model="default", pixel_size_A=29.9,
                      counts_per_electron=44.0, exposure_ms=3.3) as live:
        with Acquisition(directory=None, show_display=False, **live.acquisition_kwargs()) as acq:
            acq.acquire(events)
    print(live.summary)

The image processor hands each raw frame to :class:`tem_acq.pipeline.FramePipeline` and returns
at once; a writer thread records raw frames (always, in order) and a denoiser thread denoises
them. A post-hardware hook tells the pipeline whether the camera is running a hardware sequence
(it cannot wait then). Only features both pycro-manager backends share are used: events may be
dicts or lists of dicts, metadata values may be strings or numbers, and a processor passing
frames on keeps the input's dtype (the Java backend requires it).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np

from tem_acq.detector import DetectorModel
from tem_acq.errors import AcquisitionError, ConfigError, StoreConfigError
from tem_acq.outputs import claim_output
from tem_acq.pipeline import (
    DENOISER_TIMEOUT_S,
    FrameDenoiser,
    FramePipeline,
    PipelineSummary,
    Policy,
    raw_mean_electrons,
)
from tem_acq.schema import as_model
from tem_acq.store import AcquisitionMetadata, AcquisitionWriter, FrameRecord

from .live_adapt import AdaptLive, LiveAdapt, check_out
from .live_quality import LiveQuality, LiveQualityOptions

PassThrough = Literal["none", "raw", "denoised"]

#: Metadata keys (either backend, our camera's tags first) for per-frame values.
_EXPOSURE_KEYS = ("TEM-Exposure-ms", "Exposure-ms", "Exposure")
_STAGE_X_KEYS = ("TEM-StageX-um", "XPositionUm")
_STAGE_Y_KEYS = ("TEM-StageY-um", "YPositionUm")
_STAGE_Z_KEYS = ("TEM-StageZ-um", "ZPositionUm")
_POSITION_NAME_KEYS = ("PositionName",)
_ELAPSED_KEYS = ("ElapsedTime-ms",)
#: When the core received the frame from the camera (local time, Micro-Manager's format).
_RECEIVED_KEYS = ("TimeReceivedByCore",)
#: A header exposure further than this from the first frame's own is corrected to it.
_EXPOSURE_TOLERANCE = 0.01
#: A first frame measuring more than this times the header's nominal dose (plus its Poisson
#: noise) received more electrons than the beam delivers: a wrong dose rate or conversion.
_DOSE_EXCESS = 1.2

#: After an abort, how long the adaptation process may take to stop before it is terminated.
ABORT_ADAPT_WAIT_S = 5.0

log = logging.getLogger(__name__)


class FrameRecorder:
    """Record every raw frame of an acquisition to an OME-Zarr store, and denoise: any stack.

    The one home of live recording: the store's header, the model, the pipeline (policies,
    quality estimate, adaptation), each frame's row (:meth:`process`), abort and close. A stack
    adapter derives from it and turns its stack's callbacks into :meth:`process` calls:
    :class:`LiveRecorder` for pycro-manager, :class:`acquisition_hooks.mda.MDARecorder` for
    pymmcore-plus' MDA engine; :attr:`BACKEND` names the stack in the store's protocol.

    Parameters
    ----------
    store
        Path of the new acquisition store (``*.ome.zarr``); refused if it exists, unless
        ``overwrite``.
    pixel_size_A, counts_per_electron, exposure_ms
        Pixel size at the specimen (angstrom, > 0), the camera's conversion factor (> 0) and
        the frames' exposure (ms): validated now, before the first frame.
    voltage_kV, camera, detector, dose_rate_e_per_px_per_s, description
        Further metadata for the store (``detector``: the detector's kind, ``"counting"`` or
        ``"integrating"``, if known).
    detector_model
        Your camera's calibration as a :class:`~tem_acq.detector.DetectorModel` (or its fields
        as a dict; electrons: read noise and offset in counts over the counts per electron),
        written into the store's header. Without it a known ``detector`` kind stands for its
        default model (:data:`tem_acq.detector.DEFAULT_MODELS`). The model and ``binning`` go to
        the denoiser (when it takes them) and give every row its ``corrected_dose_e_per_px``;
        each row also holds its raw mean (``raw_mean_e_per_px``).
    binning
        The camera's binning (``pixel_size_A`` is per binned pixel).
    model
        A model package name (``"default"``), a path, an already loaded denoiser, or ``None``
        to record raw frames only.
    device
        Where the model runs: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``.
    policy
        ``"skip"`` (live viewing: denoise the newest frame, skip the others when behind) or
        ``"block"`` (denoise every frame; the camera waits while snapping, never during a
        hardware sequence).
    max_batch
        Frames denoised per call; default 8 on a GPU, 1 on a CPU.
    pass_through
        What the processor returns to pycro-manager: ``"none"`` (nothing: pycro-manager keeps
        no copy, the store has the frames), ``"raw"`` (the raw frame) or ``"denoised"`` (the
        latest denoised frame as uint16 counts, ``counts = electrons * display_scale``, so the
        dtype equals the input's as the Java backend requires; the scale is in the store).
    on_denoised
        Called with ``(index, electrons)`` for every denoised frame (live display).
    frame_shape
        (height, width) of the frames to come, if known: the model is then warmed up now
        (path selection and the first run take seconds), not on the first frame, and a first
        frame of another shape is refused (:class:`~tem_acq.errors.AcquisitionError` naming
        both shapes: the store's layout is fixed by its first frame).
    overwrite
        Replace an existing store at ``store``.
    denoiser_timeout_s
        The longest one denoiser call may take: a denoiser that takes longer is abandoned
        (recorded in the store; raw recording goes on) and :meth:`close` waits at most this
        long for the denoiser.
    quality_every_s
        Seconds between live quality estimates (:mod:`acquisition_hooks.live_quality`: two
        consecutive raw frames and their denoised outputs, when the stage did not move,
        computed in the background and written into the rows of the store); ``None`` or 0
        turns it off. Only with a model. A :class:`LiveQualityOptions` sets more (the largest
        share of the time the estimate may take, the largest crop).
    adapt
        Adapt the model to the specimen during the acquisition (:mod:`acquisition_hooks.live_adapt`,
        off by default): an :class:`~acquisition_hooks.live_adapt.AdaptLive` or its fields as a
        dict (at least ``out``, a new folder beside the store). Raw frames of a still stage go to
        a separate training process; an adapted model is swapped in only when its paired gain
        over the model in use, on frames held back from its training, has its 95 % interval
        above 0 dB. Only with a model package.
    """

    #: What drives the camera, recorded as the store's ``protocol.backend``.
    BACKEND: ClassVar[str] = "python"

    def __init__(
        self,
        store: str | Path,
        *,
        pixel_size_A: float,
        counts_per_electron: float,
        exposure_ms: float,
        voltage_kV: float = 200.0,
        camera: str = "camera",
        detector: str | None = None,
        detector_model: DetectorModel | Mapping[str, Any] | None = None,
        binning: int = 1,
        dose_rate_e_per_px_per_s: float | None = None,
        description: str | None = None,
        simulated: bool = False,
        model: str | Path | FrameDenoiser | None = None,
        device: str = "auto",
        policy: Policy = "skip",
        max_batch: int | None = None,
        pass_through: PassThrough = "none",
        display_scale: float = 100.0,
        on_denoised: Callable[[int, np.ndarray], None] | None = None,
        frame_shape: tuple[int, int] | None = None,
        overwrite: bool = False,
        denoiser_timeout_s: float = DENOISER_TIMEOUT_S,
        quality_every_s: float | LiveQualityOptions | None = 5.0,
        adapt: AdaptLive | Mapping[str, Any] | None = None,
    ) -> None:
        _check_pass_through(pass_through, model)
        adapt_options = _adapt_options(adapt, model, store)
        quality = (
            quality_every_s
            if isinstance(quality_every_s, LiveQualityOptions)
            else as_model(
                LiveQualityOptions,
                {"every_s": quality_every_s},
                "invalid live quality settings",
                ConfigError,
            )
        )
        self._declared_shape = _check_frame_settings(max_batch, frame_shape)
        self.path = Path(store)
        self._overwrite = overwrite
        claim_output(
            self.path, overwrite=overwrite, parent_must_exist=True, inputs=_model_folder(model)
        )
        settings = {
            "instrument": {"voltage_kV": voltage_kV, "pixel_size_A": pixel_size_A},
            "camera": {
                "name": camera,
                "counts_per_electron": counts_per_electron,
                "detector_kind": detector,
                "detector_model": detector_model,
                "binning": binning,
            },
            "exposure_ms": exposure_ms,
            "dose_rate_e_per_px_per_s": dose_rate_e_per_px_per_s,
            "protocol": {
                "simulated": simulated,
                "backend": self.BACKEND,
                "settings": {
                    "policy": policy,
                    "pass_through": pass_through,
                    "display_scale": display_scale,
                    "quality_every_s": quality.every_s,
                },
            },
            "description": description,
        }
        # validated first: a typo fails before seconds go into loading a model
        self.metadata = as_model(
            AcquisitionMetadata, settings, "invalid acquisition settings", StoreConfigError
        )
        batch = self._load_model(model, device, max_batch, frame_shape)
        self._cpe = float(counts_per_electron)
        self._pass_through: PassThrough = pass_through
        self._display_scale = float(display_scale)
        self._user_on_denoised = on_denoised
        self._latest_lock = threading.Lock()
        self._latest_denoised: np.ndarray | None = None
        model_id = _model_id(self.metadata)
        self._quality = self._live_quality(quality, model_id)
        self._pipeline = FramePipeline(
            self._create_writer,
            denoiser=self._denoiser,
            counts_per_electron=counts_per_electron,
            policy=policy,
            max_batch=batch,
            denoiser_timeout_s=denoiser_timeout_s,
            on_denoised=self._remember_denoised,
            model_id=model_id,
            pair_observer=self._quality,
            detector=self.metadata.camera.detector_model or self.metadata.camera.detector_kind,
            binning=self.metadata.camera.binning,
        )
        self._adapt = self._live_adapt(adapt_options, model_id, device, batch, frame_shape)
        self._aborted = threading.Event()
        self._frame_shape: tuple[int, ...] | None = None
        self._frame_dtype: np.dtype | None = None
        self._closed_summary: PipelineSummary | None = None
        self._clock = _CameraClock()
        self._header_flags: list[str] = []  # recorded in the store once it exists
        self._header_warnings = self._check_pixel_size()

    def _load_model(
        self,
        model: str | Path | FrameDenoiser | None,
        device: str,
        max_batch: int | None,
        frame_shape: tuple[int, int] | None,
    ) -> int:
        """Load the denoiser, warm it up for ``frame_shape``, note its provenance; the batch."""
        self._denoiser, on_gpu = _load_denoiser(model, device)
        batch = max_batch or (8 if on_gpu else 1)
        warmup = getattr(self._denoiser, "warmup", None)
        if frame_shape is not None and warmup is not None:
            warmup((batch, *frame_shape))
        if _is_model_package(self._denoiser):
            from tem_acq.denoise.provenance import model_provenance

            # after warm-up, so the provenance names the execution path in use
            self.metadata = self.metadata.model_copy(
                update={"model": model_provenance(self._denoiser)}
            )
        return batch

    def _check_pixel_size(self) -> list[str]:
        """Warn once for this acquisition when its pixel size is outside the model's range.

        The warning line is logged, warned (:class:`~tem_acq.errors.PixelSizeWarning`) and
        recorded as a ``warning`` event in the store; recording goes on.
        """
        check = getattr(self._denoiser, "check_pixel_size", None)
        if check is None:
            return []
        note = check(self.metadata.instrument.pixel_size_A)
        return [] if note is None else [str(note)]

    def _live_quality(
        self, options: LiveQualityOptions, model_id: dict[str, str] | None
    ) -> LiveQuality | None:
        """The live quality estimate, when enabled and there is a model to judge."""
        if not options.enabled or self._denoiser is None:
            return None
        return LiveQuality(
            options,
            counts_per_electron=self.metadata.camera.counts_per_electron,
            pixel_size_A=self.metadata.instrument.pixel_size_A,
            model_id=model_id,
            write=lambda index, estimate: self._pipeline.record_quality(index, estimate),
            report_error=lambda message: self._pipeline.record_error(message),
        )

    def _live_adapt(
        self,
        options: AdaptLive | None,
        model_id: dict[str, str] | None,
        device: str,
        batch: int,
        frame_shape: tuple[int, int] | None,
    ) -> LiveAdapt | None:
        """The live adaptation, when asked for (the model is a package: checked first)."""
        if options is None:
            return None
        if not _is_model_package(self._denoiser) or model_id is None:
            raise ConfigError("adapt needs model= a model package (a name or a folder)")
        source = Path(self._denoiser.source)  # type: ignore[union-attr]

        def load(package: Path) -> Any:
            from tem_acq.denoise import load_model

            denoiser = load_model(package, device=device)
            shape = self._frame_shape or frame_shape
            if shape is not None:  # warmed up here, not in the denoiser's thread
                denoiser.warmup((batch, *shape))
            return denoiser

        def swap(denoiser: Any, model: dict[str, str], details: Any, applied: Any) -> None:
            self._pipeline.swap_denoiser(denoiser, model, details=details, on_applied=applied)

        return LiveAdapt(
            options,
            init=source,
            model_id=model_id,
            counts_per_electron=self._cpe,
            pixel_size_A=self.metadata.instrument.pixel_size_A,
            load=load,
            swap=swap,
            report_error=self._pipeline.record_error,
        )

    # -- frames in ------------------------------------------------------------------------

    def set_camera_can_wait(self, can_wait: bool) -> None:
        """Say whether the camera can wait for the denoiser (never in a live view).

        A hardware sequence or a live view cannot: under policy ``"block"`` frames are then
        skipped, never the camera held.
        """
        self._pipeline.set_camera_can_wait(can_wait)

    def process(self, image: np.ndarray, metadata: Mapping[str, Any]) -> Any:
        """Hand a raw frame and its metadata over at once; return what ``pass_through`` says.

        pycro-manager's image processor. ``metadata`` is Micro-Manager's: the row takes the
        camera's ``TEM-*`` tags, ``Exposure-ms``, ``XPositionUm``/``YPositionUm``/
        ``ZPositionUm``, ``PositionName``, ``Axes``, ``ElapsedTime-ms`` and
        ``TimeReceivedByCore`` where present (strings or numbers).
        """
        frame = np.asarray(image)
        if self._frame_shape is None:
            self._check_first_frame(frame)
            self._frame_shape, self._frame_dtype = frame.shape, frame.dtype
        elif frame.shape != self._frame_shape or frame.dtype != self._frame_dtype:
            # recorded now so the store tells the story; raised so the acquisition stops
            message = (
                f"frame shape/dtype changed mid-acquisition: expected {self._frame_shape} "
                f"{self._frame_dtype}, got {frame.shape} {frame.dtype}; frames recorded so far "
                f"are safe in {self.path}. Start a new store for the new camera settings."
            )
            raise AcquisitionError(message)
        record = self._frame_record(frame, metadata)
        self._pipeline.submit(frame, record)
        if self._adapt is not None:
            self._adapt.offer(frame, record)
        if self._pass_through == "raw":
            return image, metadata
        if self._pass_through == "denoised":
            return self._display_frame(frame), metadata
        return None

    # -- results --------------------------------------------------------------------------

    @property
    def latest_denoised(self) -> np.ndarray | None:
        """The most recent denoised frame in electrons per pixel (None before the first)."""
        with self._latest_lock:
            return self._latest_denoised

    @property
    def pending_frames(self) -> int:
        """Frames handed over but not yet written (a measure of how far behind the writer is)."""
        return self._pipeline.pending_frames

    @property
    def summary(self) -> PipelineSummary:
        """The run's summary (final once closed); ``quality``: the live estimate's, or None."""
        summary = self._closed_summary or self._pipeline.summary
        if self._quality is not None:
            summary.quality = self._quality.summary()
        if self._adapt is not None:
            summary.adaptation = self._adapt.summary()
        return summary

    @property
    def aborted(self) -> bool:
        """True once :meth:`abort` was called."""
        return self._aborted.is_set()

    def abort(self) -> None:
        """Stop recording early, keeping every frame taken; :meth:`close` marks it aborted.

        Safe from any thread and idempotent. Frames already taken keep arriving and are
        recorded; :meth:`close` then skips the frames still waiting for the denoiser and closes
        the store as ``aborted``: complete up to its last frame. Stack adapters also stop their
        acquisition here.
        """
        self._aborted.set()

    def close(self) -> PipelineSummary:
        """Write everything still waiting, close the store and return the summary.

        Returns within ``denoiser_timeout_s`` plus the time to write the raw frames still
        waiting, whatever the denoiser does.

        Raises
        ------
        tem_acq.pipeline.DenoiserFailedError
            If the model failed during the run; every raw frame is recorded regardless.
        """
        if self._closed_summary is None:
            if self.aborted:
                self._record_left_frames()
            if self._adapt is not None:  # no swap from now on; the process is stopped
                self._adapt.close(timeout_s=ABORT_ADAPT_WAIT_S if self.aborted else None)
            if self._quality is not None:  # its last estimate goes into the store first
                self._quality.close()
            self._closed_summary = self._pipeline.close(aborted=self.aborted)
        return self.summary

    def _record_left_frames(self) -> None:
        """Record the frames an aborted acquisition left behind (a stack adapter knows where)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
            return
        try:  # keep the original exception; the store still gets closed and counted
            self.close()
        except Exception:
            pass

    # -- internals ------------------------------------------------------------------------

    def _create_writer(self, first_frame: np.ndarray) -> AcquisitionWriter:
        if first_frame.ndim != 2:
            raise AcquisitionError(
                f"frames must be 2-D grey images, got shape {first_frame.shape}: record colour "
                "or multi-camera channels with one recorder per channel"
            )
        writer = AcquisitionWriter(
            self.path,
            self.metadata,
            (int(first_frame.shape[0]), int(first_frame.shape[1])),
            first_frame.dtype,
            overwrite=self._overwrite,
            denoised=self._denoiser is not None,
        )
        for flag in self._header_flags:
            writer.record_error(flag)
        for warning in self._header_warnings:
            writer.record_warning(warning)
        return writer

    def _frame_record(self, frame: np.ndarray, metadata: Mapping[str, Any]) -> FrameRecord:
        """The frame's row: its own exposure, clock, stage position and measured dose.

        At the first frame the header is checked against it (:meth:`_check_header`).
        """
        exposure = _number(metadata, _EXPOSURE_KEYS)
        extra: dict[str, Any] = {}
        axes = metadata.get("Axes")
        frame_id = metadata.get("TEM-FrameId")
        if frame_id is not None:
            extra["sim_frame_id"] = int(frame_id)
        timestamp, elapsed_ms = self._clock.read(metadata)
        raw_mean = raw_mean_electrons(frame, self._cpe)
        record = FrameRecord(
            timestamp=timestamp,
            elapsed_ms=elapsed_ms,
            exposure_ms=exposure if exposure and exposure > 0 else None,
            # measured from the frame: cheap, and right whatever the metadata says
            dose_e_per_px=None if raw_mean is None else max(raw_mean, 0.0),
            raw_mean_e_per_px=raw_mean,
            stage_x_um=_number(metadata, _STAGE_X_KEYS),
            stage_y_um=_number(metadata, _STAGE_Y_KEYS),
            stage_z_um=_number(metadata, _STAGE_Z_KEYS),
            position_name=_text(metadata, _POSITION_NAME_KEYS),
            axes=(
                {str(k): _jsonable(v) for k, v in axes.items()}
                if isinstance(axes, Mapping)
                else None
            ),
            extra=extra,
        )
        if self._clock.frames == 1:
            self._check_header(record, frame.size)
        return record

    def _check_header(self, first: FrameRecord, pixels: int) -> None:
        """Make the header agree with the first frame's own facts, or flag what cannot.

        The exposure the camera reports for the frame replaces a different one given to the
        recorder (the doses derived from it follow); the given value is kept in the protocol
        settings as ``stated_exposure_ms``. A measured dose (detector-corrected when the
        detector is known) beyond what the header's dose rate
        can deliver is flagged: recorded as an error in the store and logged.
        """
        meta = self.metadata
        stated = meta.exposure_ms
        if first.exposure_ms is not None and not _close(first.exposure_ms, stated):
            self.metadata = _corrected_exposure(meta, first.exposure_ms)
            log.warning(
                "tem-acq: the camera exposes %g ms per frame, not the %g ms given; the store's "
                "header records %g ms (stated_exposure_ms keeps %g)",
                first.exposure_ms, stated, first.exposure_ms, stated,
            )  # fmt: skip
        nominal, measured = self.metadata.dose_e_per_px, first.dose_e_per_px
        correction = self._pipeline.dose_correction
        if correction is not None and first.raw_mean_e_per_px is not None:
            # an integrating camera's offset and clip raise the raw mean at low dose
            measured = correction(first.raw_mean_e_per_px)
        if nominal is not None and measured is not None:
            limit = _DOSE_EXCESS * nominal + 5.0 * math.sqrt(3.0 * nominal / max(pixels, 1))
            if measured > limit:
                flag = (
                    f"frame 0 measures {measured:.3g} e-/px, more than the header's nominal "
                    f"{nominal:.3g} e-/px (dose rate x exposure) can deliver: check "
                    "dose_rate_e_per_px_per_s and counts_per_electron"
                )
                self._header_flags.append(flag)
                log.warning("tem-acq: %s", flag)

    def _check_first_frame(self, frame: np.ndarray) -> None:
        """Refuse a first frame whose shape is not the ``frame_shape`` given."""
        if self._declared_shape is not None and frame.shape != self._declared_shape:
            raise AcquisitionError(
                f"the first frame is {frame.shape} but frame_shape={self._declared_shape} was "
                f"given: nothing is recorded in {self.path}; set frame_shape to the camera's "
                "frame (ROI and binning) or leave it out"
            )

    def _remember_denoised(self, index: int, frame: np.ndarray) -> None:
        with self._latest_lock:
            self._latest_denoised = frame
        if self._user_on_denoised is not None:
            self._user_on_denoised(index, frame)

    def _display_frame(self, raw: np.ndarray) -> np.ndarray:
        latest = self.latest_denoised
        if latest is None or latest.shape != raw.shape:
            return raw  # nothing denoised yet: show the raw frame meanwhile
        info = np.iinfo(raw.dtype) if raw.dtype.kind in "ui" else None
        scaled = latest * self._display_scale
        if info is None:
            return scaled.astype(raw.dtype)
        return np.clip(np.rint(scaled), info.min, info.max).astype(raw.dtype)


class LiveRecorder(FrameRecorder):
    """Record every raw frame of a pycro-manager acquisition to an OME-Zarr store, and denoise.

    An image processor plus a post-hardware hook for ``pycromanager.Acquisition``
    (:meth:`acquisition_kwargs`); every parameter is :class:`FrameRecorder`'s.
    """

    BACKEND: ClassVar[str] = "pycromanager"

    # -- what pycro-manager calls ---------------------------------------------------------

    def post_hardware_hook(self, event: Any) -> Any:
        """Hardware hook: note whether the camera can wait for the denoiser.

        A list of events is a hardware sequence, during which it cannot. Returns the event
        unchanged, or ``None`` (which cancels it) once :meth:`abort` was called.
        """
        if self._aborted.is_set():
            return None
        self._pipeline.set_camera_can_wait(not isinstance(event, list))
        return event

    def acquisition_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that attach this recorder to ``pycromanager.Acquisition``."""
        return {"image_process_fn": self.process, "post_hardware_hook_fn": self.post_hardware_hook}

    def abort(self, acquisition: Any | None = None) -> None:
        """Stop the acquisition now, keeping every frame taken; :meth:`close` marks it aborted.

        Safe from any thread (a Ctrl-C handler's helper, a GUI button) and idempotent. The
        hardware hook cancels every event from now on; frames already taken keep arriving and
        are recorded. :meth:`close` (the ``with`` block's end) then skips the frames still
        waiting for the denoiser and closes the store as ``aborted``: complete up to its last
        frame.

        Parameters
        ----------
        acquisition
            The running ``pycromanager.Acquisition``: it is aborted too, which cancels its
            pending events and stops a hardware sequence in progress within milliseconds
            (pycro-manager stops the camera). Without it only later events are cancelled, and
            a sequence in progress runs to its end. Call this while the acquisition's ``with``
            block is open (its exit then returns at once).
        """
        super().abort()
        if acquisition is not None:
            from ._engine import abort_acquisition

            abort_acquisition(acquisition)

    def _record_left_frames(self) -> None:
        """Record the frames an aborted sequence left in the core's buffer (taken: kept)."""
        from ._engine import take_left_frames

        for image in take_left_frames():
            self.process(np.asarray(image.pix), image.tags or {})


class _CameraClock:
    """Each frame's time, from its own metadata rather than from when the recorder saw it.

    The timestamp is when the core received the frame (``TimeReceivedByCore``, local time),
    else now. ``elapsed_ms`` is the backend's ``ElapsedTime-ms`` while it advances from frame
    to frame; a backend that reports 0.0 for every frame (pymmcore-plus' Python backend does)
    gets the core's clock instead: the first frame's value plus the time since it.
    """

    def __init__(self) -> None:
        self.frames = 0
        self._first: tuple[datetime, float] | None = None
        self._last_elapsed: float | None = None

    def read(self, metadata: Mapping[str, Any]) -> tuple[datetime, float]:
        """The (timestamp, elapsed ms) of the next frame, given its metadata."""
        stamp = _received_time(metadata) or datetime.now(UTC)
        reported = _number(metadata, _ELAPSED_KEYS)
        if self._first is None:
            self._first = (stamp, 0.0 if reported is None else reported)
        first_stamp, first_elapsed = self._first
        own = first_elapsed + (stamp - first_stamp).total_seconds() * 1000.0
        advanced = reported is not None and (
            self._last_elapsed is None or reported > self._last_elapsed
        )
        elapsed = reported if advanced and reported is not None else own
        self._last_elapsed = elapsed
        self.frames += 1
        return stamp, elapsed


def _received_time(metadata: Mapping[str, Any]) -> datetime | None:
    """When the core received the frame, in UTC (a naive time is the machine's local time)."""
    for key in _RECEIVED_KEYS:
        value = metadata.get(key)
        if not isinstance(value, str) or not value.strip():
            continue
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            continue
        return (when.astimezone() if when.tzinfo is None else when).astimezone(UTC)
    return None


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= _EXPOSURE_TOLERANCE * max(abs(a), abs(b))


def _corrected_exposure(metadata: AcquisitionMetadata, exposure_ms: float) -> AcquisitionMetadata:
    """``metadata`` with the camera's exposure; the doses derived again from the dose rate."""
    fields = metadata.model_dump(mode="json", exclude={"dose_e_per_px", "dose_e_per_A2"})
    fields["exposure_ms"] = exposure_ms
    fields["protocol"]["settings"]["stated_exposure_ms"] = metadata.exposure_ms
    return as_model(AcquisitionMetadata, fields, "invalid acquisition settings", StoreConfigError)


def _adapt_options(
    adapt: AdaptLive | Mapping[str, Any] | None, model: object, store: str | Path
) -> AdaptLive | None:
    """The validated adaptation settings (None: off); refused without a model or in the store."""
    if adapt is None:
        return None
    fields = adapt.model_dump() if isinstance(adapt, AdaptLive) else dict(adapt)
    options = as_model(AdaptLive, fields, "invalid live adaptation settings", ConfigError)
    if model is None:
        raise ConfigError("adapt needs a model: give model= the package to adapt")
    check_out(options.out, Path(store))
    return options


def _check_pass_through(pass_through: str, model: object) -> None:
    """Refuse a ``pass_through`` that is unknown, or asks for denoised frames with no model."""
    if pass_through not in ("none", "raw", "denoised"):
        raise ConfigError(f"pass_through must be 'none', 'raw' or 'denoised', got {pass_through!r}")
    if pass_through == "denoised" and model is None:
        raise ConfigError("pass_through='denoised' needs a model")


def _check_frame_settings(
    max_batch: int | None, frame_shape: tuple[int, int] | None
) -> tuple[int, int] | None:
    """Refuse a ``max_batch`` below 1 or a ``frame_shape`` that is not two sizes >= 1.

    Returns the frame shape as a tuple of ints (None when not given).
    """
    if max_batch is not None and not (isinstance(max_batch, int) and max_batch >= 1):
        raise ConfigError(f"max_batch must be an integer >= 1 (or None), got {max_batch!r}")
    if frame_shape is None:
        return None
    shape = tuple(frame_shape)
    if len(shape) != 2 or not all(isinstance(n, int | np.integer) and n >= 1 for n in shape):
        raise ConfigError(
            f"frame_shape must be (height, width) in pixels, both >= 1, got {frame_shape!r}"
        )
    return (int(shape[0]), int(shape[1]))


def _model_folder(model: object) -> list[Path]:
    """The package folder a model name or path names (an input the store may not overlap)."""
    if not isinstance(model, str | Path):
        return []
    from tem_acq.denoise.package import package_folder

    return [package_folder(model)]


def _load_denoiser(
    model: str | Path | FrameDenoiser | None, device: str
) -> tuple[FrameDenoiser | None, bool]:
    """The denoiser to use, and whether it runs on a GPU."""
    if model is None:
        return None, False
    if isinstance(model, str | Path):
        from tem_acq.denoise import load_model

        model = load_model(model, device=device)
    on_gpu = getattr(getattr(model, "device", None), "type", "cpu") == "cuda"
    return model, on_gpu


def _model_id(metadata: AcquisitionMetadata) -> dict[str, str] | None:
    """The model each denoised row records: the package's name and sha256 (None: unknown)."""
    model = metadata.model
    return None if model is None else {"name": model.name, "sha256": model.sha256}


def _is_model_package(denoiser: object) -> bool:
    """True for a :class:`tem_acq.denoise.Denoiser` (whose provenance a store records)."""
    if denoiser is None:
        return False
    from tem_acq.denoise import Denoiser

    return isinstance(denoiser, Denoiser)


def _number(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> float | None:
    for key in keys:
        value = metadata.get(key)
        if value is None or value == "":
            continue
        try:
            number = float(value)  # the Java backend and sequences deliver strings
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            return number
    return None


def _text(metadata: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = metadata.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)
