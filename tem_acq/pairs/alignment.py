"""Registration applied to pairs: the shift of each pair, and its long exposure moved by it.

The maths (measuring a shift, moving an image, the border it wraps) is
:mod:`tem_acq.registration`; this module applies it to :class:`PairArrays`, for training
(:func:`tem_acq.train.prepare`) and evaluation alike.
"""

from __future__ import annotations

import numpy as np

from tem_acq.denoise.normalization import counts_to_electrons
from tem_acq.pairs.arrays import PairArrays
from tem_acq.registration import align_to_low, phase_correlation_shift


def measure_shifts(pairs: PairArrays) -> np.ndarray:
    """``(n, 2)`` shifts of ``high`` relative to ``low``; recorded ones kept, NaNs measured."""
    assert pairs.shift is not None
    out = pairs.shift.copy()
    if pairs.high is None:
        return out
    for i in np.flatnonzero(~np.isfinite(out).all(axis=1)):
        out[i] = phase_correlation_shift(
            np.asarray(pairs.low[i], np.float64), np.asarray(pairs.high[i], np.float64)
        )
    return out


def aligned_long_electrons(
    pairs: PairArrays, i: int, shift: tuple[float, float], method: str
) -> np.ndarray:
    """Pair ``i``'s long exposure in electrons (float32), moved onto its short frame's pixels.

    Parameters
    ----------
    pairs
        Pairs with long exposures.
    i
        Which pair.
    shift
        Its ``(dy, dx)``, as :func:`measure_shifts` gives it (NaN: unknown, not moved).
    method
        ``"none"``, ``"integer"`` or ``"fourier"`` (see :func:`tem_acq.registration.shift_image`).
    """
    assert pairs.high is not None
    high_e = np.asarray(
        counts_to_electrons(
            np.asarray(pairs.high[i], np.float32), float(pairs.counts_per_electron[i])
        ),
        dtype=np.float32,
    )
    return align_to_low(high_e, shift, method)
