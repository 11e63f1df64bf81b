"""Pairs recorded from noise-free fields with drawn cameras (tem_acq.pairs.fields)."""

from __future__ import annotations

import numpy as np
import pytest

from tem_acq.detector import DetectorModel
from tem_acq.pairs.fields import pairs_from_fields
from tem_acq.registration import phase_correlation_shift
from tem_acq.sim.fields import Field
from tem_acq.sim.fields.detectors import (
    DETECTORS_INDEPENDENT,
    DETECTORS_TRAIN,
    DetectorRecipe,
)


def _field(seed: int, kind: str = "low-mag", size: int = 96) -> Field:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    intensity = np.ones((size, size), np.float32)
    for _ in range(6):
        cy, cx, r = rng.uniform(10, size - 10), rng.uniform(10, size - 10), rng.uniform(4, 10)
        intensity[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] *= 0.4
    particles = intensity < 1.0
    vacuum = ~particles
    return Field(intensity, 20.0, vacuum, particles, kind, {"seed": seed})


def test_pairs_carry_truth_cameras_and_shifts() -> None:
    fields = [_field(1), _field(2, "atomic")]
    pairs = pairs_from_fields(fields, DETECTORS_TRAIN, seed=5, short_doses=(2.0, 20.0))
    assert len(pairs) == 4
    assert list(pairs.field) == [0, 0, 1, 1]
    assert pairs.specimen == ["nanoparticles"] * 2 + ["atomic"] * 2
    np.testing.assert_allclose(pairs.low_dose, [2.0, 20.0, 2.0, 20.0])
    np.testing.assert_allclose(pairs.truth[1], fields[0].intensity * 20.0, rtol=1e-6)
    assert pairs.detector_model is not None and pairs.binning is not None
    for i in range(len(pairs)):
        model: DetectorModel = pairs.detector_model[i]
        assert model.kind == pairs.detector[i]
        assert pairs.binning[i] in DETECTORS_TRAIN.binning
    # the recorded shift is the one registration measures between the long exposure and truth
    measured = phase_correlation_shift(pairs.truth[0], pairs.high[0].astype(np.float64))
    np.testing.assert_allclose(measured, pairs.shift[0], atol=0.15)


def test_counting_frames_have_the_dose_and_poisson_noise() -> None:
    counting = DETECTORS_TRAIN.model_copy(update={"kinds": ("counting",)})
    flat = Field(
        np.ones((128, 128), np.float32),
        1.0,
        np.ones((128, 128), bool),
        np.zeros((128, 128), bool),
        "atomic",
    )
    pairs = pairs_from_fields([flat], counting, seed=0, short_doses=(5.0,), max_shift_px=0.0)
    low = pairs.low[0].astype(np.float64)
    assert abs(low.mean() - 5.0) < 0.1
    assert abs(low.var() - 5.0) < 0.3
    assert abs(pairs.high[0].mean() - 1000.0) < 3.0


def test_recording_is_deterministic_per_seed() -> None:
    fields = [_field(3)]
    a = pairs_from_fields(fields, DETECTORS_TRAIN, seed=9)
    b = pairs_from_fields(fields, DETECTORS_TRAIN, seed=9)
    c = pairs_from_fields(fields, DETECTORS_TRAIN, seed=10)
    np.testing.assert_array_equal(a.low, b.low)
    np.testing.assert_array_equal(a.low_dose, b.low_dose)
    assert not np.array_equal(a.low_dose, c.low_dose)
    assert ((a.low_dose >= 0.5) & (a.low_dose <= 50.0)).all()


def test_independent_cameras_lie_outside_every_training_range() -> None:
    for name in ("gain_cv", "read_noise_e", "dark_offset_e", "spread", "counts_per_electron"):
        lo, hi = getattr(DETECTORS_TRAIN, name)
        ind_lo, ind_hi = getattr(DETECTORS_INDEPENDENT, name)
        if name != "counts_per_electron":  # electrons are what matter; any conversion factor
            assert ind_lo > hi or ind_hi < lo, name
    cam = DETECTORS_INDEPENDENT.model_copy(update={"kinds": ("integrating",)}).draw(
        np.random.default_rng(0)
    )
    assert cam.model.kind == "integrating" and cam.model.dark_offset_e > 0


def test_bad_recipes_are_refused_with_one_line() -> None:
    with pytest.raises(ValueError, match="reversed"):
        DetectorRecipe(read_noise_e=(4.0, 1.0))
    with pytest.raises(ValueError, match="binning"):
        DetectorRecipe(binning=(3,), binning_weights=(1.0,))
    with pytest.raises(Exception, match="no fields"):
        pairs_from_fields([], DETECTORS_TRAIN, seed=0)
