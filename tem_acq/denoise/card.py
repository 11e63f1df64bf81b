"""The model card (``card.json``): what a model package is, for what data, and how good it is.

The card is a versioned pydantic model that forbids unknown fields, so a typo or a card written
by a newer tem-acq is reported instead of silently ignored. ``schema_version`` is checked
before validation so that a card from a newer schema gets a clear "upgrade tem-acq" error.

Pixel sizes are in ångström (``pixel_size_A_range``), like the rest of tem-acq. Cards written
before that said ``pixel_size_nm_range`` (nanometres): they still read, converted on loading,
and are written back with the new field. The rename stays within schema 1: schema 1 is what
every tem-acq so far writes and reads, and this release still refuses a card that says 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from tem_acq.denoise.normalization import DoseNormalization
from tem_acq.detector import DEFAULT_MODELS, DetectorModel
from tem_acq.errors import ModelPackageError
from tem_acq.schema import StrictModel, as_model

#: The card schema this tem-acq writes and the newest it reads.
SCHEMA_VERSION = 1

#: What a denoised frame contains (the card states it so readers need not guess).
OUTPUT_MEANING = (
    "expected electrons per pixel at the input frame's dose (e-/px, float32): "
    "network output times the input's dose scale"
)

Sha256 = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
Detector = Literal["counting", "integrating"]


class TrainingData(StrictModel):
    """Provenance of the data a model was trained on.

    Attributes
    ----------
    description
        What the data is (simulated specimen kinds, real pairs, microscope...).
    sha256
        Hash of the training data set (e.g. of the pairs store's manifest), ``sha256:<hex>``.
    source
        Where it came from (store path, simulator version and seed, URL of a public set).
    n_pairs
        Number of (short, long) training pairs, when known.
    """

    description: str
    sha256: Sha256
    source: str = ""
    n_pairs: int | None = Field(default=None, ge=0)


class QualityRow(StrictModel):
    """One measured quality number, with the baselines measured beside it.

    Attributes
    ----------
    image_kind
        E.g. ``"low magnification"``, ``"atomic resolution, uncorrected"``.
    detector
        The detector model of the test frames.
    dose_e_per_px
        Dose of the test frames.
    metric
        E.g. ``"psnr_db"``, ``"ssim"``, ``"psnr_edge_db"``, ``"mean_error_pct"``.
    value
        The model's value.
    raw, gaussian
        The same metric for the raw input and the oracle Gaussian filter, when measured.
    wiener
        The same metric for the oracle Wiener filter (the best linear filter, knowing the
        clean image's spectrum), when measured.
    """

    image_kind: str
    detector: Detector
    dose_e_per_px: float = Field(gt=0)
    metric: str
    value: float
    raw: float | None = None
    gaussian: float | None = None
    wiener: float | None = None


class AdaptedInput(StrictModel):
    """One input a model was adapted on (``tem-acq adapt``).

    Attributes
    ----------
    source
        The store or frame file, as given.
    sha256
        ``sha256:<hex>`` over its raw frames as read (dtype, shape and bytes).
    frames
        How many raw frames it holds.
    """

    source: str
    sha256: Sha256
    frames: int = Field(ge=0)


class Adaptation(StrictModel):
    """How a model was adapted to a user's own frames (``tem-acq adapt``), and how it judged.

    Attributes
    ----------
    base_model
        The package it started from (name or folder, as given).
    base_package_hash
        That package's hash.
    inputs
        The stores or frame files it was adapted on.
    steps
        Optimiser steps done.
    wall_s
        Wall time of the whole adaptation (seconds).
    device
        Where it trained.
    before, after
        The ground-truth-free estimates on the held-out frames (``PairEstimate.to_dict()``)
        of the base model and of this one.
    gain_over_base_db
        This model's gain over the base model there: ``{"db": ..., "ci": [lo, hi]}``.
    improved
        Whether it improved beyond the interval (``rule``).
    rule
        The rule that decided ``improved``, in words.
    forced
        Written although it did not improve (``--force``).
    interrupted
        Stopped early by Ctrl-C (the best weights so far were judged).
    """

    base_model: str
    base_package_hash: Sha256
    inputs: list[AdaptedInput] = Field(min_length=1)
    steps: int = Field(ge=0)
    wall_s: float = Field(ge=0)
    device: str
    before: dict[str, Any]
    after: dict[str, Any]
    gain_over_base_db: dict[str, Any]
    improved: bool
    rule: str
    forced: bool = False
    interrupted: bool = False


class ModelCard(StrictModel):
    """Everything tem-acq and its users need to know about a model package.

    Attributes
    ----------
    schema_version
        Card schema version (:data:`SCHEMA_VERSION`).
    name
        Package name (what ``load_model(name)`` resolves).
    description
        Free text.
    architecture
        smp model class (only ``"Unet"`` is supported).
    encoder
        smp encoder name (``"resnet18"``, ``"tu-mobilenetv3_small_100"``...).
    architecture_kwargs
        The remaining smp constructor arguments (``encoder_depth``, ``decoder_channels``...),
        identical to those in ``config.json``.
    normalization
        The dose-aware normalisation the model was trained with.
    output
        What the denoised values mean.
    dose_range_e_per_px
        Range of input doses (e-/px per frame) it was trained for.
    detectors
        Detector kind(s) of the training data.
    detector_models
        Per detector kind, the detector model the (detector-aware) normalisation corrects for
        when the camera says only its kind; ``None`` (older cards) or a missing kind means
        :data:`tem_acq.detector.DEFAULT_MODELS`.
    pixel_size_A_range
        Range of pixel sizes (Å, at the specimen) of the training data; ``None`` when
        untrained or unknown. Read from ``pixel_size_nm_range`` (nm) in older cards.
    training_data
        Provenance of the training data (required when ``trained``).
    quality
        Measured quality table (empty when untrained).
    trained
        ``False`` for freshly initialised weights (outputs are meaningless).
    weights_dtype
        dtype of the floating-point weights on disk (loaded into float32 either way).
    adaptation
        How the model was adapted to a user's frames (``tem-acq adapt``), or ``None``.
    package_hash
        ``sha256:<hex>`` over ``config.json`` and ``model.safetensors`` (see
        :func:`tem_acq.denoise.package.compute_package_hash`); stores record it as provenance.
    tem_acq_version
        Version of tem-acq that wrote the card.
    """

    schema_version: Literal[1] = 1
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    architecture: Literal["Unet"] = "Unet"
    encoder: str
    architecture_kwargs: dict[str, Any] = Field(default_factory=dict)
    normalization: DoseNormalization = Field(default_factory=DoseNormalization)
    output: str = OUTPUT_MEANING
    dose_range_e_per_px: tuple[float, float]
    detectors: list[Detector] = Field(min_length=1)
    detector_models: dict[Detector, DetectorModel] | None = None
    pixel_size_A_range: tuple[float, float] | None = None
    training_data: TrainingData | None = None
    quality: list[QualityRow] = Field(default_factory=list)
    adaptation: Adaptation | None = None
    trained: bool
    weights_dtype: Literal["float32", "float16", "bfloat16"]
    package_hash: Sha256
    tem_acq_version: str = ""

    @model_validator(mode="before")
    @classmethod
    def _pixel_size_in_angstrom(cls, data: Any) -> Any:
        """Read an older card's ``pixel_size_nm_range`` as ``pixel_size_A_range`` (x 10)."""
        if not (isinstance(data, dict) and "pixel_size_nm_range" in data):
            return data
        data = dict(data)
        old = data.pop("pixel_size_nm_range")
        if "pixel_size_A_range" in data:
            raise ValueError(
                "the card has both pixel_size_nm_range (older cards) and pixel_size_A_range; "
                "keep pixel_size_A_range"
            )
        data["pixel_size_A_range"] = _nm_to_angstrom(old)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> ModelCard:
        lo, hi = self.dose_range_e_per_px
        if not 0 < lo <= hi:
            raise ValueError(f"dose_range_e_per_px must satisfy 0 < min <= max, got {lo}, {hi}")
        if self.pixel_size_A_range is not None:
            plo, phi = self.pixel_size_A_range
            if not 0 < plo <= phi:
                raise ValueError("pixel_size_A_range must satisfy 0 < min <= max")
        for kind, model in (self.detector_models or {}).items():
            if model.kind != kind:
                raise ValueError(f"detector_models[{kind!r}] is a {model.kind} detector model")
        if not self.trained and self.quality:
            raise ValueError("an untrained model cannot have a quality table")
        if self.trained and self.training_data is None:
            raise ValueError("a trained model needs training_data (provenance and sha256)")
        return self

    def detector_model(self, kind: str) -> DetectorModel:
        """The detector model this card corrects for on a camera of detector ``kind``."""
        if kind not in DEFAULT_MODELS:
            raise ModelPackageError(
                f"unknown detector kind {kind!r}; choose one of {sorted(DEFAULT_MODELS)}"
            )
        given = self.detector_models or {}
        return given[kind] if kind in given else DEFAULT_MODELS[kind]

    def describe_normalization(self) -> str:
        """The normalisation and the detector models it corrects for, in one line."""
        norm = self.normalization
        head = f"dose, min scale {norm.min_scale:g} e-/px"
        if not norm.preserve_mean:
            return f"{head}, mean not kept"
        if not norm.detector_aware:
            return f"{head}, input mean kept (not detector-aware)"
        models = "; ".join(
            f"{kind}: {self.detector_model(kind).describe()}" for kind in sorted(DEFAULT_MODELS)
        )
        return f"{head}, detector-aware mean, correcting for {models}"

    def measured_help(self, *, independent: bool = False) -> dict[str, list[float]]:
        """Per detector, the doses (e-/px) where the card's quality rows show the model helps.

        A dose counts when, on every image set of that detector measured at it (the
        in-distribution sets, or with ``independent`` the independent ones), the model's PSNR
        is above the best Gaussian's and its mean error is within 1 %: the range a user can
        rely on, rather than the range it was trained for (:attr:`dose_range_e_per_px`).
        """
        verdict: dict[tuple[str, float], bool] = {}
        for row in self.quality:
            if ("independent" in row.image_kind) != independent:
                continue
            key = (row.detector, row.dose_e_per_px)
            if row.metric == "psnr_db" and row.gaussian is not None:
                ok = row.value > row.gaussian
            elif row.metric == "mean_error_pct":
                ok = abs(row.value) <= 1.0
            else:
                continue
            verdict[key] = verdict.get(key, True) and ok
        helped: dict[str, list[float]] = {}
        for (detector, dose), ok in sorted(verdict.items()):
            helped.setdefault(detector, [])
            if ok:
                helped[detector].append(dose)
        return helped

    def summary(self) -> str:
        """One line for listings: encoder, training state, dose range, short hash."""
        lo, hi = self.dose_range_e_per_px
        state = "trained" if self.trained else "UNTRAINED"
        kw = self.architecture_kwargs
        depth = kw.get("encoder_depth", 5)
        dec = ",".join(str(c) for c in kw.get("decoder_channels", ()))
        return (
            f"{self.architecture}({self.encoder}, depth {depth}, decoder {dec}) {state}, "
            f"{lo:g}-{hi:g} e-/px, {'+'.join(self.detectors)}, "
            f"{self.package_hash.removeprefix('sha256:')[:12]}"
        )


def _nm_to_angstrom(value: Any) -> Any:
    """A range in nm as one in Å (12 significant digits: 0.07 nm reads 0.7, not 0.7000000000000001).

    Anything but two numbers is passed on unchanged, for validation to report.
    """
    if not (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        return value
    return [float(f"{10.0 * v:.12g}") for v in value]


def read_card(path: Path) -> ModelCard:
    """Read and validate ``card.json``.

    Parameters
    ----------
    path
        The card file.

    Returns
    -------
    The validated card.

    Raises
    ------
    ModelPackageError
        Missing or unreadable file, invalid JSON, a newer schema, or invalid fields.
    """
    if not path.is_file():
        raise ModelPackageError(
            f"model package {path.parent} has no card.json; a package needs config.json, "
            "model.safetensors and card.json (create one with `tem-acq model new`)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelPackageError(
            f"{path} is not valid JSON ({exc}); restore the package from its source"
        ) from exc
    if not isinstance(raw, dict):
        raise ModelPackageError(f"{path} must hold a JSON object; restore it from its source")
    version = raw.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ModelPackageError(
            f"{path} has no integer schema_version; it is not a tem-acq model card"
        )
    if version > SCHEMA_VERSION:
        raise ModelPackageError(
            f"{path} uses card schema {version}, newer than this tem-acq reads "
            f"(up to {SCHEMA_VERSION}); upgrade tem-acq (pip install -U tem-acq)"
        )
    return as_model(
        ModelCard,
        raw,
        f"{path} is not a valid model card",
        ModelPackageError,
        whole="(card)",
        fix="fix the field(s) or re-create the package",
    )


def write_card(card: ModelCard, path: Path) -> None:
    """Write ``card.json`` (indented, stable key order).

    A card without ``adaptation`` or ``detector_models``, or whose normalisation is not
    ``detector_aware``, is written without the field, as before it existed (an older card
    read and written back is byte-identical).
    """
    unset: dict[str, Any] = {
        name: True for name in ("adaptation", "detector_models") if getattr(card, name) is None
    }
    if not card.normalization.detector_aware:
        unset["normalization"] = {"detector_aware"}
    path.write_text(card.model_dump_json(indent=2, exclude=unset) + "\n", encoding="utf-8")
