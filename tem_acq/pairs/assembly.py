"""Turning the frames of one field into training pairs: binning, registration, quality flags.

A field yields K short exposures and one long exposure (or M short frames summed into one).
Each short frame is paired with the long exposure, which is first brought to the short frame's
pixel grid by **summing** counts over bins (interpolation, as the paper did, throws counts away),
then registered to it: the shift is measured, never applied here, so training decides how to use
it. Pairs whose shift exceeds a limit, or whose frames saturate, are flagged, not dropped.

Registration uses the sum of the field's short frames: at 5 e-/px one frame of a low-contrast
field (flat support film) does not pin the shift down, and the shorts follow each other within
K exposures, so drift between them is small next to the time to the long exposure. When even
the sum does not give a clear correlation peak, the pair is flagged ``"low_contrast"``: its
shift is noise, and training should treat the pair as unshifted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from tem_acq.errors import AcquisitionError
from tem_acq.registration import register

#: Why a pair is suspect (``None``: it is not).
PairFlag = Literal["drift", "saturated", "low_contrast"]

#: Pair flags that leave a pair out of training and evaluation (``low_contrast`` pairs stay,
#: with their shift taken as zero: the registration could not measure it).
SKIPPED_FLAGS: frozenset[PairFlag] = frozenset({"drift", "saturated"})


def bin_sum(image: NDArray[np.generic], factor: int) -> NDArray[np.float64]:
    """Sum counts over ``factor`` x ``factor`` bins (the image's size must divide by it)."""
    if factor == 1:
        return np.asarray(image, dtype=np.float64)
    h, w = image.shape
    if h % factor or w % factor:
        raise AcquisitionError(
            f"cannot bin a {h}x{w} frame by {factor}: the long exposure's size must be a "
            "multiple of the short frame's"
        )
    return (
        np.asarray(image, dtype=np.float64)
        .reshape(h // factor, factor, w // factor, factor)
        .sum(axis=(1, 3))
    )


def binning_factor(short_shape: tuple[int, ...], long_shape: tuple[int, ...]) -> int:
    """How many long-exposure pixels per short-frame pixel along each axis (an integer)."""
    fy, ry = divmod(long_shape[0], short_shape[0])
    fx, rx = divmod(long_shape[1], short_shape[1])
    if ry or rx or fy != fx or fy < 1:
        raise AcquisitionError(
            f"long exposure {long_shape} and short frames {short_shape} are not the same field "
            "at an integer binning ratio; use binnings that divide each other"
        )
    return fy


@dataclass(frozen=True)
class AssembledPair:
    """One short frame, the field's long exposure on its grid, and how well they match."""

    low: NDArray[np.uint16]
    high: NDArray[np.float32]
    shift_dy_px: float
    shift_dx_px: float
    shift_significance: float
    low_dose_e_per_px: float
    high_dose_e_per_px: float
    flag: PairFlag | None


def assemble_field(
    shorts: list[NDArray[np.integer | np.floating]],
    long_frames: list[NDArray[np.integer | np.floating]],
    *,
    counts_per_electron: float,
    saturation: float = 65535,
    max_shift_px: float = 2.0,
) -> list[AssembledPair]:
    """Pair each short frame of a field with the field's long exposure.

    Parameters
    ----------
    shorts
        The K short exposures, each (y, x).
    long_frames
        One long exposure, or M short frames to be summed into one (the "sum" mode).
    counts_per_electron
        The camera's conversion factor (doses are reported in electrons).
    saturation
        Counts at which the camera saturates; a pair with any pixel there is flagged.
    max_shift_px
        A pair whose registration shift is larger (in short-frame pixels) is flagged "drift".

    Returns
    -------
    list of AssembledPair
        One per short frame, in order.
    """
    if not shorts or not long_frames:
        raise AcquisitionError("a field needs at least one short and one long frame")
    shape = shorts[0].shape
    factor = binning_factor(shape, long_frames[0].shape)
    saturated_long = any(bool((f >= saturation).any()) for f in long_frames)
    high = bin_sum(np.sum([np.asarray(f, np.float64) for f in long_frames], axis=0), factor)
    high_dose = float(high.mean()) / counts_per_electron
    for low in shorts:
        if low.shape != shape:
            raise AcquisitionError(f"short frames of one field differ in shape: {low.shape}")
    reg = register(np.sum([np.asarray(s, np.float64) for s in shorts], axis=0), high)
    pairs = []
    for low in shorts:
        flag: PairFlag | None = None
        if saturated_long or bool((low >= saturation).any()):
            flag = "saturated"
        elif not reg.reliable:
            flag = "low_contrast"
        elif max(abs(reg.dy), abs(reg.dx)) > max_shift_px:
            flag = "drift"
        pairs.append(
            AssembledPair(
                low=np.asarray(low, dtype=np.uint16),
                high=high.astype(np.float32),
                shift_dy_px=reg.dy,
                shift_dx_px=reg.dx,
                shift_significance=reg.significance,
                low_dose_e_per_px=float(low.mean()) / counts_per_electron,
                high_dose_e_per_px=high_dose,
                flag=flag,
            )
        )
    return pairs


def grid_positions_um(
    n_fields: int,
    *,
    field_size_um: float,
    spacing: float = 1.5,
    origin_um: tuple[float, float] = (0.0, 0.0),
) -> list[tuple[float, float]]:
    """Stage positions of ``n_fields`` non-overlapping fields on a square grid, row by row.

    ``spacing`` is the distance between field centres in field widths (> 1: no overlap).
    """
    if n_fields < 1:
        raise AcquisitionError(f"need at least one field, got {n_fields}")
    if spacing <= 1.0:
        raise AcquisitionError(
            f"spacing must be > 1 field width so fields never overlap, got {spacing}"
        )
    columns = int(np.ceil(np.sqrt(n_fields)))
    step = field_size_um * spacing
    return [
        (origin_um[0] + (i % columns) * step, origin_um[1] + (i // columns) * step)
        for i in range(n_fields)
    ]
