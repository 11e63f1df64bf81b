from __future__ import annotations

import numpy as np
import pytest

from tem_acq.registration import phase_correlation_shift


def _blobs(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    img = np.zeros(shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(40):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(3, 9)
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    return img


def _fourier_shift(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    ky = np.fft.fftfreq(img.shape[0])[:, None]
    kx = np.fft.fftfreq(img.shape[1])[None, :]
    phase = np.exp(-2j * np.pi * (ky * dy + kx * dx))
    return np.fft.ifft2(np.fft.fft2(img) * phase).real


@pytest.mark.parametrize(("dy", "dx"), [(0.0, 0.0), (3.0, -5.0), (1.4, 2.7), (-7.25, 0.5)])
def test_recovers_integer_and_subpixel_shifts(dy: float, dx: float) -> None:
    # crops of a larger image, so content enters and leaves at the borders as with real drift
    rng = np.random.default_rng(0)
    big = _blobs((192, 224), rng)
    ref = big[32:160, 32:192]
    moved = _fourier_shift(big, dy, dx)[32:160, 32:192]
    est = phase_correlation_shift(ref, moved)
    assert est == pytest.approx((dy, dx), abs=0.4)


def test_works_between_a_low_dose_and_a_high_dose_image() -> None:
    rng = np.random.default_rng(1)
    big = 0.5 + _blobs((320, 320), rng)
    low = rng.poisson(5 * big[32:288, 32:288]).astype(float)
    shifted = _fourier_shift(big, 2.0, -3.0).clip(0)[32:288, 32:288]
    high = rng.poisson(1000 * shifted).astype(float)
    assert phase_correlation_shift(low, high) == pytest.approx((2.0, -3.0), abs=0.3)


def test_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        phase_correlation_shift(np.zeros((4, 4)), np.zeros((4, 5)))
