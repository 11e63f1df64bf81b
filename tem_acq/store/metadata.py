"""Versioned metadata of tem-acq stores (pydantic v2 models).

The store root's ``zarr.json`` holds one of these models under ``attributes["tem_acq"]``. Every
model forbids unknown fields, so a typo fails loudly instead of being stored and ignored.

``schema_version`` is ``"MAJOR.MINOR"``: a minor bump only adds optional fields; a major bump
changes meaning, and this version of tem-acq refuses to read a newer major version (a clear
:class:`~tem_acq.errors.StoreError` rather than a misreading).

``kind`` says what a store holds. Every kind's model starts with the same header
(:class:`StoreHeader`: schema version, kind, creation time, instrument, camera, dose rate,
software, protocol, description). ``"acquisition"`` (this module's :class:`AcquisitionMetadata`)
is a recorded acquisition of raw plus denoised frames; ``"pairs"`` (short plus long exposures for
training, :class:`tem_acq.store.pairs.PairsMetadata`) is the paired-collection store. Reading a
store's root (its kind, its version, its model) is :mod:`tem_acq.store.root`.
"""

from __future__ import annotations

import importlib.metadata
import math
import platform
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    AwareDatetime,
    ConfigDict,
    Field,
    FiniteFloat,
    JsonValue,
    field_validator,
    model_validator,
)

from tem_acq.detector import DetectorModel
from tem_acq.errors import StoreConfigError
from tem_acq.schema import StrictModel, as_model

#: The store schema this version of tem-acq writes. Readers accept the same major version.
#: 1.1: the model's ``normalisation`` is written ``normalization`` (the model card's spelling);
#: 1.0 stores still read. A 1.0 reader refuses a 1.1 store that records a model, naming the
#: new field and the newer schema (it accepts every other 1.1 store as it is).
#: 1.2: per-frame rows say which model denoised each frame (``model``: name and sha256, in the
#: ``denoised`` event) and may hold a live quality estimate (``quality``, a ``quality`` event
#: on the second frame of the pair); the header is unchanged, so older readers open 1.2 stores
#: (ignoring both), and 1.0/1.1 stores read with ``model`` taken from the header.
#: 1.3: the camera may state its detector model (``camera.detector_model``, electrons), and
#: rows hold the frame's observed mean (``raw_mean_e_per_px``) and its detector-corrected dose
#: (``corrected_dose_e_per_px``: the ``denoised`` event's ``dose_e_per_px`` when denoised);
#: all optional, so stores before 1.3 read with them ``None``.
#: 1.4: the header may state the axes of a multi-dimensional acquisition (``axes``: the size of
#: each axis and the sequence that planned them, e.g. a useq ``MDASequence``), and rows hold
#: the frame's place along them (``axes``, before 1.4 ``extra["axes"]``, which still reads)
#: and its stage position's name (``position_name``); frames stay in acquisition order along
#: t on disk, and the reader builds the multi-dimensional view from the rows.
SCHEMA_VERSION = "1.4"
SCHEMA_MAJOR = 1

#: Two derived quantities (dose per frame from dose rate and exposure, dose per area from dose
#: per pixel) may come from different sources (a calibration, a live reading); beyond this
#: relative difference they contradict each other and the metadata is refused.
_DOSE_TOLERANCE = 0.02


def _now() -> datetime:
    return datetime.now(UTC)


class _Model(StrictModel):
    # Store metadata also validates defaults (timestamps, versions filled in at write time).
    model_config = ConfigDict(validate_default=True)


class Instrument(_Model):
    """The microscope.

    Attributes
    ----------
    voltage_kV
        Accelerating voltage in kV.
    pixel_size_A
        Size of one (binned) camera pixel at the specimen, in angstrom. Must be > 0.
    magnification
        Indicated magnification, if known.
    name
        Microscope model or name, if known.
    defocus_nm, tilt_deg
        Objective defocus (nm) and stage alpha tilt (degrees), where known.
    """

    voltage_kV: float = Field(gt=0)
    pixel_size_A: float
    magnification: float | None = Field(default=None, gt=0)
    name: str | None = None
    defocus_nm: float | None = None
    tilt_deg: float | None = None

    @field_validator("pixel_size_A")
    @classmethod
    def _positive_pixel_size(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"pixel_size_A must be > 0 (got {value}). Micro-Manager reports 0 when no pixel "
                "size is configured: calibrate one (Devices > Pixel Size Calibration) or pass "
                "the pixel size in angstrom explicitly"
            )
        return value


class Camera(_Model):
    """The camera and how it was read out.

    Attributes
    ----------
    name
        Camera name or model (e.g. ``"Gatan OneView"``).
    counts_per_electron
        Conversion factor from camera counts to electrons (> 0).
    binning
        Binning factor (1 for none).
    detector_kind
        ``"integrating"``, ``"counting"`` or another word, if known.
    detector_model
        The detector's response in electrons (:class:`~tem_acq.detector.DetectorModel`: gain
        spread, light spread, read noise, offset, clipping), when the camera or the user states
        it (schema 1.3); ``None``: only ``detector_kind`` (or nothing) is known.
    sensor_shape_px
        Unbinned sensor size as (height, width) in pixels, if known.
    mode
        Readout mode as the camera names it, if any.
    """

    name: str = Field(min_length=1)
    counts_per_electron: float = Field(gt=0)
    binning: int = Field(default=1, ge=1)
    detector_kind: str | None = None
    detector_model: DetectorModel | None = None
    sensor_shape_px: tuple[int, int] | None = None
    mode: str | None = None

    @model_validator(mode="after")
    def _kind_of_the_model(self) -> Camera:
        model = self.detector_model
        if model is not None:
            if self.detector_kind is None:
                self.detector_kind = model.kind
            elif self.detector_kind != model.kind:
                raise ValueError(
                    f"detector_kind {self.detector_kind!r} disagrees with detector_model's kind "
                    f"{model.kind!r}: give one of them or make them agree"
                )
        return self

    @field_validator("sensor_shape_px")
    @classmethod
    def _positive_sensor(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) <= 0:
            raise ValueError(f"sensor_shape_px must be positive (got {value})")
        return value


class SoftwareVersions(_Model):
    """Versions of the software that wrote a store (``None``: not loaded in that process)."""

    tem_acq: str
    python: str
    numpy: str
    zarr: str
    pydantic: str
    torch: str | None = None
    pycromanager: str | None = None
    pymmcore: str | None = None
    pymmcore_plus: str | None = None
    other: dict[str, str] = Field(default_factory=dict)


class AcquisitionProtocol(_Model):
    """How the frames were acquired.

    Attributes
    ----------
    simulated
        True when the frames came from the simulator rather than a microscope.
    backend
        What drove the camera, e.g. ``"pycromanager"``, ``"pymmcore-plus"``, ``"simulator"``.
    events
        Summary of the acquisition events (counts, intervals, ...), free-form.
    settings
        Any other settings worth keeping, free-form.
    """

    simulated: bool = False
    backend: str | None = None
    events: dict[str, JsonValue] | None = None
    settings: dict[str, JsonValue] = Field(default_factory=dict)


class ModelProvenance(_Model):
    """Which denoising model produced the ``denoised`` frames.

    Attributes
    ----------
    name
        Model package name.
    sha256
        SHA-256 of the weights file, 64 lowercase hex digits.
    card_schema
        Schema version of the model card.
    architecture
        Architecture as the card names it.
    normalization
        How counts were turned into network input (the card's ``normalization``). Stores
        written before schema 1.1 spell it ``normalisation``; that name is still read, and
        still accepted as a keyword.
    card
        The rest of the card, if worth keeping.
    device, precision
        Where and how inference ran (``"cuda"``, ``"bf16"``, ...).
    """

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    card_schema: str | None = None
    architecture: str | None = None
    normalization: dict[str, JsonValue] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("normalization", "normalisation"),
    )
    card: dict[str, JsonValue] | None = None
    device: str | None = None
    precision: str | None = None


def collect_software_versions() -> SoftwareVersions:
    """Gather versions of the software in this process without importing anything heavy.

    torch, pycromanager and the Micro-Manager cores are reported only when this process has
    already imported them: importing torch here would cost seconds and prove nothing.
    """
    from tem_acq import __version__

    def loaded(module: str, dist: str) -> str | None:
        if module not in sys.modules:
            return None
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return str(getattr(sys.modules[module], "__version__", "unknown"))

    import numpy
    import pydantic
    import zarr

    return SoftwareVersions(
        tem_acq=__version__,
        python=platform.python_version(),
        numpy=numpy.__version__,
        zarr=zarr.__version__,
        pydantic=pydantic.VERSION,
        torch=loaded("torch", "torch"),
        pycromanager=loaded("pycromanager", "pycromanager"),
        pymmcore=loaded("pymmcore", "pymmcore"),
        pymmcore_plus=loaded("pymmcore_plus", "pymmcore-plus"),
    )


def _check_schema_version(value: str) -> str:
    major = schema_major(value)
    if major != SCHEMA_MAJOR:
        raise ValueError(
            f"schema_version {value!r} is not readable by this tem-acq (reads {SCHEMA_MAJOR}.x)"
        )
    return value


def schema_major(version: str) -> int:
    """The major number of a ``"MAJOR.MINOR"`` schema version (``ValueError`` if malformed)."""
    head, _, minor = version.partition(".")
    if not head.isdigit() or not minor.isdigit():
        raise ValueError(f"schema_version must look like '1.0' (got {version!r})")
    return int(head)


class StoreHeader(_Model):
    """The fields the metadata of every store kind starts with.

    Attributes
    ----------
    schema_version
        The store schema the store was written with (``"MAJOR.MINOR"``).
    kind
        What the store holds; each kind's model fixes it to its own name.
    created
        When the store was created (UTC).
    instrument, camera
        The microscope and camera.
    dose_rate_e_per_px_per_s
        Electrons per pixel per second at the specimen, if known.
    software
        Versions of the software that wrote the store (collected automatically).
    protocol
        How the frames were acquired.
    description
        Free text (specimen, purpose).
    """

    schema_version: str = SCHEMA_VERSION
    kind: str
    created: AwareDatetime = Field(default_factory=_now)
    instrument: Instrument
    camera: Camera
    dose_rate_e_per_px_per_s: float | None = Field(default=None, gt=0)
    software: SoftwareVersions = Field(default_factory=collect_software_versions)
    protocol: AcquisitionProtocol = Field(default_factory=AcquisitionProtocol)
    description: str | None = None

    @field_validator("schema_version")
    @classmethod
    def _readable_version(cls, value: str) -> str:
        return _check_schema_version(value)

    @property
    def frame_interval_s(self) -> float:
        """The time step of the store's images in seconds (OME-XML's ``TimeIncrement``)."""
        raise NotImplementedError(f"{type(self).__name__} defines no time step")


class AcquisitionAxes(_Model):
    """The axes a multi-dimensional acquisition's frames run along (schema 1.4).

    Frames are stored in acquisition order along t whatever the axes; each row's ``axes``
    places its frame, and :meth:`tem_acq.store.AcquisitionStore.hyperstack` builds the view by
    these axes from the rows.

    Attributes
    ----------
    sizes
        The planned size (>= 1) of each axis, in the order the sequence iterates them, named
        as the sequence names them (useq: ``t`` time, ``p`` position, ``g`` grid, ``c``
        channel, ``z`` focus).
    sequence
        The sequence that planned the frames, as JSON (a useq ``MDASequence``), if any.
    source
        What wrote ``sequence`` (e.g. ``"useq-schema 0.8"``).
    """

    sizes: dict[str, int] = Field(min_length=1)
    sequence: dict[str, JsonValue] | None = None
    source: str | None = None

    @field_validator("sizes")
    @classmethod
    def _positive_sizes(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {name: size for name, size in value.items() if size < 1 or not name.strip()}
        if bad:
            raise ValueError(f"axis sizes must be >= 1 and named (got {bad})")
        return value


class AcquisitionMetadata(StoreHeader):
    """Metadata of one recorded acquisition (``kind="acquisition"``): the header plus these.

    Dose may be given as a rate, per frame, or both (they must agree within 2 %); the missing one
    is derived from the exposure. Dose per square angstrom is derived from dose per pixel and the
    pixel size (if given, it must agree). All doses, the exposure and the pixel size must be > 0.

    Attributes
    ----------
    exposure_ms
        Exposure of one frame in milliseconds.
    frame_interval_ms
        Time between frame starts, if known (the time scale of the arrays; else the exposure).
    dose_e_per_px, dose_e_per_A2
        Electrons per pixel and per square angstrom in one frame.
    model
        Provenance of the denoising model, or ``None`` when frames were not denoised.
    axes
        The axes of a multi-dimensional acquisition (schema 1.4), or ``None`` for a plain
        series along t.
    """

    kind: Literal["acquisition"] = "acquisition"
    exposure_ms: float = Field(gt=0)
    frame_interval_ms: float | None = Field(default=None, gt=0)
    dose_e_per_px: float | None = Field(default=None, gt=0)
    dose_e_per_A2: float | None = Field(default=None, gt=0)
    model: ModelProvenance | None = None
    axes: AcquisitionAxes | None = None

    @model_validator(mode="after")
    def _derive_doses(self) -> AcquisitionMetadata:
        seconds = self.exposure_ms / 1000.0
        rate, per_px = self.dose_rate_e_per_px_per_s, self.dose_e_per_px
        if per_px is None and rate is not None:
            per_px = self.dose_e_per_px = rate * seconds
        elif rate is None and per_px is not None:
            self.dose_rate_e_per_px_per_s = per_px / seconds
        elif rate is not None and per_px is not None and not _agree(rate * seconds, per_px):
            raise ValueError(
                f"dose_e_per_px={per_px} disagrees with dose_rate_e_per_px_per_s={rate} times "
                f"exposure_ms={self.exposure_ms} (= {rate * seconds:.4g} e-/px): give one of them "
                "or make them agree"
            )
        if per_px is not None:
            per_area = per_px / self.instrument.pixel_size_A**2
            if self.dose_e_per_A2 is None:
                self.dose_e_per_A2 = per_area
            elif not _agree(self.dose_e_per_A2, per_area):
                raise ValueError(
                    f"dose_e_per_A2={self.dose_e_per_A2} disagrees with dose_e_per_px={per_px} "
                    f"over pixel_size_A={self.instrument.pixel_size_A} squared "
                    f"(= {per_area:.4g} e-/A^2): leave dose_e_per_A2 out to derive it"
                )
        elif self.dose_e_per_A2 is not None:
            # Per-area dose alone: derive per pixel so both are always present together.
            self.dose_e_per_px = self.dose_e_per_A2 * self.instrument.pixel_size_A**2
            self.dose_rate_e_per_px_per_s = self.dose_e_per_px / seconds
        return self

    @property
    def frame_interval_s(self) -> float:
        """Time scale of the arrays: the frame interval if known, else the exposure, in s."""
        return (self.frame_interval_ms or self.exposure_ms) / 1000.0


def _agree(a: float, b: float) -> bool:
    return abs(a - b) <= _DOSE_TOLERANCE * max(abs(a), abs(b))


class FrameRecord(_Model):
    """What is known about one frame when it is appended (one row of the per-frame table).

    Attributes
    ----------
    timestamp
        When the frame was acquired (UTC; defaults to when the record was made).
    elapsed_ms
        Milliseconds since the acquisition started, as the camera or engine reports it.
    exposure_ms
        This frame's exposure, if it differs from or confirms the acquisition's.
    dose_e_per_px
        Measured dose of this frame (>= 0: a blanked-beam frame has none).
    raw_mean_e_per_px
        The raw frame's observed mean in electrons (mean counts / counts per electron, not
        clipped at 0): with an integrating detector's offset and clipping at low dose it is not
        the dose (schema 1.3).
    corrected_dose_e_per_px
        The frame's detector-corrected dose (>= 0): the camera's detector model inverted at the
        raw mean (:meth:`~tem_acq.detector.DetectorModel.corrected_dose`). A denoised row reads
        the denoised frame's mean instead (schema 1.3).
    stage_x_um, stage_y_um, stage_z_um
        Stage position in micrometres.
    position_name
        The name of the stage position the frame was taken at (a position or grid plan's),
        schema 1.4.
    axes
        The frame's index along each axis of the acquisition (a useq event's ``index``,
        pycro-manager's event ``axes``), schema 1.4; before 1.4 it was ``extra["axes"]``.
    extra
        Anything else worth keeping (JSON values only).
    """

    timestamp: AwareDatetime = Field(default_factory=_now)
    elapsed_ms: float | None = None
    exposure_ms: float | None = Field(default=None, gt=0)
    dose_e_per_px: float | None = Field(default=None, ge=0)
    raw_mean_e_per_px: FiniteFloat | None = None
    corrected_dose_e_per_px: FiniteFloat | None = Field(default=None, ge=0)
    stage_x_um: float | None = None
    stage_y_um: float | None = None
    stage_z_um: float | None = None
    position_name: str | None = None
    axes: dict[str, JsonValue] | None = None
    extra: dict[str, JsonValue] = Field(default_factory=dict)


class FrameModel(_Model):
    """Which model denoised one frame (a row's ``model``): its package name and weights hash.

    Attributes
    ----------
    name
        Model package name.
    sha256
        SHA-256 of the package (:attr:`ModelProvenance.sha256`), 64 lowercase hex digits.
    """

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class FrameRow(FrameRecord):
    """One row of a stored per-frame table: the record plus what happened to the frame.

    Attributes
    ----------
    index
        Position of the frame along t.
    denoised
        True when a denoised frame is stored for it.
    denoise_latency_ms
        Time from hand-over to denoised result, when measured.
    skipped
        Why no denoised frame exists (e.g. the denoiser fell behind), or ``None``.
    model
        The model that denoised the frame (``None`` when not denoised). Stores before schema
        1.2 name one model for the whole run, in the header: their rows get that one.
    quality
        The live ground-truth-free quality estimate of the pair (previous frame, this frame),
        when one was computed for it: ``tem_acq.quality.PairEstimate.to_dict()`` plus
        ``"pair"`` (the two frame indices) and ``"denoised_by"`` (the model that denoised
        them: name and sha256).
    """

    index: int = Field(ge=0)
    denoised: bool = False
    denoise_latency_ms: float | None = None
    skipped: str | None = None
    model: FrameModel | None = None
    quality: dict[str, JsonValue] | None = None


def validate_metadata(data: AcquisitionMetadata | Mapping[str, Any]) -> AcquisitionMetadata:
    """Return ``data`` as validated :class:`AcquisitionMetadata`, or raise a settings error.

    Raises
    ------
    StoreConfigError
        If a field is missing or invalid (a :class:`~tem_acq.errors.ConfigError` and a
        :class:`~tem_acq.errors.StoreError`); the message lists every problem.
    """
    return as_model(AcquisitionMetadata, data, "invalid acquisition metadata", StoreConfigError)


__all__ = [
    "SCHEMA_VERSION",
    "AcquisitionAxes",
    "AcquisitionMetadata",
    "AcquisitionProtocol",
    "Camera",
    "FrameModel",
    "FrameRecord",
    "FrameRow",
    "Instrument",
    "ModelProvenance",
    "SoftwareVersions",
    "StoreHeader",
    "collect_software_versions",
    "schema_major",
    "validate_metadata",
]
