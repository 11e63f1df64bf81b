"""Image-quality metrics for denoised low-dose frames (on scipy.ndimage and scikit-image).

Conventions (``docs/design/quality.md``): images are compared *dose-normalised* (electrons per
pixel divided by the frame's dose, so 1 is vacuum) and PSNR uses the data range of the **clean
reference** (its max - min), never of the image under test.

Definitions
-----------
PSNR
    ``10 log10(range**2 / mean((image - reference)**2))``, ``range = max(ref) - min(ref)``.
SSIM
    Wang et al. (2004) with an 11-tap Gaussian window (sigma 1.5 px), ``K1 = 0.01``,
    ``K2 = 0.03``, the same data range, averaged over the pixels whose window lies inside the
    image.
Oracle Gaussian
    The raw frame filtered by the Gaussian whose sigma (searched over 0.3-24 px) gives the
    highest PSNR against the reference: the best a linear isotropic filter can do, an upper
    bound since it peeks at the reference.
Edge mask
    Gradient magnitude of the clean reference smoothed by sigma 1.5 px, above its 85th
    percentile, dilated by 3 px: the particles' edges and lattice fringes, where denoisers
    blur. Edge-masked PSNR is PSNR over those pixels (same data range).
Mean shift
    ``100 (mean(denoised) - mean(input)) / mean(input)``: what the denoiser did to the
    electron total (the input's total is the unbiased estimate; pass within 1 %).
Vacuum structure ratio
    In the vacuum (eroded by 3 sigma), the rms of the residual ``denoised - reference`` after a
    Gaussian low-pass (sigma 3 px), divided by the same for the raw frame. The raw frame's
    residual is pure shot noise, unbiased, so its low-pass rms is what noise alone leaves at
    that scale. A denoiser that only removes noise scores <= 1 (0 if perfect); one that
    invents blobs, rings or offsets all over the vacuum scores > 1. Its local companion
    ``max_z`` is the largest low-passed residual in units of that noise rms (a single invented
    feature). Pass: ratio <= :data:`VACUUM_PASS_RATIO` and max_z <= :data:`VACUUM_MAX_Z`.
Flip/rotation consistency
    For each of the 8 flips/90-degree rotations ``T``: PSNR of ``T^-1(denoise(T(x)))`` against
    the reference minus PSNR of ``denoise(x)``; reported as the largest absolute difference
    (dB). An equivariant denoiser scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Vacuum structure ratio above which a denoiser is said to invent structure in vacuum.
VACUUM_PASS_RATIO = 1.2
#: Largest local low-passed residual in vacuum (in noise rms) before it counts as invented.
VACUUM_MAX_Z = 5.0
#: Gaussian low-pass (px) of the invented-structure checks.
STRUCTURE_SIGMA_PX = 3.0
#: Sigmas searched by the oracle Gaussian (px).
ORACLE_SIGMAS: tuple[float, ...] = tuple(float(s) for s in np.geomspace(0.3, 24.0, 41))


def gaussian_filter(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter of the last two axes (mirror borders), float64: ``scipy.ndimage``'s.

    The kernel's radius is ``ceil(4 sigma)`` (at least 1), as this project has always used.
    """
    from scipy import ndimage

    a = np.asarray(image, dtype=np.float64)
    if sigma <= 0:
        return a.copy()
    radius = max(1, math.ceil(4.0 * sigma))
    return np.asarray(
        ndimage.gaussian_filter(a, sigma, mode="reflect", radius=radius, axes=(-2, -1))
    )


def data_range(reference: np.ndarray) -> float:
    """``max - min`` of the clean reference (1e-12 at least)."""
    ref = np.asarray(reference, dtype=np.float64)
    return max(float(ref.max() - ref.min()), 1e-12)


def _compared(
    image: np.ndarray, reference: np.ndarray, data_range_value: float | None
) -> tuple[np.ndarray, np.ndarray, float]:
    """``image`` and ``reference`` as float64 of one shape, and the data range to use.

    The range is the given one, else the clean reference's (:func:`data_range`): never the
    range of the image under test.
    """
    a = np.asarray(image, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"image {a.shape} and reference {b.shape} differ in shape")
    return a, b, data_range(b) if data_range_value is None else float(data_range_value)


def psnr(
    image: np.ndarray,
    reference: np.ndarray,
    *,
    data_range_value: float | None = None,
    mask: np.ndarray | None = None,
) -> float:
    """PSNR (dB) of ``image`` against ``reference``.

    Parameters
    ----------
    image, reference
        Same-shape images (dose-normalised).
    data_range_value
        Peak-to-peak range; default :func:`data_range` of ``reference``.
    mask
        Only these pixels count (the range still comes from the whole reference).

    Returns
    -------
    PSNR in dB (``inf`` for identical images).
    """
    a, b, rng = _compared(image, reference, data_range_value)
    d = (a - b) ** 2
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            return float("nan")
        d = d[m]
    mse = float(d.mean())
    return float("inf") if mse == 0 else 10.0 * math.log10(rng * rng / mse)


def ssim(
    image: np.ndarray,
    reference: np.ndarray,
    *,
    data_range_value: float | None = None,
    mask: np.ndarray | None = None,
) -> float:
    """Mean SSIM (Gaussian window, sigma 1.5 px, 11 taps) of ``image`` against ``reference``.

    With ``mask``, the SSIM map is averaged over masked pixels (window centres) only.
    """
    from skimage.metrics import structural_similarity

    a, b, rng = _compared(image, reference, data_range_value)
    # Wang et al.'s constants and window; skimage averages over windows inside the image
    mean, full = structural_similarity(
        a, b, data_range=rng, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        full=True,
    )  # fmt: skip
    if mask is None:
        return float(mean)
    m = np.asarray(mask, dtype=bool)[_SSIM_PAD:-_SSIM_PAD, _SSIM_PAD:-_SSIM_PAD]
    if not m.any():
        return float("nan")
    return float(full[_SSIM_PAD:-_SSIM_PAD, _SSIM_PAD:-_SSIM_PAD][m].mean())


#: Pixels at each border whose SSIM window would leave the image (the 11-tap window's radius).
_SSIM_PAD = 5


def oracle_gaussian(
    raw: np.ndarray,
    reference: np.ndarray,
    sigmas: tuple[float, ...] = ORACLE_SIGMAS,
    *,
    match_mean: bool = True,
) -> tuple[np.ndarray, float]:
    """The Gaussian-filtered ``raw`` with the sigma that maximises PSNR against ``reference``.

    With ``match_mean`` (an oracle too) the filtered image is shifted to the reference's mean:
    an integrating camera's offset and clip bias the raw mean at low dose, and a baseline that
    keeps that bias would flatter any denoiser that corrects it.

    Returns
    -------
    ``(filtered, sigma)``.
    """
    rng = data_range(reference)
    best: tuple[float, float, np.ndarray] | None = None
    shift = float(np.mean(reference) - np.mean(raw)) if match_mean else 0.0
    for s in sigmas:
        f = gaussian_filter(raw, s) + shift
        p = psnr(f, reference, data_range_value=rng)
        if best is None or p > best[0]:
            best = (p, s, f)
        elif p < best[0] - 1.0:  # PSNR is unimodal in sigma: stop once well past the peak
            break
    assert best is not None
    return best[2], best[1]


def _radial_mean(power: np.ndarray) -> np.ndarray:
    """``power`` (an FFT-ordered 2-D spectrum) averaged over rings of equal frequency."""
    from scipy import ndimage

    h, w = power.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    ring = np.minimum(np.rint(np.hypot(fy, fx) * max(h, w)).astype(np.intp), max(h, w))
    means = np.asarray(ndimage.mean(power, labels=ring, index=np.arange(int(ring.max()) + 1)))
    return means[ring]


def oracle_wiener(raw: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The best linear shift-invariant filter of ``raw``, knowing the clean image (an oracle).

    Each frequency ``f`` is weighted by ``|T(f)|^2 / (|T(f)|^2 + N(f))``, with ``T`` the
    spectrum of the clean ``truth`` (mean removed) and ``N`` the noise power spectrum,
    measured on ``raw - truth`` and averaged over rings of equal frequency. Knowing ``|T|^2``
    frequency by frequency (lattice reflections included) makes it an upper bound for any
    linear filter, and for a Gaussian random texture such as an amorphous film no estimator
    can do much better than it. It cannot be used on real data: it reports how much of the
    signal survives the noise, beside what the oracle Gaussian gets.

    Parameters
    ----------
    raw, truth
        Same-shape images (dose-normalised); ``truth`` must be noise-free.

    Returns
    -------
    The filtered image (float64, ``raw``'s mean kept).
    """
    a = np.asarray(raw, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    if a.shape != t.shape or a.ndim != 2:
        raise ValueError(f"raw {a.shape} and truth {t.shape} must be same-shape 2-D images")
    signal = np.abs(np.fft.fft2(t - t.mean())) ** 2
    noise = a - t
    noise_power = _radial_mean(np.abs(np.fft.fft2(noise - noise.mean())) ** 2)
    gain = signal / np.maximum(signal + noise_power, np.finfo(np.float64).tiny)
    mean = a.mean()
    return np.fft.ifft2(np.fft.fft2(a - mean) * gain).real + mean


def _disc(r: int) -> np.ndarray:
    """The disc of radius ``r`` pixels, the structuring element of the masks' morphology."""
    d = np.arange(-r, r + 1)
    return np.asarray(d[:, None] ** 2 + d[None, :] ** 2 <= r * r)


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a disc of radius ``r`` (``scipy.ndimage.binary_dilation``)."""
    from scipy import ndimage

    m = np.asarray(mask, dtype=bool)
    return m.copy() if r <= 0 else np.asarray(ndimage.binary_dilation(m, structure=_disc(r)))


def erode(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary erosion by a disc of radius ``r`` (outside the image counts as not in the mask)."""
    from scipy import ndimage

    m = np.asarray(mask, dtype=bool)
    if r <= 0:
        return m.copy()
    return np.asarray(ndimage.binary_erosion(m, structure=_disc(r), border_value=0))


def edge_mask(
    clean: np.ndarray, *, sigma: float = 1.5, percentile: float = 85.0, dilate_px: int = 3
) -> np.ndarray:
    """Pixels at edges and fine structure of a clean image (see the module docstring)."""
    s = gaussian_filter(clean, sigma)
    gy, gx = np.gradient(s)
    g = np.hypot(gy, gx)
    thr = np.percentile(g, percentile)
    if not thr > 0:
        return np.zeros(g.shape, dtype=bool)
    return dilate(g > thr, dilate_px)


def mean_shift_pct(denoised: np.ndarray, raw: np.ndarray) -> float:
    """``100 (mean(denoised) - mean(raw)) / mean(raw)`` (both in electrons)."""
    m = float(np.mean(raw, dtype=np.float64))
    return float("nan") if m == 0 else 100.0 * (float(np.mean(denoised, dtype=np.float64)) - m) / m


def mean_error_pct(image: np.ndarray, reference: np.ndarray) -> float:
    """``100 (mean(image) - mean(reference)) / mean(reference)``."""
    return mean_shift_pct(image, reference)


@dataclass(frozen=True)
class VacuumCheck:
    """Structure invented in vacuum (see the module docstring).

    Attributes
    ----------
    ratio
        rms of the low-passed residual ``G * (denoised - reference)`` over that of the raw
        frame, in the eroded vacuum (1 = as rough as the raw frame at that scale).
    max_z
        Largest ``|G * (denoised - reference)|`` in the vacuum in units of the raw frame's
        low-passed noise rms: a local feature (a blob, a rectangle) shows here even when it
        is too small to move the rms. Noise alone stays below about 4.5.
    passed
        ``ratio <= VACUUM_PASS_RATIO`` and ``max_z <= VACUUM_MAX_Z``.
    """

    ratio: float
    max_z: float
    passed: bool


def vacuum_structure(
    denoised: np.ndarray,
    raw: np.ndarray,
    reference: np.ndarray,
    vacuum: np.ndarray,
    *,
    sigma: float = STRUCTURE_SIGMA_PX,
) -> VacuumCheck | None:
    """Low-pass residual of a denoised frame in vacuum, compared with the raw frame's.

    Parameters
    ----------
    denoised, raw, reference
        Same-shape images (dose-normalised); ``reference`` is clean (truth or long exposure).
    vacuum
        Boolean vacuum mask; it is eroded by ``3 sigma`` so that the low-pass does not mix in
        specimen.
    sigma
        Gaussian low-pass (px).

    Returns
    -------
    The check, or ``None`` when fewer than 64 vacuum pixels remain after erosion.
    """
    core = erode(np.asarray(vacuum, dtype=bool), math.ceil(3 * sigma))
    if core.sum() < 64:
        return None
    ref = np.asarray(reference, dtype=np.float64)
    rd = gaussian_filter(np.asarray(denoised, np.float64) - ref, sigma)[core]
    rr = gaussian_filter(np.asarray(raw, np.float64) - ref, sigma)[core]
    noise = math.sqrt(float(np.mean(rr**2)))
    if noise == 0:
        return None
    ratio = math.sqrt(float(np.mean(rd**2))) / noise
    max_z = float(np.abs(rd).max()) / noise
    return VacuumCheck(ratio, max_z, ratio <= VACUUM_PASS_RATIO and max_z <= VACUUM_MAX_Z)


def vacuum_structure_ratio(
    denoised: np.ndarray,
    raw: np.ndarray,
    reference: np.ndarray,
    vacuum: np.ndarray,
    *,
    sigma: float = STRUCTURE_SIGMA_PX,
) -> float:
    """:attr:`VacuumCheck.ratio` of :func:`vacuum_structure` (NaN without enough vacuum)."""
    check = vacuum_structure(denoised, raw, reference, vacuum, sigma=sigma)
    return float("nan") if check is None else check.ratio


@dataclass(frozen=True)
class Consistency:
    """Flip/rotation consistency of a denoiser on one frame.

    Attributes
    ----------
    max_abs_db
        Largest ``|PSNR(T^-1 denoise(T x)) - PSNR(denoise x)|`` over the 8 transforms (dB).
    min_agreement_db
        Smallest PSNR between ``T^-1 denoise(T x)`` and ``denoise(x)`` (how alike they are).
    psnr_db
        PSNR of each of the 8 variants against the reference (index = transform, 0 = identity).
    """

    max_abs_db: float
    min_agreement_db: float
    psnr_db: tuple[float, ...]


def flip_consistency(
    denoise: Callable[[np.ndarray], np.ndarray],
    raw_counts: np.ndarray,
    reference: np.ndarray,
    *,
    normalize: float = 1.0,
    crop: tuple[slice, slice] | None = None,
) -> Consistency:
    """PSNR spread of a denoiser over the 8 flips/90-degree rotations of its input.

    Parameters
    ----------
    denoise
        Raw counts ``(y, x)`` -> electrons ``(y, x)``.
    raw_counts
        The raw frame (square frames use all 8 transforms; others the 4 that keep the shape).
    reference
        Clean reference, dose-normalised.
    normalize
        Divide the denoised electrons by this (the frame's dose) before comparing.
    crop
        Compare only this window of each output (turned back), e.g. without a registration
        border; ``reference`` is then already cropped to it.
    """
    from tem_acq.denoise.dihedral import dihedral, inverse_dihedral

    h, w = raw_counts.shape
    ks = range(8) if h == w else (0, 2, 4, 6)
    rng = data_range(reference)
    outs = []
    for k in ks:
        d = denoise(np.ascontiguousarray(dihedral(raw_counts, k)))
        out = np.asarray(inverse_dihedral(d, k), dtype=np.float64)
        outs.append((out if crop is None else out[crop]) / normalize)
    ps = [psnr(o, reference, data_range_value=rng) for o in outs]
    agree = [psnr(o, outs[0], data_range_value=rng) for o in outs[1:]]
    return Consistency(
        max_abs_db=float(max(abs(p - ps[0]) for p in ps)),
        min_agreement_db=float(min(agree)) if agree else float("inf"),
        psnr_db=tuple(float(p) for p in ps),
    )


@dataclass(frozen=True)
class FramePairCheck:
    """Two frames of one field (no ground truth): do they denoise alike, and honestly.

    Attributes
    ----------
    psnr_raw_db
        PSNR between the two raw frames (electrons, data range of the denoised mean).
    psnr_denoised_db
        PSNR between the two denoised frames (same range).
    structure_ratio
        For each frame ``a`` (of ``a, b``): rms of ``G * (denoise(a) - (a + b) / 2)`` over rms
        of ``G * (a - b) / 2`` (``G``: Gaussian sigma 3 px). The denominator is the noise at
        that scale; the numerator is noise too unless the denoiser added something that is in
        neither input. The larger of the two frames' ratios; pass <= :data:`VACUUM_PASS_RATIO`.
    outlier_fraction
        Fraction of pixels where ``|G * (denoise(a) - (a + b) / 2)|`` exceeds 5 times the noise
        rms at that scale (local invented features; ~0 for noise alone).
    passed
        ``structure_ratio <= VACUUM_PASS_RATIO`` and ``outlier_fraction <= 1e-3``.
    """

    psnr_raw_db: float
    psnr_denoised_db: float
    structure_ratio: float
    outlier_fraction: float
    passed: bool


def frame_pair_check(
    a_e: np.ndarray, b_e: np.ndarray, da_e: np.ndarray, db_e: np.ndarray
) -> FramePairCheck:
    """:class:`FramePairCheck` of raw frames ``a_e, b_e`` and their denoised ``da_e, db_e``.

    All four in electrons per pixel, same shape.
    """
    a, b = np.asarray(a_e, np.float64), np.asarray(b_e, np.float64)
    da, db = np.asarray(da_e, np.float64), np.asarray(db_e, np.float64)
    if not (a.shape == b.shape == da.shape == db.shape):
        raise ValueError("the two frames and their denoised versions must have one shape")
    clean = 0.5 * (da + db)
    rng = float(np.percentile(clean, 99.9) - np.percentile(clean, 0.1)) or data_range(clean)
    mean_ab = 0.5 * (a + b)
    s = STRUCTURE_SIGMA_PX
    noise = gaussian_filter(0.5 * (a - b), s)
    m = math.ceil(3 * s)  # mirrored borders are not independent noise
    inner = (slice(m, -m), slice(m, -m))
    noise_rms = math.sqrt(float(np.mean(noise[inner] ** 2)))
    ratios, outliers = [], []
    for d in (da, db):
        r = gaussian_filter(d - mean_ab, s)[inner]
        ratios.append(math.sqrt(float(np.mean(r**2))) / noise_rms if noise_rms else float("nan"))
        outliers.append(float(np.mean(np.abs(r) > 5 * noise_rms)) if noise_rms else float("nan"))
    ratio, out = max(ratios), max(outliers)
    return FramePairCheck(
        psnr_raw_db=psnr(a, b, data_range_value=rng),
        psnr_denoised_db=psnr(da, db, data_range_value=rng),
        structure_ratio=ratio,
        outlier_fraction=out,
        passed=bool(ratio <= VACUUM_PASS_RATIO and out <= 1e-3),
    )
