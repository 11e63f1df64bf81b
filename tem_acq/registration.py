"""Registration of two images of one field: measuring their shift, and applying it.

Measuring (stage drift between a short and a long exposure): correlation in Fourier space with
sub-pixel refinement. The cross-power spectrum of the two images (optionally whitened, which
is classic phase correlation) has an inverse Fourier transform that peaks at their relative
shift; scikit-image's ``phase_cross_correlation`` finds that peak and evaluates the transform on
a finer grid around it for the fraction of a pixel. This module adds what scikit-image does not:
the tapered window, the Gaussian low-pass that keeps the shot noise of a 5 e-/px frame from
dominating, the band limit, a search limited to small shifts, and the peak's significance.

Applying: :func:`shift_image` translates an image (Fourier or whole pixels),
:func:`align_to_low` moves a long exposure onto its short frame's pixels given the shift
measured between them, and :func:`border_for` says how many border pixels the move wrapped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass(frozen=True)
class Registration:
    """The measured shift of one image relative to another, and how much to trust it.

    Attributes
    ----------
    dy, dx
        ``moving(y, x) ≈ reference(y - dy, x - dx)``, in pixels.
    significance
        Height of the correlation peak above the correlation's background, in standard
        deviations of that background. Pure noise gives about 4-5 for a 512x512 frame (the
        largest of many random values); a shift is trustworthy above :data:`RELIABLE`.
    """

    dy: float
    dx: float
    significance: float

    @property
    def shift(self) -> tuple[float, float]:
        """``(dy, dx)``."""
        return (self.dy, self.dx)

    @property
    def reliable(self) -> bool:
        """Whether the peak stands clear of the noise (see :data:`RELIABLE`)."""
        return self.significance >= RELIABLE


#: Peak significance from which a registration is trusted (low-contrast fields at low dose,
#: e.g. flat support film, fall below it: their "shift" is noise).
RELIABLE = 8.0


class RegistrationOptions(TypedDict, total=False):
    """The keyword options of :func:`register` (their defaults and meaning are there)."""

    smooth_sigma_px: float
    whitening: float
    max_frequency: float | None
    upsample: int
    max_shift_px: float | None


def phase_correlation_shift(
    reference: ArrayLike, moving: ArrayLike, **options: Unpack[RegistrationOptions]
) -> tuple[float, float]:
    """Estimate the shift ``(dy, dx)`` of ``moving`` relative to ``reference``.

    A shorthand for ``register(...).shift``; see :func:`register` for the options.
    """
    return register(reference, moving, **options).shift


def register(
    reference: ArrayLike,
    moving: ArrayLike,
    *,
    smooth_sigma_px: float = 1.0,
    whitening: float = 0.0,
    max_frequency: float | None = None,
    upsample: int = 20,
    max_shift_px: float | None = None,
) -> Registration:
    """Estimate the shift of ``moving`` relative to ``reference`` and its significance.

    Parameters
    ----------
    reference, moving
        2-D images of the same shape.
    smooth_sigma_px
        Gaussian low-pass (in pixels) applied in Fourier space before whitening, which keeps
        shot noise at the highest frequencies from dominating a low-dose image. 0 disables it.
    whitening
        Exponent of the spectrum's magnitude divided out: 1 is classic phase correlation
        (sharpest peak, but noise-dominated for smooth low-dose images), 0 is plain
        cross-correlation, which measured most accurate (0.05-0.2 px) between 5 and
        1000 e-/px frames of sparse particles; whitening helps for strongly periodic images.
    max_frequency
        Use only spatial frequencies up to this (cycles/px); the band near Nyquist carries the
        camera's blur and any interpolation rather than the image content.
    upsample
        Sub-pixel precision: the shift is found to ``1 / upsample`` of a pixel.
    max_shift_px
        Look for the peak only within this distance of no shift: at very low dose a noise peak
        somewhere among all possible shifts can outgrow the true one, among a few hundred
        nearby shifts it rarely does.

    Returns
    -------
    Registration
        ``(dy, dx)`` such that ``moving(y, x) ≈ reference(y - dy, x - dx)``, and the peak's
        significance.
    """
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(moving, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"need two 2-D images of one shape, got {a.shape} and {b.shape}")
    # Tapering the borders (which do not wrap) stops them from dominating the spectrum; a flat
    # top keeps the interior unweighted, as a full Hann window would bias the shift.
    window = np.outer(_tukey(a.shape[0]), _tukey(a.shape[1]))
    fa = np.fft.fft2((a - a.mean()) * window)
    fb = np.fft.fft2((b - b.mean()) * window)
    cross = fb * np.conj(fa)
    cross /= np.maximum(np.abs(cross), 1e-12) ** whitening
    if smooth_sigma_px > 0:
        ky = np.fft.fftfreq(a.shape[0])[:, None]
        kx = np.fft.fftfreq(a.shape[1])[None, :]
        cross *= np.exp(-2 * (np.pi * smooth_sigma_px) ** 2 * (ky**2 + kx**2))
    if max_frequency is not None:
        ky = np.fft.fftfreq(a.shape[0])[:, None]
        kx = np.fft.fftfreq(a.shape[1])[None, :]
        cross *= ky**2 + kx**2 <= max_frequency**2
    corr = np.fft.ifft2(cross).real
    if max_shift_px is None:
        peak = _library_peak(cross, upsample)
    else:
        peak = _peak_near_zero(cross, corr, max_shift_px, upsample)
    coarse = (round(peak[0]) % corr.shape[0], round(peak[1]) % corr.shape[1])
    return Registration(
        dy=float(peak[0]), dx=float(peak[1]), significance=_peak_significance(corr, coarse)
    )


def _library_peak(cross: np.ndarray, upsample: int) -> tuple[float, float]:
    """The correlation peak of the filtered cross-power spectrum, by scikit-image.

    ``phase_cross_correlation`` in Fourier space (no normalisation: the spectrum is already
    filtered and whitened as asked) finds the coarse peak and refines it by the matrix-multiply
    DFT of Guizar-Sicairos et al. (2008) to ``1 / upsample`` px.
    """
    from skimage.registration import phase_cross_correlation

    shift, _, _ = phase_cross_correlation(
        cross, np.ones_like(cross), space="fourier", upsample_factor=upsample, normalization=None
    )
    return (float(shift[0]), float(shift[1]))


def _peak_near_zero(
    cross: np.ndarray, corr: np.ndarray, radius: float, upsample: int
) -> tuple[float, float]:
    """The highest correlation within ``radius`` px of no shift, refined to ``1 / upsample``.

    scikit-image searches every shift; this search is limited (at very low dose a noise peak
    elsewhere can outgrow the true one). The same DFT refinement, in two steps: tenths of a
    pixel over +-1.5 px, then ``1 / upsample`` around the best tenth.
    """
    search = np.where(_within(corr.shape, radius), corr, -np.inf)
    coarse = np.unravel_index(int(np.argmax(search)), corr.shape)
    # unwrap: peaks past the middle are negative shifts
    centre = [float(c - n if c > n // 2 else c) for c, n in zip(coarse, corr.shape, strict=True)]
    peak = (centre[0], centre[1])
    step, reach = 0.1, 1.5
    while True:
        peak = _refine(cross, peak, np.arange(-reach, reach + 1e-9, step))
        if step <= 1.0 / upsample + 1e-12:
            break
        step, reach = 1.0 / upsample, step
    return peak


def _refine(
    cross: np.ndarray, centre: tuple[float, float], offsets: np.ndarray
) -> tuple[float, float]:
    """The shift on the grid ``centre + offsets`` where the correlation of ``cross`` peaks."""
    ky = np.fft.fftfreq(cross.shape[0])
    kx = np.fft.fftfreq(cross.shape[1])
    rows = np.exp(2j * np.pi * np.outer(centre[0] + offsets, ky))
    cols = np.exp(2j * np.pi * np.outer(kx, centre[1] + offsets))
    fine = (rows @ cross @ cols).real
    iy, ix = np.unravel_index(int(np.argmax(fine)), fine.shape)
    return (float(centre[0] + offsets[iy]), float(centre[1] + offsets[ix]))


def _within(shape: tuple[int, ...], radius: float) -> np.ndarray:
    """Mask of the FFT-ordered shifts no farther than ``radius`` from zero."""
    dy = np.fft.fftfreq(shape[0], 1.0 / shape[0])[:, None]
    dx = np.fft.fftfreq(shape[1], 1.0 / shape[1])[None, :]
    return np.asarray(dy**2 + dx**2 <= radius**2)


def _peak_significance(corr: np.ndarray, peak: tuple[int, ...], exclude_px: int = 4) -> float:
    """(peak - background mean) / background std, the background being all but the peak."""
    background = np.ones(corr.shape, dtype=bool)
    for dy in range(-exclude_px, exclude_px + 1):
        for dx in range(-exclude_px, exclude_px + 1):
            background[(peak[0] + dy) % corr.shape[0], (peak[1] + dx) % corr.shape[1]] = False
    rest = corr[background]
    spread = float(rest.std())
    if spread == 0.0:
        return 0.0
    return float((corr[peak] - rest.mean()) / spread)


def _tukey(n: int, taper: float = 0.25) -> np.ndarray:
    """A window flat in the middle with cosine tapers over ``taper / 2`` of each end."""
    w = np.ones(n)
    m = max(int(taper * n / 2), 1)
    ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(m) + 0.5) / m))
    w[:m] = ramp
    w[n - m :] = ramp[::-1]
    return w


# --- applying a shift ------------------------------------------------------------------------


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
    so ``high`` is moved by ``(-dy, -dx)``. ``method`` is ``"none"`` (not moved),
    ``"integer"`` or ``"fourier"`` (see :func:`shift_image`); an unknown (NaN) or zero shift
    leaves it where it is.
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
