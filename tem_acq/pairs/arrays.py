"""The pairs themselves: :class:`PairArrays`, n (short, long) frame pairs as plain arrays.

Everything that makes or uses pairs meets here: assembly of a recorded field
(:mod:`tem_acq.pairs.assembly`), the simulator (:mod:`tem_acq.pairs.simulate`), a pairs store
(:mod:`tem_acq.pairs.reading`), and training and evaluation, which only read them. Plain NumPy
arrays, so tests and scripts can build pairs directly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import numpy as np

from tem_acq.detector import DEFAULT_MODELS, DetectorModel
from tem_acq.errors import TemAcqError


@dataclass
class PairArrays:
    """Pairs of frames of one field each, as plain arrays (``n`` pairs of ``(y, x)`` frames).

    Attributes
    ----------
    low
        ``(n, y, x)`` raw counts of the short exposures (any numeric dtype).
    high
        ``(n, y, x)`` counts of the long exposure of the same field, binned to the short
        frame's size by summing (``None`` for noise2noise-only data).
    counts_per_electron
        ``(n,)`` camera conversion factor of each pair.
    low_dose
        ``(n,)`` dose of each short frame (e-/px).
    high_dose
        ``(n,)`` dose of each long exposure (e-/px); the target is rescaled by
        ``low_dose / high_dose``.
    field
        ``(n,)`` field id of each pair (frames of one field share it).
    shift
        ``(n, 2)`` ``(dy, dx)`` of ``high`` relative to ``low`` as
        :func:`~tem_acq.registration.phase_correlation_shift` ``(low, high)`` returns it, or NaN
        where unknown; ``None``: all unknown.
    truth
        ``(n, y, x)`` noise-free expected electrons per pixel at the short's dose, or ``None``.
    vacuum
        ``(n, y, x)`` boolean vacuum masks (simulated data), or ``None``.
    particles
        ``(n, y, x)`` boolean masks of the particles (nanoparticles, or the nanocrystals of
        atomic-resolution fields) in simulated data, or ``None``.
    detector
        ``(n,)`` detector kind of each pair (``"counting"``/``"integrating"``), when known.
    specimen
        ``(n,)`` specimen kind of each pair, when known.
    pixel_size_A
        ``(n,)`` pixel size of each pair at the specimen (Å), when known.
    detector_model
        One :class:`~tem_acq.detector.DetectorModel` per pair (the camera's model in
        electrons, e.g. a simulation's ``SimulationConfig.detector_model``), or ``None``: from
        ``detector`` by :data:`tem_acq.detector.DEFAULT_MODELS` (see :meth:`detector_models`).
    binning
        ``(n,)`` camera binning of each pair, or ``None``: 1.
    source
        Where the data came from (provenance text for the model card).
    """

    low: np.ndarray
    high: np.ndarray | None
    counts_per_electron: np.ndarray
    low_dose: np.ndarray
    high_dose: np.ndarray
    field: np.ndarray
    shift: np.ndarray | None = None
    truth: np.ndarray | None = None
    vacuum: np.ndarray | None = None
    particles: np.ndarray | None = None
    detector: list[str] = dc_field(default_factory=list)
    specimen: list[str] = dc_field(default_factory=list)
    pixel_size_A: np.ndarray | None = None
    detector_model: list[DetectorModel] | None = None
    binning: np.ndarray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        self.low = np.asarray(self.low)
        if self.low.ndim == 2:
            self.low = self.low[None]
        if self.low.ndim != 3 or self.low.size == 0 or self.low.dtype.kind not in "iuf":
            raise TemAcqError(
                f"low must be a non-empty numeric (n, y, x) stack, got {self.low.dtype} "
                f"{self.low.shape}"
            )
        n = self.low.shape[0]
        shape = self.low.shape
        for name in ("high", "truth", "vacuum", "particles"):
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.asarray(arr)
            if arr.ndim == 2:
                arr = arr[None]
            if arr.shape != shape:
                raise TemAcqError(
                    f"{name} has shape {arr.shape} but low has {shape}: every pair needs frames "
                    "of one size (bin the long exposure to the short frame's size by summing)"
                )
            setattr(self, name, arr)

        def per_pair(name: str, value: Any, dtype: Any) -> np.ndarray:
            a = np.asarray(value, dtype=dtype)
            if a.ndim == 0:
                a = np.full(n, a, dtype=dtype)
            if a.shape != (n,):
                raise TemAcqError(f"{name} must be one value or one per pair ({n}), got {a.shape}")
            return a

        self.counts_per_electron = per_pair("counts_per_electron", self.counts_per_electron, float)
        self.low_dose = per_pair("low_dose", self.low_dose, float)
        self.high_dose = per_pair("high_dose", self.high_dose, float)
        self.field = per_pair("field", self.field, np.int64)
        if not (
            np.isfinite(self.counts_per_electron).all() and (self.counts_per_electron > 0).all()
        ):
            raise TemAcqError("counts_per_electron must be finite and > 0 for every pair")
        if not (np.isfinite(self.low_dose).all() and (self.low_dose > 0).all()):
            raise TemAcqError("low_dose must be finite and > 0 e-/px for every pair")
        if self.high is not None and not (
            np.isfinite(self.high_dose).all() and (self.high_dose > 0).all()
        ):
            raise TemAcqError("high_dose must be finite and > 0 e-/px for every pair")
        if self.shift is None:
            self.shift = np.full((n, 2), np.nan)
        self.shift = np.asarray(self.shift, dtype=float).reshape(n, 2)
        if self.pixel_size_A is not None:
            self.pixel_size_A = per_pair("pixel_size_A", self.pixel_size_A, float)
        for name in ("detector", "specimen"):
            values = list(getattr(self, name))
            if values and len(values) != n:
                raise TemAcqError(f"{name} must list one value per pair ({n}), got {len(values)}")
        self._check_detector_models(n)

    def _check_detector_models(self, n: int) -> None:
        """Check ``detector_model`` (one per pair, agreeing with ``detector``) and ``binning``."""
        if self.binning is not None:
            b = np.asarray(self.binning)
            b = np.full(n, b) if b.ndim == 0 else b
            if b.shape != (n,) or b.dtype.kind not in "iuf" or (b < 1).any() or (b % 1).any():
                raise TemAcqError(
                    f"binning must be one positive integer or one per pair ({n}), "
                    f"got {self.binning!r}"
                )
            self.binning = b.astype(np.int64)
        if self.detector_model is None:
            return
        models = list(self.detector_model)
        if len(models) != n or not all(isinstance(m, DetectorModel) for m in models):
            raise TemAcqError(
                f"detector_model must list one tem_acq.detector.DetectorModel per pair ({n})"
            )
        if self.detector and any(m.kind != d for m, d in zip(models, self.detector, strict=True)):
            raise TemAcqError("detector_model and detector disagree on a pair's detector kind")
        self.detector_model = models

    def detector_models(self) -> list[DetectorModel] | None:
        """Each pair's detector model: ``detector_model``, else the defaults of ``detector``.

        ``None`` when neither says anything (the detector is unknown).
        """
        if self.detector_model is not None:
            return list(self.detector_model)
        if not self.detector:
            return None
        return self.detector_models_of(self.detector)

    @staticmethod
    def detector_models_of(kinds: Sequence[str]) -> list[DetectorModel]:
        """The default model of each detector kind (:data:`tem_acq.detector.DEFAULT_MODELS`)."""
        unknown = sorted(set(kinds) - set(DEFAULT_MODELS))
        if unknown:
            raise TemAcqError(
                f"unknown detector kind(s) {unknown}; use {sorted(DEFAULT_MODELS)} or give "
                "detector_model"
            )
        return [DEFAULT_MODELS[d] for d in kinds]

    def binnings(self) -> np.ndarray:
        """``(n,)`` int64 binning of each pair (1 where not given)."""
        if self.binning is None:
            return np.ones(len(self), np.int64)
        return np.asarray(self.binning, np.int64)

    def camera(self, i: int) -> dict[str, Any]:
        """Pair ``i``'s camera as ``Denoiser.denoise`` keywords.

        ``counts_per_electron``, ``detector`` (its model, ``None`` when unknown), ``binning``.
        """
        detector: DetectorModel | None = None
        if self.detector_model is not None:
            detector = self.detector_model[i]
        elif self.detector:
            detector = self.detector_models_of([self.detector[i]])[0]
        return {
            "counts_per_electron": float(self.counts_per_electron[i]),
            "detector": detector,
            "binning": 1 if self.binning is None else int(self.binning[i]),
        }

    def __len__(self) -> int:
        return int(self.low.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """Frame shape ``(y, x)``."""
        return (int(self.low.shape[1]), int(self.low.shape[2]))

    def subset(self, index: Sequence[int] | np.ndarray) -> PairArrays:
        """The pairs at ``index`` (a new object sharing no arrays with this one)."""
        idx = np.asarray(index, dtype=np.int64)

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else np.ascontiguousarray(a[idx])

        return PairArrays(
            low=np.ascontiguousarray(self.low[idx]),
            high=take(self.high),
            counts_per_electron=self.counts_per_electron[idx],
            low_dose=self.low_dose[idx],
            high_dose=self.high_dose[idx],
            field=self.field[idx],
            shift=take(self.shift),
            truth=take(self.truth),
            vacuum=take(self.vacuum),
            particles=take(self.particles),
            detector=[self.detector[i] for i in idx] if self.detector else [],
            specimen=[self.specimen[i] for i in idx] if self.specimen else [],
            pixel_size_A=take(self.pixel_size_A),
            detector_model=(
                None if self.detector_model is None else [self.detector_model[i] for i in idx]
            ),
            binning=take(self.binning),
            source=self.source,
        )

    def sha256(self) -> str:
        """``sha256:<hex>`` over the frames and per-pair numbers (order included)."""
        h = hashlib.sha256()
        for name in ("low", "high", "truth"):
            arr = getattr(self, name)
            h.update(name.encode() + b"\0")
            if arr is not None:
                a = np.ascontiguousarray(arr)
                h.update(f"{a.dtype.str}{a.shape}".encode())
                h.update(a.tobytes())
        for name in ("counts_per_electron", "low_dose", "high_dose", "field", "shift"):
            a = np.ascontiguousarray(getattr(self, name), dtype=np.float64)
            h.update(name.encode() + b"\0" + a.tobytes())
        # only when given, so that the hashes of pairs without them stay what they were
        if self.binning is not None:
            h.update(b"binning\0" + np.ascontiguousarray(self.binning, np.int64).tobytes())
        if self.detector_model is not None:
            for m in self.detector_model:
                h.update(b"detector_model\0" + m.model_dump_json().encode())
        return "sha256:" + h.hexdigest()


def concatenate(parts: Sequence[PairArrays]) -> PairArrays:
    """Join pair sets; field ids are renumbered so fields of different sets never merge."""
    if not parts:
        raise TemAcqError("no pairs to join")
    shapes = {p.shape for p in parts}
    if len(shapes) > 1:
        raise TemAcqError(
            f"pair sets have different frame sizes {sorted(shapes)}; train on one size at a time "
            "or crop them to a common size"
        )

    def cat(name: str) -> np.ndarray | None:
        arrs = [getattr(p, name) for p in parts]
        if any(a is None for a in arrs):
            return None
        return np.concatenate(arrs)

    fields, offset = [], 0
    for p in parts:
        _, inv = np.unique(p.field, return_inverse=True)
        fields.append(inv + offset)
        offset += int(inv.max()) + 1
    px = cat("pixel_size_A")
    return PairArrays(
        low=np.concatenate([p.low for p in parts]),
        high=cat("high"),
        counts_per_electron=np.concatenate([p.counts_per_electron for p in parts]),
        low_dose=np.concatenate([p.low_dose for p in parts]),
        high_dose=np.concatenate([p.high_dose for p in parts]),
        field=np.concatenate(fields),
        shift=np.concatenate([p.shift for p in parts if p.shift is not None]),
        truth=cat("truth"),
        vacuum=cat("vacuum"),
        particles=cat("particles"),
        detector=[d for p in parts for d in p.detector] if all(p.detector for p in parts) else [],
        specimen=[s for p in parts for s in p.specimen] if all(p.specimen for p in parts) else [],
        pixel_size_A=px,
        detector_model=_joined_models(parts),
        binning=(
            None
            if all(p.binning is None for p in parts)
            else np.concatenate([p.binnings() for p in parts])
        ),
        source="; ".join(dict.fromkeys(p.source for p in parts if p.source)),
    )


def _joined_models(parts: Sequence[PairArrays]) -> list[DetectorModel] | None:
    """The joined sets' per-pair models (``None`` when no set gives any)."""
    if all(p.detector_model is None for p in parts):
        return None
    joined: list[DetectorModel] = []
    for k, p in enumerate(parts):
        models = p.detector_models()
        if models is None:
            raise TemAcqError(
                f"pair set {k} says neither its detector kind nor its detector model, and "
                "others give models; set detector or detector_model on every set"
            )
        joined += models
    return joined
