"""Training data on plain arrays: pairs, registration, split by field, crops and augmentation.

Everything here works on NumPy arrays, so tests and scripts can feed simulator frames directly
(:func:`tem_acq.train.simulate.simulate_pairs`) and a pairs store is just one more source
(:func:`from_pairs_store`).

Input and target follow :mod:`tem_acq.denoise.normalization` exactly:

- input ``x = to_network(low_e, s)`` with ``low_e = counts_to_electrons(low, cpe)`` and
  ``s = dose_scale(low_e)``;
- supervised target ``to_network(high_e * low_dose / high_dose, s)``: the long exposure in
  electrons, rescaled to the short exposure's dose, divided by the **same** ``s``;
- noise2noise target: another short frame of the same field rescaled the same way.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tem_acq.denoise.dihedral import dihedral
from tem_acq.denoise.normalization import counts_to_electrons, dose_scale, to_network
from tem_acq.errors import TemAcqError

F32 = NDArray[np.float32]


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
    pixel_size_nm
        ``(n,)`` pixel size of each pair, when known.
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
    pixel_size_nm: np.ndarray | None = None
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
        if self.pixel_size_nm is not None:
            self.pixel_size_nm = per_pair("pixel_size_nm", self.pixel_size_nm, float)
        for name in ("detector", "specimen"):
            values = list(getattr(self, name))
            if values and len(values) != n:
                raise TemAcqError(f"{name} must list one value per pair ({n}), got {len(values)}")

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
            pixel_size_nm=take(self.pixel_size_nm),
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
    px = cat("pixel_size_nm")
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
        pixel_size_nm=px,
        source="; ".join(dict.fromkeys(p.source for p in parts if p.source)),
    )


# --- registration ----------------------------------------------------------------------------


def shift_image(image: np.ndarray, dy: float, dx: float, method: str = "fourier") -> np.ndarray:
    """Translate an image: ``out(y, x) = image(y - dy, x - dx)`` (periodic at the borders).

    Parameters
    ----------
    image
        2-D image.
    dy, dx
        Shift in pixels.
    method
        ``"fourier"`` (exact sub-pixel shift of a band-limited image) or ``"integer"`` (roll by
        the rounded shift).

    Returns
    -------
    float32 image; the ``ceil(|shift|)`` pixels at the borders have wrapped around.
    """
    img = np.asarray(image, dtype=np.float32)
    if method == "integer" or (float(dy).is_integer() and float(dx).is_integer()):
        return np.roll(img, (round(dy), round(dx)), axis=(0, 1))
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.rfftfreq(img.shape[1])[None, :]
    phase = np.exp(-2j * np.pi * (ky * dy + kx * dx))
    out = np.fft.irfft2(np.fft.rfft2(img) * phase, s=img.shape)
    return out.astype(np.float32)


def align_to_low(high: np.ndarray, shift: tuple[float, float], method: str) -> np.ndarray:
    """The long exposure moved onto the short frame's pixels.

    ``shift`` is ``phase_correlation_shift(low, high)``: ``high(y, x) ≈ low(y - dy, x - dx)``,
    so ``high`` is moved by ``(-dy, -dx)``.
    """
    dy, dx = shift
    if method == "none" or not (math.isfinite(dy) and math.isfinite(dx)) or (dy == 0 and dx == 0):
        return np.asarray(high, dtype=np.float32)
    return shift_image(high, -dy, -dx, method)


def border_for(shift: tuple[float, float], method: str) -> int:
    """Pixels at each border that a registration shift makes invalid."""
    if method == "none":
        return 0
    dy, dx = shift
    if not (math.isfinite(dy) and math.isfinite(dx)):
        return 0
    m = max(abs(dy), abs(dx))
    return 0 if m == 0 else math.ceil(m) + 1


def measure_shifts(pairs: PairArrays) -> np.ndarray:
    """``(n, 2)`` shifts of ``high`` relative to ``low``; recorded ones kept, NaNs measured."""
    from tem_acq.registration import phase_correlation_shift

    assert pairs.shift is not None
    out = pairs.shift.copy()
    if pairs.high is None:
        return out
    for i in np.flatnonzero(~np.isfinite(out).all(axis=1)):
        out[i] = phase_correlation_shift(
            np.asarray(pairs.low[i], np.float64), np.asarray(pairs.high[i], np.float64)
        )
    return out


# --- normalised training arrays ---------------------------------------------------------------


@dataclass
class Prepared:
    """Pairs in network units, ready for cropping.

    Attributes
    ----------
    inputs
        ``(n, y, x)`` float32 network inputs.
    targets
        ``(n, y, x)`` float32 targets in the same units (same dose scale as the input).
    truth
        ``(n, y, x)`` float32 noise-free image in the same units, or ``None``.
    scale
        ``(n,)`` dose scale of each input (e-/px).
    border
        ``(n,)`` pixels at each border not to be used (wrapped by registration).
    field
        ``(n,)`` field ids.
    """

    inputs: F32
    targets: F32
    truth: F32 | None
    scale: np.ndarray
    border: np.ndarray
    field: np.ndarray


def _electrons(counts: np.ndarray, cpe: np.ndarray) -> F32:
    return np.stack(
        [
            np.asarray(counts_to_electrons(c, float(k)), dtype=np.float32)
            for c, k in zip(counts, cpe, strict=True)
        ]
    )


def prepare(pairs: PairArrays, mode: str, registration: str, *, measure: bool = True) -> Prepared:
    """Network-unit inputs and targets for every pair.

    Parameters
    ----------
    pairs
        The pairs.
    mode
        ``"supervised"`` (target: the long exposure) or ``"noise2noise"`` (target: the next
        short frame of the same field, cyclically; fields with one short frame are dropped).
    registration
        ``"none"``, ``"integer"`` or ``"fourier"`` (see :class:`~tem_acq.train.TrainConfig`).
    measure
        Measure missing shifts with phase correlation.

    Returns
    -------
    The prepared arrays.
    """
    n = len(pairs)
    low_e = _electrons(pairs.low, pairs.counts_per_electron)
    scale = np.asarray(dose_scale(low_e), dtype=np.float32)  # (n, 1, 1)
    inputs = np.asarray(to_network(low_e, scale), dtype=np.float32)
    shifts = measure_shifts(pairs) if (measure and registration != "none") else pairs.shift
    assert shifts is not None
    keep = np.arange(n)
    if mode == "supervised":
        if pairs.high is None:
            raise TemAcqError(
                "supervised training needs long exposures (high); these pairs have none: use "
                "mode: noise2noise"
            )
        targets = np.empty_like(inputs)
        border = np.zeros(n, dtype=np.int64)
        for i in range(n):
            high_e = np.asarray(
                counts_to_electrons(
                    np.asarray(pairs.high[i], np.float32), float(pairs.counts_per_electron[i])
                ),
                dtype=np.float32,
            )
            aligned = align_to_low(high_e, (float(shifts[i, 0]), float(shifts[i, 1])), registration)
            rescaled = aligned * np.float32(pairs.low_dose[i] / pairs.high_dose[i])
            targets[i] = to_network(rescaled, scale[i])
            border[i] = border_for((float(shifts[i, 0]), float(shifts[i, 1])), registration)
    elif mode == "noise2noise":
        partner = np.full(n, -1)
        for f in np.unique(pairs.field):
            members = np.flatnonzero(pairs.field == f)
            if len(members) > 1:
                partner[members] = np.roll(members, -1)
        keep = np.flatnonzero(partner >= 0)
        if len(keep) == 0:
            raise TemAcqError(
                "noise2noise training needs at least two short frames of one field; every field "
                "here has one (record several short exposures per field)"
            )
        targets = np.empty_like(inputs)
        border = np.zeros(n, dtype=np.int64)
        for ii in keep:
            i = int(ii)
            j = int(partner[i])
            # j relative to i: both are measured against the long exposure (see module doc).
            rel = (float(shifts[i, 0] - shifts[j, 0]), float(shifts[i, 1] - shifts[j, 1]))
            if not all(math.isfinite(v) for v in rel):
                rel = (0.0, 0.0)
            aligned = align_to_low(low_e[j], rel, registration)
            rescaled = aligned * np.float32(pairs.low_dose[i] / pairs.low_dose[j])
            targets[i] = to_network(rescaled, scale[i])
            border[i] = border_for(rel, registration)
    else:
        raise TemAcqError(f"unknown training mode {mode!r}; use supervised or noise2noise")
    truth = None
    if pairs.truth is not None:
        truth = np.asarray(to_network(pairs.truth.astype(np.float32), scale), dtype=np.float32)
    return Prepared(
        inputs=inputs[keep],
        targets=targets[keep],
        truth=None if truth is None else truth[keep],
        scale=scale[keep, 0, 0].astype(np.float64),
        border=border[keep],
        field=pairs.field[keep],
    )


def split_by_field(
    field_ids: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of training and validation pairs, split by field.

    Parameters
    ----------
    field_ids
        ``(n,)`` field id of each pair.
    val_fraction
        Fraction of fields for validation; at least one field when there are two or more
        fields and the fraction is > 0, and never all of them.
    seed
        Seeds the choice of fields.

    Returns
    -------
    ``(train_index, val_index)``; no field appears in both.
    """
    fields = np.unique(field_ids)
    if val_fraction <= 0 or len(fields) < 2:
        return np.arange(len(field_ids)), np.array([], dtype=np.int64)
    k = min(max(1, round(val_fraction * len(fields))), len(fields) - 1)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5E1]))
    val_fields = rng.choice(fields, size=k, replace=False)
    is_val = np.isin(field_ids, val_fields)
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


class CropSampler:
    """Random crops (same window in input and target) with the 8 flips/rotations.

    Parameters
    ----------
    data
        The prepared pairs.
    index
        Which pairs to draw from.
    crop
        Crop side in pixels (clipped to the usable frame).
    augment
        Apply a random flip/rotation to each crop.
    rng
        The random generator (its state is part of a checkpoint).
    """

    def __init__(
        self,
        data: Prepared,
        index: np.ndarray,
        crop: int,
        augment: bool,
        rng: np.random.Generator,
    ) -> None:
        if len(index) == 0:
            raise TemAcqError("no training pairs left after the validation split; add fields")
        self.data = data
        self.index = np.asarray(index)
        self.augment = augment
        self.rng = rng
        h, w = data.inputs.shape[1:]
        usable = int(min(h, w) - 2 * data.border[self.index].max())
        if usable < 32:
            raise TemAcqError(
                f"frames of {h}x{w} px with registration borders of up to "
                f"{int(data.border[self.index].max())} px leave no room for crops; check the "
                "pairs' shifts (flag drifting pairs) or use larger frames"
            )
        self.crop = min(crop, usable // 32 * 32) if crop > usable else crop

    def batch(self, size: int) -> tuple[F32, F32]:
        """``(inputs, targets)`` of shape ``(size, crop, crop)``."""
        c = self.crop
        h, w = self.data.inputs.shape[1:]
        xs = np.empty((size, c, c), np.float32)
        ts = np.empty((size, c, c), np.float32)
        picks = self.rng.choice(self.index, size=size)
        for b, i in enumerate(picks):
            m = int(self.data.border[i])
            y0 = int(self.rng.integers(m, h - m - c + 1))
            x0 = int(self.rng.integers(m, w - m - c + 1))
            k = int(self.rng.integers(8)) if self.augment else 0
            xs[b] = dihedral(self.data.inputs[i, y0 : y0 + c, x0 : x0 + c], k)
            ts[b] = dihedral(self.data.targets[i, y0 : y0 + c, x0 : x0 + c], k)
        return xs, ts


# --- pairs store adapter -----------------------------------------------------------------------


#: Pair flags that leave a pair out of training and evaluation (``low_contrast`` pairs stay,
#: with their shift taken as zero: the registration could not measure it).
SKIPPED_FLAGS = frozenset({"drift", "saturated"})


def from_pairs_store(
    paths: Sequence[str | os.PathLike[str]], *, skip_flagged: bool = True
) -> PairArrays:
    """Read one or more pairs stores (:func:`tem_acq.store.open_pairs`) into :class:`PairArrays`.

    Parameters
    ----------
    paths
        Pairs store folders (``*.ome.zarr``).
    skip_flagged
        Leave out pairs flagged ``"drift"`` or ``"saturated"`` by the collection run.

    Returns
    -------
    The pairs of all stores; field ids are made unique per store. Doses are the measured ones
    of the table (frame means), so the target keeps the input's electron total.

    Raises
    ------
    TemAcqError
        A missing path, a store that is not a pairs store, a store without usable pairs, or
        stores of different frame sizes.
    """
    if not paths:
        raise TemAcqError("no pairs stores given; pass at least one --pairs STORE")
    from tem_acq.store import open_pairs

    parts = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise TemAcqError(f"pairs store {p} does not exist; pass the folder of a pairs store")
        store = open_pairs(p)
        parts.append(_pairs_from_store(store, str(p), skip_flagged=skip_flagged))
    return parts[0] if len(parts) == 1 else concatenate(parts)


def _pairs_from_store(store: Any, source: str, *, skip_flagged: bool) -> PairArrays:
    meta = store.metadata
    rows = list(store.pairs)
    if not rows:
        raise TemAcqError(f"pairs store {source} holds no pairs; record some first")
    keep = [r for r in rows if not (skip_flagged and r.flag in SKIPPED_FLAGS)]
    if not keep:
        raise TemAcqError(f"every pair in {source} is flagged drift or saturated; nothing to use")
    index = np.array([int(r.index) for r in keep])
    low = _read_rows(store.low, index)
    high = _read_rows(store.high, index).astype(np.float32, copy=False)
    truth = None if store.truth is None else _read_rows(store.truth, index).astype(np.float32)
    settings: dict[str, Any] = dict(meta.protocol.settings or {})
    detector = str(meta.camera.detector_kind or settings.get("detector", ""))
    specimen = str(settings.get("specimen", "") or "")
    shift = np.array(
        [[0.0, 0.0] if r.flag == "low_contrast" else [r.shift_dy_px, r.shift_dx_px] for r in keep],
        dtype=float,
    )
    n = len(keep)
    return PairArrays(
        low=low,
        high=high,
        counts_per_electron=np.array([float(r.counts_per_electron) for r in keep]),
        low_dose=np.array([float(r.low_dose_e_per_px) for r in keep]),
        high_dose=np.array([float(r.high_dose_e_per_px) for r in keep]),
        field=np.array([int(r.field) for r in keep]),
        shift=shift,
        truth=truth,
        detector=[detector] * n if detector in ("counting", "integrating") else [],
        specimen=[specimen] * n if specimen else [],
        pixel_size_nm=np.full(n, float(meta.instrument.pixel_size_A) / 10.0),
        source=f"pairs store {source}",
    )


def _read_rows(arr: Any, index: np.ndarray) -> np.ndarray:
    """Frames ``index`` of a (n, y, x) array-like (NumPy, zarr...), read whole then selected."""
    return np.asarray(arr[:])[index]
