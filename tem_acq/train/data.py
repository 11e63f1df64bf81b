"""Training data: pairs in network units, split by field, random crops with augmentation.

The pairs come from :mod:`tem_acq.pairs` (:class:`~tem_acq.pairs.PairArrays`: simulated,
read from a pairs store, or built by hand), registered with :mod:`tem_acq.pairs.alignment`.

Input and target follow :mod:`tem_acq.denoise.normalization` exactly:

- input ``x = to_network(low_e, s)`` with ``low_e = counts_to_electrons(low, cpe)`` and
  ``s = dose_scale(low_e)``;
- supervised target ``to_network(high_e * low_dose / high_dose, s)``: the long exposure in
  electrons, rescaled to the short exposure's dose, divided by the **same** ``s``;
- noise2noise target: another short frame of the same field rescaled the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tem_acq.denoise.dihedral import dihedral
from tem_acq.denoise.normalization import counts_to_electrons, dose_scale, to_network
from tem_acq.detector import DetectorModel
from tem_acq.errors import TemAcqError
from tem_acq.pairs import PairArrays, aligned_long_electrons, measure_shifts
from tem_acq.registration import align_to_low, border_for

F32 = NDArray[np.float32]


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
    detector
        Each pair's detector model (``None``: unknown, the linear mean rule), for the
        detector-aware mean rule of the loss and validation.
    binning
        ``(n,)`` camera binning of each pair.
    """

    inputs: F32
    targets: F32
    truth: F32 | None
    scale: np.ndarray
    border: np.ndarray
    field: np.ndarray
    detector: list[DetectorModel | None] | None = None
    binning: np.ndarray | None = None

    def camera(self, i: int) -> tuple[DetectorModel | None, int]:
        """Pair ``i``'s detector model and binning."""
        det = None if self.detector is None else self.detector[i]
        return det, 1 if self.binning is None else int(self.binning[i])


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
    low_e = _electrons(pairs.low, pairs.counts_per_electron)
    scale = np.asarray(dose_scale(low_e), dtype=np.float32)  # (n, 1, 1)
    inputs = np.asarray(to_network(low_e, scale), dtype=np.float32)
    shifts = measure_shifts(pairs) if (measure and registration != "none") else pairs.shift
    assert shifts is not None
    if mode == "supervised":
        keep = np.arange(len(pairs))
        targets, border = _supervised_targets(pairs, scale, shifts, registration)
    elif mode == "noise2noise":
        keep, targets, border = _noise2noise_targets(pairs, low_e, scale, shifts, registration)
    else:
        raise TemAcqError(f"unknown training mode {mode!r}; use supervised or noise2noise")
    truth = None
    if pairs.truth is not None:
        truth = np.asarray(to_network(pairs.truth.astype(np.float32), scale), dtype=np.float32)
    models = pairs.detector_models()
    return Prepared(
        inputs=inputs[keep],
        targets=targets[keep],
        truth=None if truth is None else truth[keep],
        scale=scale[keep, 0, 0].astype(np.float64),
        border=border[keep],
        field=pairs.field[keep],
        detector=None if models is None else [models[int(i)] for i in keep],
        binning=pairs.binnings()[keep],
    )


def _supervised_targets(
    pairs: PairArrays, scale: np.ndarray, shifts: np.ndarray, registration: str
) -> tuple[F32, np.ndarray]:
    """Targets from the long exposures and their registration borders, one per pair.

    Each long exposure is registered onto its short frame, rescaled to the short frame's dose
    and divided by the short frame's dose ``scale``.
    """
    if pairs.high is None:
        raise TemAcqError(
            "supervised training needs long exposures (high); these pairs have none: use "
            "mode: noise2noise"
        )
    n = len(pairs)
    targets = np.empty((n, *pairs.shape), dtype=np.float32)
    border = np.zeros(n, dtype=np.int64)
    for i in range(n):
        shift = (float(shifts[i, 0]), float(shifts[i, 1]))
        aligned = aligned_long_electrons(pairs, i, shift, registration)
        rescaled = aligned * np.float32(pairs.low_dose[i] / pairs.high_dose[i])
        targets[i] = to_network(rescaled, scale[i])
        border[i] = border_for(shift, registration)
    return targets, border


def _noise2noise_targets(
    pairs: PairArrays,
    low_e: F32,
    scale: np.ndarray,
    shifts: np.ndarray,
    registration: str,
) -> tuple[np.ndarray, F32, np.ndarray]:
    """Pairs kept, targets and borders when the target is the field's next short frame.

    Each short frame's partner is the next one of its field (cyclically), registered onto it
    and rescaled to its dose; fields with a single short frame have no partner and are left
    out.
    """
    n = len(pairs)
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
    targets = np.empty_like(low_e)
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
    return keep, targets, border


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
        xs, ts, _ = self.batch_with_pairs(size)
        return xs, ts

    def batch_with_pairs(self, size: int) -> tuple[F32, F32, np.ndarray]:
        """:meth:`batch` and the pair index of each crop (same draws, same crops)."""
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
        return xs, ts, picks
