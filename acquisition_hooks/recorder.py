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

import math
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tem_acq.errors import AcquisitionError, ConfigError, StoreConfigError
from tem_acq.outputs import claim_output
from tem_acq.pipeline import FrameDenoiser, FramePipeline, PipelineSummary, Policy
from tem_acq.schema import as_model
from tem_acq.store import AcquisitionMetadata, AcquisitionWriter, FrameRecord

PassThrough = Literal["none", "raw", "denoised"]

#: Metadata keys (either backend, our camera's tags first) for per-frame values.
_EXPOSURE_KEYS = ("TEM-Exposure-ms", "Exposure-ms", "Exposure")
_STAGE_X_KEYS = ("TEM-StageX-um", "XPositionUm")
_STAGE_Y_KEYS = ("TEM-StageY-um", "YPositionUm")
_ELAPSED_KEYS = ("ElapsedTime-ms",)


class LiveRecorder:
    """Record every raw frame of a pycro-manager acquisition to an OME-Zarr store, and denoise.

    Parameters
    ----------
    store
        Path of the new acquisition store (``*.ome.zarr``); refused if it exists, unless
        ``overwrite``.
    pixel_size_A, counts_per_electron, exposure_ms
        Pixel size at the specimen (angstrom, > 0), the camera's conversion factor (> 0) and
        the frames' exposure (ms): validated now, before the first frame.
    voltage_kV, camera, detector, dose_rate_e_per_px_per_s, description
        Further metadata for the store.
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
    """

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
    ) -> None:
        _check_pass_through(pass_through, model)
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
            },
            "exposure_ms": exposure_ms,
            "dose_rate_e_per_px_per_s": dose_rate_e_per_px_per_s,
            "protocol": {
                "simulated": simulated,
                "backend": "pycromanager",
                "settings": {
                    "policy": policy,
                    "pass_through": pass_through,
                    "display_scale": display_scale,
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
        self._pipeline = FramePipeline(
            self._create_writer,
            denoiser=self._denoiser,
            counts_per_electron=counts_per_electron,
            policy=policy,
            max_batch=batch,
            on_denoised=self._remember_denoised,
        )
        self._frame_shape: tuple[int, ...] | None = None
        self._frame_dtype: np.dtype | None = None
        self._closed_summary: PipelineSummary | None = None

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

    # -- what pycro-manager calls ---------------------------------------------------------

    def process(self, image: np.ndarray, metadata: Mapping[str, Any]) -> Any:
        """Image processor: hand the raw frame over at once; return what ``pass_through`` says."""
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
        self._pipeline.submit(frame, self._frame_record(frame, metadata))
        if self._pass_through == "raw":
            return image, metadata
        if self._pass_through == "denoised":
            return self._display_frame(frame), metadata
        return None

    def post_hardware_hook(self, event: Any) -> Any:
        """Hardware hook: note whether the camera can wait for the denoiser.

        A list of events is a hardware sequence, during which it cannot. Returns the event
        unchanged (``None`` would cancel it).
        """
        self._pipeline.set_camera_can_wait(not isinstance(event, list))
        return event

    def acquisition_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that attach this recorder to ``pycromanager.Acquisition``."""
        return {"image_process_fn": self.process, "post_hardware_hook_fn": self.post_hardware_hook}

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
        """The run's summary (final once closed)."""
        return self._closed_summary or self._pipeline.summary

    def close(self) -> PipelineSummary:
        """Write everything still waiting, close the store and return the summary.

        Raises
        ------
        tem_acq.pipeline.DenoiserFailedError
            If the model failed during the run; every raw frame is recorded regardless.
        """
        if self._closed_summary is None:
            self._closed_summary = self._pipeline.close()
        return self._closed_summary

    def __enter__(self) -> LiveRecorder:
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
        return AcquisitionWriter(
            self.path,
            self.metadata,
            (int(first_frame.shape[0]), int(first_frame.shape[1])),
            first_frame.dtype,
            overwrite=self._overwrite,
            denoised=self._denoiser is not None,
        )

    def _frame_record(self, frame: np.ndarray, metadata: Mapping[str, Any]) -> FrameRecord:
        exposure = _number(metadata, _EXPOSURE_KEYS)
        extra: dict[str, Any] = {}
        axes = metadata.get("Axes")
        if isinstance(axes, Mapping):
            extra["axes"] = {str(k): _jsonable(v) for k, v in axes.items()}
        frame_id = metadata.get("TEM-FrameId")
        if frame_id is not None:
            extra["sim_frame_id"] = int(frame_id)
        return FrameRecord(
            elapsed_ms=_number(metadata, _ELAPSED_KEYS),
            exposure_ms=exposure if exposure and exposure > 0 else None,
            # measured from the frame: cheap, and right whatever the metadata says
            dose_e_per_px=_measured_dose(frame, self._cpe),
            stage_x_um=_number(metadata, _STAGE_X_KEYS),
            stage_y_um=_number(metadata, _STAGE_Y_KEYS),
            extra=extra,
        )

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


def _measured_dose(frame: np.ndarray, counts_per_electron: float) -> float | None:
    """The frame's mean electrons per pixel (>= 0), or None when it is not a number.

    A frame with NaN or infinite pixels is still recorded as it came; its dose is unknown.
    """
    dose = float(frame.mean()) / counts_per_electron
    return max(dose, 0.0) if math.isfinite(dose) else None


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


def _jsonable(value: Any) -> Any:
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)
