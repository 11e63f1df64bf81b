"""Statistics for checking simulated (and real) frames: noise from frame pairs, drift, spectra.

Noise is measured on the difference of two frames of one field, so the specimen cancels and only
the noise of both frames remains (its variance is the sum of the two frames' variances).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

F64 = NDArray[np.float64]


def lag_correlation(noise: ArrayLike, dy: int, dx: int) -> float:
    """Correlation coefficient of a noise image with itself shifted by ``(dy, dx)`` (dy, dx >= 0).

    Parameters
    ----------
    noise
        2-D noise image (its mean is removed here).
    dy, dx
        Non-negative lags in rows and columns.

    Returns
    -------
    float
        ``mean(n[y, x] n[y + dy, x + dx]) / var(n)``.
    """
    n = np.asarray(noise, dtype=np.float64)
    n = n - n.mean()
    h, w = n.shape
    a = n[: h - dy, : w - dx]
    b = n[dy:, dx:]
    return float(np.mean(a * b) / np.mean(n * n))


@dataclass(frozen=True)
class PairNoiseStats:
    """Noise statistics of two frames of one field (see :func:`pair_noise_stats`).

    Attributes
    ----------
    mean_counts
        Mean of both frames (counts).
    mean_electrons
        ``mean_counts / counts_per_electron``.
    variance_ratio
        Noise variance over the Poisson variance, in electrons:
        ``var(a - b) / ((mean(a) + mean(b)) * counts_per_electron)``; 1 for ideal counting.
    zero_fraction
        Fraction of pixels exactly 0 (both frames).
    corr_x, corr_y
        Lag-1 correlation of the difference image along x (columns) and y (rows).
    corr_x2
        Lag-2 correlation along x (shows the row-correlated read noise).
    """

    mean_counts: float
    mean_electrons: float
    variance_ratio: float
    zero_fraction: float
    corr_x: float
    corr_y: float
    corr_x2: float


def pair_noise_stats(a: ArrayLike, b: ArrayLike, counts_per_electron: float) -> PairNoiseStats:
    """Noise statistics from two frames of the same field (specimen structure cancels).

    Parameters
    ----------
    a, b
        Two frames of one field (same shape, counts).
    counts_per_electron
        Camera conversion factor.

    Returns
    -------
    PairNoiseStats
        The statistics.
    """
    fa = np.asarray(a, dtype=np.float64)
    fb = np.asarray(b, dtype=np.float64)
    if fa.shape != fb.shape or fa.ndim != 2:
        raise ValueError(f"need two 2-D frames of one shape, got {fa.shape} and {fb.shape}")
    diff = fa - fb
    total = fa.mean() + fb.mean()
    mean = 0.5 * total
    return PairNoiseStats(
        mean_counts=float(mean),
        mean_electrons=float(mean / counts_per_electron),
        variance_ratio=float(diff.var() / (total * counts_per_electron)) if total > 0 else math.nan,
        zero_fraction=float(0.5 * (np.mean(fa == 0) + np.mean(fb == 0))),
        corr_x=lag_correlation(diff, 0, 1),
        corr_y=lag_correlation(diff, 1, 0),
        corr_x2=lag_correlation(diff, 0, 2),
    )


def power_spectrum(image: ArrayLike) -> F64:
    """Centred power spectrum of a mean-removed, Hann-windowed image (``fftshift`` layout)."""
    f = np.asarray(image, dtype=np.float64)
    h, w = f.shape
    window = np.outer(np.hanning(h), np.hanning(w))
    spec = np.fft.fftshift(np.fft.fft2((f - f.mean()) * window))
    out: F64 = spec.real**2 + spec.imag**2
    return out
