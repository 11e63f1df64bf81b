"""Image-quality metrics: PSNR/SSIM conventions, oracle Gaussian, edge mask, invented structure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tem_acq import metrics as M


def _disc(n: int = 96, r: float = 18.0, level: float = 0.4) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n]
    img = np.ones((n, n))
    img[(yy - n / 2) ** 2 + (xx - n / 2) ** 2 < r * r] = level
    return img


def test_psnr_uses_the_reference_range() -> None:
    ref = _disc()
    img = ref + 0.06  # constant error 0.06 on a range of 0.6 -> 20 dB
    assert M.psnr(img, ref) == pytest.approx(20.0, abs=1e-9)
    assert M.psnr(ref, ref) == math.inf
    # scaling both images together changes nothing (dose normalisation cancels)
    assert M.psnr(5 * img, 5 * ref) == pytest.approx(20.0, abs=1e-9)


def test_psnr_mask_and_shape_errors() -> None:
    ref = _disc()
    img = ref.copy()
    img[:10] += 0.6  # error only in the top rows
    mask = np.zeros(ref.shape, bool)
    mask[50:] = True
    assert M.psnr(img, ref, mask=mask) == math.inf
    assert math.isnan(M.psnr(img, ref, mask=np.zeros(ref.shape, bool)))
    with pytest.raises(ValueError, match="shape"):
        M.psnr(img[:10], ref)


def test_ssim_identity_noise_and_scale() -> None:
    rng = np.random.default_rng(0)
    ref = _disc()
    assert M.ssim(ref, ref) == pytest.approx(1.0)
    noisy = ref + rng.normal(0, 0.1, ref.shape)
    s = M.ssim(noisy, ref)
    assert 0 < s < 0.9
    assert M.ssim(3 * noisy, 3 * ref) == pytest.approx(s, rel=1e-9)


def test_gaussian_filter_keeps_constants_and_mean() -> None:
    flat = np.full((40, 50), 7.0)
    np.testing.assert_allclose(M.gaussian_filter(flat, 3.0), flat)
    rng = np.random.default_rng(1)
    img = rng.poisson(5.0, (64, 64)).astype(float)
    assert M.gaussian_filter(img, 2.0).mean() == pytest.approx(img.mean(), rel=2e-2)
    # a kernel wider than the image still works (scipy mirrors it again and again)
    assert np.isfinite(M.gaussian_filter(img[:8, :8], 5.0)).all()


def test_oracle_gaussian_beats_raw_on_poisson_noise() -> None:
    rng = np.random.default_rng(2)
    ref = _disc()
    raw = rng.poisson(5 * ref) / 5.0
    filtered, sigma = M.oracle_gaussian(raw, ref)
    assert sigma > 0.5
    assert M.psnr(filtered, ref) > M.psnr(raw, ref) + 8


def test_edge_mask_marks_the_rim_only() -> None:
    ref = _disc()
    m = M.edge_mask(ref)
    assert m[48, 48 - 18]  # on the rim
    assert not m[48, 48]  # centre of the disc
    assert not m[2, 2]  # far background
    assert not M.edge_mask(np.ones((32, 32))).any()


def test_mean_shift() -> None:
    assert M.mean_shift_pct(np.full(4, 1.01), np.ones(4)) == pytest.approx(1.0)
    assert math.isnan(M.mean_shift_pct(np.ones(4), np.zeros(4)))


def test_vacuum_structure_ratio_detects_invented_blobs() -> None:
    rng = np.random.default_rng(3)
    truth = np.ones((96, 96))
    vacuum = np.ones_like(truth, bool)
    raw = rng.poisson(5 * truth) / 5.0
    assert M.vacuum_structure_ratio(raw, raw, truth, vacuum) == pytest.approx(1.0)
    assert M.vacuum_structure_ratio(truth, raw, truth, vacuum) == 0.0
    smooth = M.gaussian_filter(raw, 4.0)
    assert M.vacuum_structure_ratio(smooth, raw, truth, vacuum) < 1.0
    check = M.vacuum_structure(smooth, raw, truth, vacuum)
    assert check is not None and check.passed and check.max_z < 4.5
    # a faint square like the paper's invented rectangle: small next to the frame, so the
    # rms barely moves, but the local residual stands far out of the noise
    invented = smooth.copy()
    invented[40:56, 40:56] -= 0.3
    bad = M.vacuum_structure(invented, raw, truth, vacuum)
    assert bad is not None and not bad.passed and bad.max_z > M.VACUUM_MAX_Z
    # structure all over the vacuum raises the rms ratio too
    rings = smooth + 0.15 * np.sin(np.arange(96) / 6.0)[None, :]
    assert M.vacuum_structure_ratio(rings, raw, truth, vacuum) > M.VACUUM_PASS_RATIO
    assert M.vacuum_structure(raw, raw, truth, np.zeros_like(vacuum)) is None
    assert math.isnan(M.vacuum_structure_ratio(raw, raw, truth, np.zeros_like(vacuum)))


def test_flip_consistency_of_equivariant_and_biased_filters() -> None:
    rng = np.random.default_rng(4)
    ref = _disc(64)
    counts = rng.poisson(5 * ref).astype(np.uint16)

    def gauss(c: np.ndarray) -> np.ndarray:
        return M.gaussian_filter(c, 2.0)

    def shifted(c: np.ndarray) -> np.ndarray:  # not equivariant: always moves content right
        return np.roll(M.gaussian_filter(c, 2.0), 3, axis=1)

    good = M.flip_consistency(gauss, counts, ref, normalize=5.0)
    assert good.max_abs_db < 1e-6
    assert len(good.psnr_db) == 8
    bad = M.flip_consistency(shifted, counts, ref, normalize=5.0)
    assert bad.max_abs_db > 0.1
    # non-square frames use the 4 shape-preserving transforms
    rect = M.flip_consistency(gauss, counts[:, :48], ref[:, :48], normalize=5.0)
    assert len(rect.psnr_db) == 4


def test_frame_pair_check_passes_honest_and_fails_inventing_denoisers() -> None:
    rng = np.random.default_rng(5)
    clean = 5.0 * _disc(128)
    a = rng.poisson(clean).astype(float)
    b = rng.poisson(clean).astype(float)
    honest = M.frame_pair_check(a, b, M.gaussian_filter(a, 2), M.gaussian_filter(b, 2))
    assert honest.passed
    assert honest.psnr_denoised_db > honest.psnr_raw_db
    da = M.gaussian_filter(a, 2)
    da[20:40, 20:40] += 2.0  # a feature in neither input
    bad = M.frame_pair_check(a, b, da, M.gaussian_filter(b, 2))
    assert not bad.passed
    assert bad.structure_ratio > M.VACUUM_PASS_RATIO
    with pytest.raises(ValueError):
        M.frame_pair_check(a, b[:10], da, da)


def test_oracle_wiener_keeps_lattice_peaks_that_a_gaussian_blurs() -> None:
    # A lattice (period 5 px) in Poisson noise: the per-frequency oracle keeps its reflections
    # and drops the noise between them, far beyond the best Gaussian; on a flat truth it
    # returns (almost) the flat image.
    rng = np.random.default_rng(3)
    yy, xx = np.meshgrid(np.arange(128), np.arange(128), indexing="ij")
    truth = 1 + 0.3 * np.cos(2 * np.pi * xx / 5.0) * np.cos(2 * np.pi * yy / 5.0)
    raw = rng.poisson(5 * truth) / 5.0
    wiener = M.oracle_wiener(raw, truth)
    gauss, _ = M.oracle_gaussian(raw, truth)
    assert abs(wiener.mean() - raw.mean()) < 1e-9
    assert M.psnr(wiener, truth) > M.psnr(gauss, truth) + 6
    flat = np.ones((64, 64))
    out = M.oracle_wiener(rng.poisson(5.0, size=(64, 64)) / 5.0, flat)
    assert out.std() < 1e-6
    with pytest.raises(ValueError, match="same-shape"):
        M.oracle_wiener(raw, truth[:64])
