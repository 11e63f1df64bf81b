"""The simulated microscope: API, dose, geometry, drift, binning, determinism, specimens."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pydantic import ValidationError

from tem_acq.registration import phase_correlation_shift
from tem_acq.sim import (
    DETECTOR_KINDS,
    SATURATION,
    SPECIMEN_KINDS,
    SimulationConfig,
    SimulationError,
    TEMSimulator,
    pair_noise_stats,
    power_spectrum,
)

# Au (fcc, a = 4.078 A) lattice planes (111), (200), (220) in cycles/px at 0.5 A/px
AU_FREQS = (np.sqrt(3) / 4.078 * 0.5, 2 / 4.078 * 0.5, np.sqrt(8) / 4.078 * 0.5)


@pytest.fixture(scope="module")
def nano() -> TEMSimulator:
    return TEMSimulator(SimulationConfig(specimen="nanoparticles", detector="counting"))


@pytest.fixture(scope="module")
def atomic() -> TEMSimulator:
    return TEMSimulator(SimulationConfig(specimen="atomic", detector="counting"))


def _field_without_holes(sim: TEMSimulator, start: float = 0.0) -> tuple[float, float]:
    for k in range(64):
        stage = (start + 1024.0 * k, 0.0)
        if sim.film_fraction(stage) == 1.0:
            return stage
    raise AssertionError("no hole-free field found")


# ---- API and configuration --------------------------------------------------------------


def test_kinds_are_published() -> None:
    assert SPECIMEN_KINDS == ("nanoparticles", "atomic")
    assert DETECTOR_KINDS == ("counting", "integrating")


def test_config_defaults_and_effective_values() -> None:
    cfg = SimulationConfig()
    assert (cfg.specimen, cfg.detector, cfg.dose_rate, cfg.size) == (
        "nanoparticles",
        "counting",
        2500.0,
        512,
    )
    assert cfg.drift_px_per_s == (0.0, 0.0)
    assert SimulationConfig(drift_px_per_s=1.5).drift_px_per_s == (1.5, 0.0)
    sim = TEMSimulator(SimulationConfig(detector="integrating", size=64))
    assert sim.counts_per_electron == 44.0
    assert sim.pixel_size_A == 30.0
    atomic = TEMSimulator(SimulationConfig(specimen="atomic", size=64, counts_per_electron=2.0))
    assert atomic.counts_per_electron == 2.0
    assert 0.25 <= atomic.pixel_size_A <= 1.0
    assert abs(atomic.wavelength_A - 0.02508) < 1e-4  # 200 kV


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dose_rate": -1.0}, "dose_rate"),
        ({"dose_rate": float("nan")}, "dose_rate"),
        ({"size": 0}, "size"),
        ({"specimen": "cells"}, "specimen"),
        ({"detector": "ccd"}, "detector"),
        ({"seed": -3}, "seed"),
        ({"drift_px_per_s": (float("inf"), 0.0)}, "drift_px_per_s"),
        ({"drift_px_per_s": (1.0, 2.0, 3.0)}, "drift_px_per_s"),
        ({"pixel_size_A": 0.0}, "pixel_size_A"),
        ({"exposure": 1.0}, "exposure"),  # extra fields are forbidden
        ({"detector": "integrating", "gain_cv": 0.0}, "gain_cv"),
        ({"detector": "counting", "read_noise": 100.0}, "read_noise"),
    ],
)
def test_invalid_config_is_rejected_with_a_clear_message(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        SimulationConfig(**kwargs)
    assert field in str(err.value)


@pytest.mark.parametrize(
    "call",
    [
        {"exposure_s": -0.1},
        {"exposure_s": float("nan")},
        {"exposure_s": 0.01, "binning": 3},
        {"exposure_s": 0.01, "stage_xy_px": (float("nan"), 0.0)},
        {"exposure_s": 0.01, "stage_xy_px": (1.0,)},
        {"exposure_s": 0.01, "t": float("inf")},
        {"exposure_s": 1e9},
    ],
)
def test_invalid_render_arguments_raise(call: dict) -> None:
    sim = TEMSimulator(SimulationConfig(size=64))
    with pytest.raises(SimulationError):
        sim.render(**call)
    with pytest.raises(ValueError):  # SimulationError is a ValueError too
        sim.expected_electrons(**call)


def test_binning_must_divide_the_sensor() -> None:
    sim = TEMSimulator(SimulationConfig(size=100))
    with pytest.raises(SimulationError, match="divide"):
        sim.render(0.01, binning=8)


@pytest.mark.parametrize("detector", DETECTOR_KINDS)
def test_frame_shape_dtype_and_truth(nano: TEMSimulator, detector: str) -> None:
    sim = TEMSimulator(SimulationConfig(detector=detector, size=128))
    for b in (1, 2, 4, 8):
        frame, truth = sim.render_with_truth(0.004, (10.0, -20.0), 0.0, binning=b)
        assert frame.dtype == np.uint16 and frame.shape == (128 // b, 128 // b)
        assert truth.dtype == np.float32 and truth.shape == frame.shape
        assert np.array_equal(truth, sim.expected_electrons(0.004, (10.0, -20.0), 0.0, b))


def test_transmission_map_api(nano: TEMSimulator) -> None:
    t = nano.transmission(-1000, 5000, 40, 60)
    assert t.dtype == np.float32 and t.shape == (40, 60)
    assert 0.0 <= t.min() and t.max() < 1.2
    # huge and negative coordinates work, and fractional ones interpolate between neighbours
    assert nano.transmission(-3.2e7, 9.9e8, 8, 8).shape == (8, 8)
    a = nano.transmission(100, 100, 1, 3)
    half = nano.transmission(100.5, 100, 1, 2)
    assert np.all(np.minimum(a[0, :2], a[0, 1:]) - 0.01 <= half[0])
    assert np.all(half[0] <= np.maximum(a[0, :2], a[0, 1:]) + 0.01)


def test_sim_never_imports_micro_manager() -> None:
    code = (
        "import sys, tem_acq.sim as s; s.TEMSimulator(s.SimulationConfig(size=32)).render(0.01);"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pycromanager', 'pymmcore',"
        " 'pymmcore_plus', 'torch')]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- dose and noise -----------------------------------------------------------------------


@pytest.mark.parametrize("detector", DETECTOR_KINDS)
def test_mean_scales_linearly_with_exposure(detector: str) -> None:
    sim = TEMSimulator(SimulationConfig(detector=detector, dose_rate=2500.0, seed=3))
    stage = _field_without_holes(sim)
    short = sim.render(0.002, stage).astype(np.float64).mean()
    long = sim.render(0.02, stage).astype(np.float64).mean()
    assert long / short == pytest.approx(10.0, rel=0.03)
    truth = sim.expected_electrons(0.002, stage)
    assert sim.expected_electrons(0.02, stage).mean() / truth.mean() == pytest.approx(10.0, 1e-5)
    # dose bookkeeping: e-/px through vacuum x transmission
    assert truth.mean() == pytest.approx(
        2500.0 * 0.002 * sim.transmission(stage[0] - 256, stage[1] - 256, 512, 512).mean(), rel=1e-4
    )


@pytest.mark.parametrize("exposure", [0.002, 0.02])
def test_counting_noise_is_poisson(nano: TEMSimulator, exposure: float) -> None:
    a = nano.render(exposure, (0.0, 0.0))
    b = nano.render(exposure, (0.0, 0.0))
    s = pair_noise_stats(a, b, 1.0)
    assert s.variance_ratio == pytest.approx(1.0, abs=0.02)
    assert abs(s.corr_x) < 0.01 and abs(s.corr_y) < 0.01  # no blur: white noise


def test_frames_average_to_the_truth_pixel_by_pixel() -> None:
    sim = TEMSimulator(SimulationConfig(size=128, dose_rate=2500.0))
    n = 60
    frames = np.stack([sim.render(0.004, (300.0, 40.0)) for _ in range(n)]).astype(np.float64)
    truth = sim.expected_electrons(0.004, (300.0, 40.0)).astype(np.float64)
    avg = frames.mean(axis=0)
    assert avg.mean() == pytest.approx(truth.mean(), rel=0.005)
    # per-pixel standardised error of the mean is N(0, 1) if every pixel is Poisson(truth)
    z2 = (avg - truth) ** 2 * n / truth
    assert z2.mean() == pytest.approx(1.0, abs=0.05)


def test_saturation_clips_at_65535_and_never_wraps() -> None:
    for detector in DETECTOR_KINDS:
        sim = TEMSimulator(SimulationConfig(detector=detector, size=64, dose_rate=1e8))
        frame, truth = sim.render_with_truth(1.0, (0.0, 0.0))
        bright = truth * sim.counts_per_electron > 2 * SATURATION
        assert bright.mean() > 0.9
        assert np.all(frame[bright] == SATURATION)
    zero = TEMSimulator(SimulationConfig(size=64, dose_rate=0.0)).render(1.0)
    assert not zero.any()


def test_binning_sums_counts(nano: TEMSimulator) -> None:
    t1 = nano.expected_electrons(0.002, (0.0, 0.0), binning=1).astype(np.float64)
    for b in (2, 4, 8):
        tb = nano.expected_electrons(0.002, (0.0, 0.0), binning=b).astype(np.float64)
        sums = t1.reshape(512 // b, b, 512 // b, b).sum(axis=(1, 3))
        np.testing.assert_allclose(tb, sums, rtol=1e-5)
    f1 = nano.render(0.002, (0.0, 0.0), binning=1).astype(np.float64)
    f4 = nano.render(0.002, (0.0, 0.0), binning=4).astype(np.float64)
    assert f4.shape == (128, 128)
    assert f4.sum() == pytest.approx(f1.sum(), rel=0.01)
    # the binned counts are still Poisson in the summed rate
    g4 = nano.render(0.002, (0.0, 0.0), binning=4)
    assert pair_noise_stats(f4, g4, 1.0).variance_ratio == pytest.approx(1.0, abs=0.05)


# ---- geometry: stage, drift, specimen change ----------------------------------------------


def test_stage_moves_show_a_different_field(nano: TEMSimulator) -> None:
    a = nano.expected_electrons(0.01, (0.0, 0.0))
    assert np.array_equal(a, nano.expected_electrons(0.01, (0.0, 0.0)))
    far = nano.expected_electrons(0.01, (5000.0, -3000.0))
    assert abs(np.corrcoef(a.ravel(), far.ravel())[0, 1]) < 0.3
    # a move of 200 px along x shows the same specimen 200 px further left
    moved = nano.expected_electrons(0.01, (200.0, 0.0))
    np.testing.assert_array_equal(a[:, 200:], moved[:, :-200])
    moved_y = nano.expected_electrons(0.01, (0.0, 64.0))
    np.testing.assert_array_equal(a[64:], moved_y[:-64])


@pytest.mark.parametrize("drift", [(4.0, -2.0), (1.3, 0.0), (0.0, 0.35)])
def test_drift_shifts_the_image_by_the_expected_amount(drift: tuple[float, float]) -> None:
    sim = TEMSimulator(SimulationConfig(drift_px_per_s=drift, seed=1))
    t = 2.5
    a = sim.expected_electrons(0.001, (0.0, 0.0), 0.0)
    b = sim.expected_electrons(0.001, (0.0, 0.0), t)
    dy, dx = phase_correlation_shift(a, b, max_frequency=0.25, whitening=1.0, smooth_sigma_px=0)
    # the field moves with the drift, so its content moves the other way in the image
    assert dx == pytest.approx(-drift[0] * t, abs=0.04)
    assert dy == pytest.approx(-drift[1] * t, abs=0.04)


def test_drift_misaligns_short_and_long_exposures() -> None:
    sim = TEMSimulator(SimulationConfig(drift_px_per_s=(2.0, 0.0)))
    short = sim.expected_electrons(0.002, (0.0, 0.0), 0.0)
    long = sim.expected_electrons(1.0, (0.0, 0.0), 0.0)
    dy, dx = phase_correlation_shift(
        short, long, max_frequency=0.25, whitening=1.0, smooth_sigma_px=0
    )
    assert dx == pytest.approx(-2.0 * 0.5, abs=0.05)  # the long exposure centres at t = 0.5 s
    assert dy == pytest.approx(0.0, abs=0.05)
    # and the drift during the long exposure blurs it (less high-frequency power)
    fine = (
        np.hypot(
            *np.meshgrid(np.fft.fftshift(np.fft.fftfreq(512)), np.fft.fftshift(np.fft.fftfreq(512)))
        )
        > 0.2
    )
    assert power_spectrum(long / 500.0)[fine].sum() < 0.8 * power_spectrum(short)[fine].sum()


def test_specimen_change_brightens_particles_only() -> None:
    cfg = SimulationConfig(specimen_change_per_s=0.02, seed=4)
    sim = TEMSimulator(cfg)
    early = sim.expected_electrons(0.01, (0.0, 0.0), 0.0)
    late = sim.expected_electrons(0.01, (0.0, 0.0), 20.0)
    particle = early < 0.5 * np.median(early)
    assert particle.mean() > 0.001
    assert np.all(late[particle] > early[particle])
    no_particle = sim.specimen.region(-256, -256, 512, 512).change == 0.0
    assert no_particle.mean() > 0.9
    np.testing.assert_allclose(late[no_particle], early[no_particle], rtol=1e-5)
    static = TEMSimulator(cfg.model_copy(update={"specimen_change_per_s": 0.0}))
    assert np.array_equal(
        static.expected_electrons(0.01, (0.0, 0.0), 0.0),
        static.expected_electrons(0.01, (0.0, 0.0), 20.0),
    )


# ---- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("detector", DETECTOR_KINDS)
def test_same_seed_same_calls_same_frames(detector: str) -> None:
    cfg = SimulationConfig(detector=detector, size=128, seed=11, drift_px_per_s=(0.3, 0.1))
    one, two = TEMSimulator(cfg), TEMSimulator(cfg)
    for k in range(3):
        args = (0.002 * (k + 1), (50.0 * k, 7.5), 0.1 * k)
        assert np.array_equal(one.render(*args), two.render(*args))
    other = TEMSimulator(cfg.model_copy(update={"seed": 12}))
    assert not np.array_equal(other.render(0.002), TEMSimulator(cfg).render(0.002))
    one.reset_noise()
    assert np.array_equal(one.render(0.002), TEMSimulator(cfg).render(0.002))


def test_specimen_does_not_depend_on_call_order() -> None:
    cfg = SimulationConfig(size=128, seed=5)
    first, second = TEMSimulator(cfg, tile_cache=2), TEMSimulator(cfg)
    a1 = first.expected_electrons(0.01, (0.0, 0.0))
    b1 = first.expected_electrons(0.01, (9000.0, -700.0))
    first.render(0.01, (123.0, 456.0))  # noise draws and cache eviction must not matter
    b2 = second.expected_electrons(0.01, (9000.0, -700.0))
    a2 = second.expected_electrons(0.01, (0.0, 0.0))
    assert np.array_equal(a1, a2) and np.array_equal(b1, b2)
    assert np.array_equal(first.expected_electrons(0.01, (0.0, 0.0)), a1)  # re-rendered tile


# ---- specimens ------------------------------------------------------------------------------


def test_nanoparticle_fields_have_particles_film_and_sometimes_vacuum(nano: TEMSimulator) -> None:
    fractions = [nano.film_fraction((2048.0 * k, 0.0)) for k in range(16)]
    with_holes = [k for k, f in enumerate(fractions) if 0.05 < f < 0.95]
    without = [k for k, f in enumerate(fractions) if f == 1.0]
    assert with_holes and without
    stage = (2048.0 * with_holes[0], 0.0)
    t = nano.transmission(stage[0] - 256, -256, 512, 512)
    vac = nano.vacuum_mask(int(stage[0]) - 256, -256, 512, 512)
    assert nano.vacuum_fraction(stage) == pytest.approx(vac.mean())
    assert vac.mean() > 0.02
    np.testing.assert_allclose(t[vac], 1.0, atol=0.01)
    clean = nano.transmission(2048.0 * without[0] - 256, -256, 512, 512)
    assert not nano.vacuum_mask(2048 * without[0] - 256, -256, 512, 512).any()
    # carbon film transmits ~87 %; Au-like particles are much darker
    assert 0.8 < np.median(clean) < 0.95
    assert (clean < 0.5).mean() > 0.001


def test_atomic_fields_show_lattice_fringes_and_sometimes_vacuum(atomic: TEMSimulator) -> None:
    n = 512
    f = np.fft.fftshift(np.fft.fftfreq(n))
    radius = np.hypot(f[:, None], f[None, :])
    ring = np.round(radius * n).astype(int)

    def lattice_peak(stage: tuple[float, float]) -> tuple[float, float]:
        ps = power_spectrum(atomic.transmission(stage[0] - 256, stage[1] - 256, n, n))
        # normalise by the median power at the same |g| (removes the CTF's Thon rings)
        med = np.array([np.median(ps[ring == k]) for k in range(ring.max() + 1)])
        norm = np.where((radius > 0.18) & (radius < 0.4), ps / med[ring], 0.0)
        k = int(np.argmax(norm))
        return float(norm.flat[k]), float(radius.flat[k])

    strength, freq = lattice_peak((0.0, 2048.0))  # a field with an Au particle
    assert strength > 200
    assert min(abs(freq - g) for g in AU_FREQS) < 0.015
    carbon_only, _ = lattice_peak((2048.0, 0.0))
    assert carbon_only < 60
    # the particle mask marks the nanocrystal of the first field, (almost) nothing of the second
    crystal = atomic.particle_mask(-256, 1792, n, n)
    assert atomic.particle_fraction((0.0, 2048.0)) == pytest.approx(crystal.mean())
    assert crystal.mean() > 0.1 and atomic.particle_fraction((2048.0, 0.0)) < 0.02
    inside = atomic.transmission(-256, 1792, n, n)[crystal]
    assert inside.std() > 2 * atomic.transmission(1792, -256, n, n).std()  # lattice contrast
    # lacey carbon: some fields are (partly) vacuum, imaged as flat intensity 1
    fractions = [atomic.film_fraction((2048.0 * k, 0.0)) for k in range(12)]
    assert min(fractions) < 0.5 and max(fractions) == 1.0
    k = int(np.argmin(fractions))
    assert atomic.vacuum_fraction((2048.0 * k, 0.0)) > 0.3


def test_subpixel_position_keeps_lattice_contrast(atomic: TEMSimulator) -> None:
    whole = atomic.transmission(-256, 1792, 512, 512)
    half = atomic.transmission(-255.5, 1792.5, 512, 512)
    f = np.fft.fftshift(np.fft.fftfreq(512))
    band = np.abs(np.hypot(f[:, None], f[None, :]) - AU_FREQS[1]) < 0.04
    ratio = power_spectrum(half)[band].sum() / power_spectrum(whole)[band].sum()
    assert ratio == pytest.approx(1.0, abs=0.1)


@pytest.mark.slow
def test_render_speed() -> None:
    import time

    for specimen in SPECIMEN_KINDS:
        for detector in DETECTOR_KINDS:
            sim = TEMSimulator(SimulationConfig(specimen=specimen, detector=detector))
            sim.render(0.002)
            times = []
            for _ in range(30):
                t0 = time.perf_counter()
                sim.render(0.002)
                times.append(time.perf_counter() - t0)
            assert np.median(times) < 0.015, (specimen, detector, np.median(times))
