"""The ground-truth-free estimate agrees with the true error, and refuses frames it cannot judge.

The true error is measured against the expected camera image: the mean of many noisy frames of
the same field (its own noise removed from the MSE exactly, see :func:`_true_mse`), because the
integrating detector's blur, offset and clipping at 0 make the expected reading differ from the
simulator's expected electrons.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from tem_acq import metrics as M
from tem_acq.errors import ConfigError
from tem_acq.quality import PairEstimate, estimate_frames, estimate_pair, summarize
from tem_acq.sim import SimulationConfig, TEMSimulator

#: Drift between the two frames of each pair (pixels): under the issue's 2 px.
DRIFT = (1.3, -1.5)
#: Noisy frames averaged for the expected image.
TRUTH_FRAMES = 64


@dataclass
class Field:
    """One simulated field at one dose: its expected images and a source of noisy pairs."""

    sim: TEMSimulator
    lam: tuple[np.ndarray, np.ndarray]
    mean: tuple[np.ndarray, np.ndarray]
    var: tuple[np.ndarray, np.ndarray]
    rng: np.random.Generator

    def pair(self) -> tuple[np.ndarray, np.ndarray]:
        """Two fresh frames (electrons), the second drifted by :data:`DRIFT`."""
        cpe = self.sim.counts_per_electron
        return tuple(
            self.sim.detector.sample(lam, self.rng).astype(np.float64) / cpe for lam in self.lam
        )  # type: ignore[return-value]


@cache
def _field(detector: str, dose: float, specimen: str = "atomic") -> Field:
    sim = TEMSimulator(SimulationConfig(specimen=specimen, detector=detector, size=512, seed=1))
    exposure = dose / sim.dose_per_pixel(1.0)
    stage = (100.0, 100.0)
    lam = (
        sim.expected_electrons(exposure, stage),
        # the stage moving by (x, y) moves the image by (-y, -x) in (row, column)
        sim.expected_electrons(exposure, (stage[0] - DRIFT[1], stage[1] - DRIFT[0])),
    )
    rng = np.random.default_rng(7)
    means, variances = [], []
    for expected in lam:
        frames = (
            np.stack([sim.detector.sample(expected, rng) for _ in range(TRUTH_FRAMES)]).astype(
                np.float64
            )
            / sim.counts_per_electron
        )
        means.append(frames.mean(axis=0))
        variances.append(frames.var(axis=0, ddof=1))
    return Field(sim, lam, (means[0], means[1]), (variances[0], variances[1]), rng)


def _true_mse(field: Field, est: PairEstimate, fa: np.ndarray, fb: np.ndarray) -> float:
    """MSE of ``(f(a), f(b))`` against the expected images over the estimate's region.

    The mean of :data:`TRUTH_FRAMES` frames carries their noise / n, which is independent of
    ``f`` and subtracted.
    """
    assert est.region_px is not None
    y0, y1, x0, x1 = est.region_px
    total = 0.0
    for f, mean, var in zip((fa, fb), field.mean, field.var, strict=True):
        err = (f - mean)[y0:y1, x0:x1]
        total += float(np.mean(err**2) - np.mean(var[y0:y1, x0:x1]) / TRUTH_FRAMES)
    return total / 2


@cache
def _model():  # type: ignore[no-untyped-def]
    from tem_acq.denoise import load_model

    return load_model("default", "cpu")


def _denoise(e: np.ndarray) -> np.ndarray:
    return np.asarray(_model().denoise(e.astype(np.float32), counts_per_electron=1.0), np.float64)


def _agreement(
    detector: str, dose: float, pairs: int
) -> dict[str, tuple[float, float, PairEstimate]]:
    """``{row: (estimated MSE, true MSE, the summary)}`` over ``pairs`` fresh pairs of one field."""
    field = _field(detector, dose)
    estimates, truths = [], {"raw": [], "gaussian": [], "model": []}  # type: ignore[var-annotated]
    for seed in range(pairs):
        a, b = field.pair()
        fa, fb = _denoise(a), _denoise(b)
        est = estimate_pair(a, b, {"model": (fa, fb)}, seed=seed)
        assert est.trusted, est.problems
        sigma = est.rows["gaussian"].sigma_px
        assert sigma is not None
        truths["raw"].append(_true_mse(field, est, a, b))
        ga, gb = M.gaussian_filter(a, sigma), M.gaussian_filter(b, sigma)
        truths["gaussian"].append(_true_mse(field, est, ga, gb))
        truths["model"].append(_true_mse(field, est, fa, fb))
        estimates.append(est)
    summary = summarize(estimates)
    return {
        row: (summary.rows[row].mse, float(np.mean(values)), summary)
        for row, values in truths.items()
    }


#: Pairs per condition: enough that the estimate's own noise (set by the frames' noise over the
#: model's error) stays well inside 10 % (at 5 e-/px 6 pairs still came out 6 % low, 20 pairs
#: 1.3 %).
PAIRS = {
    ("counting", 1): 12,
    ("counting", 5): 20,
    ("counting", 20): 2,
    ("integrating", 5): 8,
    ("integrating", 20): 2,
}


@pytest.mark.slow
@pytest.mark.parametrize("detector,dose", sorted(PAIRS))
def test_the_estimate_agrees_with_the_true_error_within_10_percent(
    detector: str, dose: float
) -> None:
    rows = _agreement(detector, dose, PAIRS[detector, dose])
    for row, (estimated, true, _) in rows.items():
        assert abs(estimated / true - 1) <= 0.10, (row, estimated, true)


def test_one_pair_at_5_electrons_agrees_with_the_true_error() -> None:
    field = _field("counting", 5)
    a, b = field.pair()
    est = estimate_pair(a, b)
    assert est.trusted, est.problems
    assert est.shift_px == pytest.approx(DRIFT, abs=0.05)
    sigma = est.rows["gaussian"].sigma_px
    assert sigma is not None
    true_raw = _true_mse(field, est, a, b)
    true_gauss = _true_mse(field, est, M.gaussian_filter(a, sigma), M.gaussian_filter(b, sigma))
    assert est.rows["raw"].mse == pytest.approx(true_raw, rel=0.02)
    assert est.rows["gaussian"].mse == pytest.approx(true_gauss, rel=0.15)
    # the raw frame's error is its noise: about the dose for a counting detector
    assert est.noise_var_e2 == pytest.approx(5.0 * field.lam[0].mean() / 5.0, rel=0.1)


@pytest.mark.slow
def test_at_1_electron_on_the_integrating_detector_the_interval_holds_the_true_error() -> None:
    """Here the read noise (2.8 e- rms) is over 200 times the filters' error: 16 pairs of
    512 x 512 pin that error only to about +-45 %, so the check is that the intervals hold it
    (a 10 % check would need some 2,000 pairs); the raw frame's error is still within 10 %."""
    rows = _agreement("integrating", 1, 16)
    estimated, true, _ = rows["raw"]
    assert abs(estimated / true - 1) <= 0.10
    for row, (_, true, summary) in rows.items():
        lo, hi = summary.rows[row].mse_ci
        assert lo <= true <= hi, (row, lo, true, hi)


# --- when the estimate cannot be trusted --------------------------------------------------------


def _frames(shape: tuple[int, int] = (256, 256), dose: float = 5.0, seed: int = 0):  # type: ignore[no-untyped-def]
    """A textured field (smoothed random blobs) and two Poisson frames of it, the second
    rolled by (1, -2) px."""
    rng = np.random.default_rng(seed)
    blobs = M.gaussian_filter(rng.normal(size=shape), 2.0)
    field = dose * np.clip(1 + 0.4 * blobs / blobs.std(), 0.1, None)
    moved = np.roll(field, (1, -2), axis=(0, 1))
    return field, rng.poisson(field).astype(float), rng.poisson(moved).astype(float)


def test_a_pair_of_a_static_field_is_trusted_and_finds_its_shift() -> None:
    _, a, b = _frames()
    est = estimate_pair(a, b)
    assert est.trusted and est.problems == ()
    assert est.shift_px == pytest.approx((1.0, -2.0), abs=0.1)
    assert set(est.rows) == {"raw", "gaussian"}
    d = est.to_dict()
    assert d["raw"]["psnr_db"] is not None and len(d["gaussian"]["ci"]) == 2
    assert "sigma_px" in d["gaussian"] and "sigma_px" not in d["raw"]
    assert est.rows["gaussian"].mse < est.rows["raw"].mse


def test_a_field_that_moved_is_not_trusted() -> None:
    field, a, _ = _frames()
    b = np.random.default_rng(1).poisson(np.roll(field, (30, 25), axis=(0, 1))).astype(float)
    est = estimate_pair(a, b)
    assert not est.trusted and est.rows == {}
    assert "moved" in est.problems[0]
    assert "no estimate" in est.render()


def test_a_field_that_changed_is_not_trusted() -> None:
    field, a, _ = _frames()
    changed = np.roll(field, (1, -2), axis=(0, 1))
    changed[40:200, 40:200] *= 1.6  # a third of the field darkened or grew
    b = np.random.default_rng(2).poisson(changed).astype(float)
    est = estimate_pair(a, b)
    assert not est.trusted
    assert "changed" in est.problems[0]


def test_saturated_frames_are_not_trusted() -> None:
    _, a, b = _frames()
    a[:20, :20] = 9.0
    est = estimate_pair(a, b, saturation_e=9.0)
    assert not est.trusted and "saturated" in est.problems[0]
    assert estimate_pair(*_frames()[1:], saturation_e=1e4).trusted


def test_too_few_pixels_or_no_electrons_or_nan_are_not_trusted() -> None:
    _, a, b = _frames((64, 64))
    assert "too few pixels" in estimate_pair(a, b).problems[0]
    _, a, b = _frames()
    assert "no electrons" in estimate_pair(np.zeros_like(a), b).problems[0]
    a[3, 3] = np.nan
    assert "NaN" in estimate_pair(a, b).problems[0]


def test_a_dose_change_between_the_frames_is_scaled_out() -> None:
    _, a, b = _frames(dose=20.0, seed=3)
    same = estimate_pair(a, b).rows["gaussian"].mse
    brighter = estimate_pair(a, b * 1.1).rows["gaussian"].mse
    # scaling b by 1.1 scales its noise too: the estimate moves by about that, not by the
    # (0.1 x 20 e-)^2 = 4 e-^2 a plain difference would add
    assert brighter == pytest.approx(same, rel=0.2)


def test_bad_shapes_are_one_line_errors() -> None:
    _, a, b = _frames()
    with pytest.raises(ConfigError, match="one shape"):
        estimate_pair(a, b[:-1])
    with pytest.raises(ConfigError, match="output 'model'"):
        estimate_pair(a, b, {"model": (a, b[:-1])})
    with pytest.raises(ConfigError, match="own rows"):
        estimate_pair(a, b, {"raw": (a, b)})
    with pytest.raises(ConfigError, match="at least 2 frames"):
        estimate_frames(a[None])


def test_a_denoiser_is_judged_against_the_best_gaussian() -> None:
    field, a, b = _frames()
    moved = np.roll(field, (1, -2), axis=(0, 1))
    # an oracle that knows the field beats every filter; a constant image loses to it
    est = estimate_pair(
        a, b, {"oracle": (field, moved), "flat": (a * 0 + a.mean(), b * 0 + b.mean())}
    )
    oracle, flat = est.gains["oracle"], est.gains["flat"]
    assert oracle.better and not oracle.worse and oracle.mse_diff < 0
    assert flat.worse and flat.ci[1] is not None and flat.ci[1] < 0
    assert "beats" in est.verdict("oracle") and "WORSE" in est.verdict("flat")
    assert "beats" in est.render()


def test_summaries_combine_pairs_and_count_the_skipped() -> None:
    field, *_ = _frames()
    rng = np.random.default_rng(5)
    frames = np.stack(
        [rng.poisson(np.roll(field, (i % 2, -2 * (i % 2)), axis=(0, 1))) for i in range(6)]
    ).astype(float)
    frames[5] = rng.poisson(np.roll(field, (40, 40), axis=(0, 1)))  # the last pair moved
    estimates = estimate_frames(frames)
    assert [e.trusted for e in estimates] == [True, True, False]
    summary = summarize(estimates)
    assert summary.trusted and summary.pairs == 2
    assert "1 of 3 pairs skipped" in summary.notes[0]
    one = estimates[0].rows["raw"]
    both = summary.rows["raw"]
    assert both.mse_ci[1] - both.mse_ci[0] < one.mse_ci[1] - one.mse_ci[0]
    nothing = summarize(estimates[2:])
    assert not nothing.trusted and "skipped" in nothing.problems[0]


def test_errors_too_small_for_a_ratio_are_still_compared_by_their_difference() -> None:
    """On a near-empty field both errors are far below the noise: their dB ratio is undefined,
    but the difference (the noise common to both cancels) still says which is better."""
    rng = np.random.default_rng(11)
    field = np.full((256, 256), 5.0)
    a, b = rng.poisson(field).astype(float), rng.poisson(field).astype(float)
    # a smooth estimate a little off the truth, and one exactly at the mean of its frame
    off = (np.full_like(a, a.mean()) + 0.3, np.full_like(b, b.mean()) + 0.3)
    est = estimate_pair(a, b, {"off": off}, gaussian=True)
    gain = est.gains["off"]
    assert gain.worse, gain  # 0.3^2 = 0.09 e-^2 more error than a flat image
    assert gain.mse_diff == pytest.approx(0.09, abs=0.02)
    assert "WORSE" in est.verdict("off")
