"""The library-based metrics and registration give the numbers the hand-written ones gave.

``tests/data/metrics_before.npz`` holds the fixed inputs and the outputs of the hand-written
Gaussian filter, SSIM, oracle Gaussian and Wiener filters, erosion/dilation, vacuum and frame-pair
checks and registration, recorded before they moved onto scipy.ndimage and scikit-image
(``tests/data/metrics_reference.py``). The stored inputs are float32, so images agree to about
1e-6 of their range; masks, the oracle's sigma and registration shifts agree exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).with_name("data")
sys.path.insert(0, str(DATA))
import metrics_reference  # noqa: E402

BEFORE = np.load(DATA / "metrics_before.npz")
INPUTS = {
    k[3:]: (v.astype(np.float64) if v.dtype == np.float32 else v)
    for k, v in ((k, BEFORE[k]) for k in BEFORE.files)
    if k.startswith("in_")
}
NOW = metrics_reference.outputs(dict(INPUTS))
EXACT = {"oracle_sigma", "edge_mask", "erode_1", "erode_3", "erode_9"}


@pytest.mark.parametrize("name", sorted(NOW))
def test_same_numbers_as_before(name: str) -> None:
    now, before = NOW[name], BEFORE[name]
    assert now.shape == before.shape
    if name in EXACT or now.dtype == bool:
        np.testing.assert_array_equal(now, before)
    elif name.startswith("register_"):
        np.testing.assert_allclose(now[:2], before[:2], atol=1e-9)  # the shift, exactly
        np.testing.assert_allclose(now[2], before[2], rtol=1e-5)  # the significance
    else:
        scale = float(np.nanmax(np.abs(before[np.isfinite(before)])))
        np.testing.assert_allclose(now, before, rtol=1e-5, atol=1e-6 * scale)


def test_the_libraries_do_the_work() -> None:
    import inspect

    from tem_acq import metrics, registration

    assert "ndimage.gaussian_filter" in inspect.getsource(metrics.gaussian_filter)
    assert "structural_similarity" in inspect.getsource(metrics.ssim)
    assert "binary_erosion" in inspect.getsource(metrics.erode)
    assert "binary_dilation" in inspect.getsource(metrics.dilate)
    assert "phase_cross_correlation" in inspect.getsource(registration._library_peak)


def _box_mean_before(a: np.ndarray, n: int = 7) -> np.ndarray:
    """The hand-written 7x7 mean ``vacuum_from_truth`` used (mirrored borders, separable)."""
    r = n // 2
    p = np.pad(a, r, mode="symmetric")
    rows = sum(p[i : i + a.shape[0]] for i in range(n)) / n
    return sum(rows[:, i : i + a.shape[1]] for i in range(n)) / n


def test_vacuum_from_truth_uses_the_same_local_mean() -> None:
    from scipy import ndimage

    from tem_acq.evaluate.loop import vacuum_from_truth

    truth = INPUTS["truth"]
    np.testing.assert_allclose(
        ndimage.uniform_filter(truth, 7, mode="reflect"), _box_mean_before(truth), atol=1e-12
    )
    found = vacuum_from_truth(truth)
    assert found.any() and (found & ~INPUTS["vacuum"]).mean() < 0.01
