"""The detector model's mean response against the simulator's own sampler (Monte Carlo).

The required accuracy (issue 14): within 0.5 % of the Monte Carlo mean, or 0.005 e-, for doses
0.5-50 e-/px, binning 1-8, gain CV 0.5-1.3, read noise 1-5 e-, offset -1..+1 e-, light spread
0-0.08. The Gaussian approximation the model started with misses by up to 10 % there (gain CV
1.3, read noise 1 e-, 1-2 e-/px: the Gamma gains' skew), and by 0.9 % on the OneView at 5 e-/px.
"""

from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np
import pytest

from tem_acq.detector import COUNTING, DEFAULT_MODELS, ONEVIEW, DetectorModel
from tem_acq.sim import SimulationConfig, TEMSimulator
from tem_acq.sim.detector import CountingDetector, IntegratingDetector, detector_from_model

CPE = 44.0


def _model(cv: float, read: float, offset: float, spread: float) -> DetectorModel:
    return DetectorModel(
        kind="integrating",
        gain_cv=cv,
        read_noise_e=read,
        dark_offset_e=offset,
        spread_x=spread,
        spread_y=0.8 * spread,
        row_noise_fraction=0.3,
    )


def _monte_carlo(model: DetectorModel, lam: float, binning: int, frames: int) -> float:
    """Mean observed electrons of flat frames from the simulator's sampler (fresh seed each)."""
    det = IntegratingDetector.from_model(model, CPE)
    flat = np.full((512, 512), lam, np.float32)
    means = [
        det.sample(flat, np.random.default_rng([7, i]), binning)[1:-1, 1:-1].mean(dtype=np.float64)
        / CPE
        for i in range(frames)
    ]
    return float(np.mean(means))


def _check(model: DetectorModel, lam: float, binning: int, frames: int) -> None:
    mc = _monte_carlo(model, lam, binning, frames)
    exact = float(model.mean_response(lam, binning))
    tol = max(0.005 * mc, 0.005)
    assert abs(exact - mc) <= tol, (model, lam, binning, exact, mc, tol)


@pytest.mark.parametrize(
    ("model", "lam"),
    [
        (ONEVIEW, 1.0),  # the Gaussian approximation: 1.628 (1.2 tolerances off)
        (ONEVIEW, 5.0),  # Gaussian: 4.943 (1.8 tolerances off)
        (_model(1.3, 1.0, -1.0, 0.0), 1.0),  # Gaussian: 0.766 against 0.693 (14.7 off)
    ],
)
def test_mean_response_matches_the_sampler(model: DetectorModel, lam: float) -> None:
    _check(model, lam, 1, frames=16)


@pytest.mark.slow
def test_mean_response_matches_the_sampler_over_the_whole_range() -> None:
    corners = itertools.product((0.5, 1.3), (1.0, 5.0), (-1.0, 1.0), (0.0, 0.08))
    for cv, read, offset, spread in corners:
        model = _model(cv, read, offset, spread)
        for lam, binning in itertools.product((0.5, 1.0, 5.0, 50.0), (1, 2, 4, 8)):
            _check(model, lam, binning, frames=12)


def test_no_electrons_is_the_clipped_gaussian_exactly() -> None:
    """At dose 0 only read noise and offset remain: E max(N(o, s^2), 0) in closed form."""
    o, s = ONEVIEW.dark_offset_e, ONEVIEW.read_noise_e * 2
    z = o / s
    closed = o * 0.5 * (1 + math.erf(z / math.sqrt(2))) + s * math.exp(-0.5 * z * z) / math.sqrt(
        2 * math.pi
    )
    assert float(ONEVIEW.mean_response(0.0, 2)) == pytest.approx(closed, abs=1e-9)


def test_corrected_dose_inverts_the_response_and_slope_is_its_derivative() -> None:
    lam = np.array([0.0, 0.3, 0.5, 1.0, 2.0, 5.0, 20.0, 50.0, 400.0])
    for b in (1, 4):
        g = ONEVIEW.mean_response(lam, b)
        assert np.all(np.diff(g) > 0)
        np.testing.assert_allclose(ONEVIEW.corrected_dose(g, b), lam, atol=1e-9)
        h = 1e-3
        numeric = ONEVIEW.mean_response(lam[1:] + h, b) - ONEVIEW.mean_response(lam[1:] - h, b)
        np.testing.assert_allclose(ONEVIEW.response_slope(lam[1:], b), numeric / (2 * h), atol=0.01)
    # below the response at 0 the dose is 0; far above, offset only
    assert float(ONEVIEW.corrected_dose(0.1)) == 0.0
    assert float(ONEVIEW.corrected_dose(1000.0)) == pytest.approx(1000.0 - ONEVIEW.dark_offset_e)


def test_counting_is_linear() -> None:
    lam = np.array([0.0, 0.5, 5.0])
    assert COUNTING.is_linear and not ONEVIEW.is_linear
    np.testing.assert_array_equal(COUNTING.mean_response(lam), lam)
    np.testing.assert_array_equal(COUNTING.corrected_dose(lam), lam)
    np.testing.assert_array_equal(COUNTING.response_slope(lam), np.ones(3))


def test_the_simulator_samples_the_config_s_model() -> None:
    for kind in ("counting", "integrating"):
        cfg = SimulationConfig(detector=kind)
        sim = TEMSimulator(cfg.model_copy(update={"size": 64}))
        assert sim.detector.detector_model == cfg.detector_model == DEFAULT_MODELS[kind]
    cfg = SimulationConfig(
        detector="integrating",
        read_noise=101.3,
        dark_offset=-7.7,
        gain_cv=0.77,
        counts_per_electron=39.1,
    )
    model = cfg.detector_model
    assert model.read_noise_e == pytest.approx(101.3 / 39.1)
    assert model.dark_offset_e == pytest.approx(-7.7 / 39.1)
    det = detector_from_model(model, 39.1)
    assert isinstance(det, IntegratingDetector) and det.detector_model == model
    assert det.read_noise == pytest.approx(101.3) and det.dark_offset == pytest.approx(-7.7)
    assert isinstance(detector_from_model(COUNTING, 1.0), CountingDetector)
    with pytest.raises(ValueError, match="clip"):
        IntegratingDetector.from_model(ONEVIEW.model_copy(update={"clip_at_zero": False}), 44.0)


@pytest.mark.parametrize(
    ("settings", "digest"),
    [
        ({"detector": "counting"}, "79c50555116fb5902a67030dc1dac0563890db59"),
        ({"detector": "integrating"}, "54b64166d334481e3dc496cf9b41038bdc1316e4"),
        (
            {
                "detector": "integrating",
                "read_noise": 101.3,
                "dark_offset": -7.7,
                "gain_cv": 0.77,
                "counts_per_electron": 39.1,
            },
            "aae2fc8efb8265fc3936d3ca301b14542716aad0",
        ),
    ],
)
def test_simulated_frames_are_unchanged_by_the_model(settings: dict, digest: str) -> None:
    """Building the simulated detector from the DetectorModel keeps every frame bit-identical
    (digests recorded with the simulator before it read the model)."""
    sim = TEMSimulator(SimulationConfig(size=128, seed=3, **settings))
    h = hashlib.sha1()
    for b in (1, 2):
        h.update(sim.render(0.002, binning=b).tobytes())
    assert h.hexdigest() == digest
