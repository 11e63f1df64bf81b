"""The dose-aware normalisation: one definition, NumPy and torch alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tem_acq.denoise import (
    DoseNormalization,
    counts_to_electrons,
    dose_scale,
    from_network,
    to_network,
)


def test_counts_to_electrons_numpy_and_torch() -> None:
    counts = np.array([[0, 44], [88, 440]], dtype=np.uint16)
    e_np = counts_to_electrons(counts, 44.0)
    e_t = counts_to_electrons(torch.from_numpy(counts.astype(np.int32)), 44.0)
    assert e_np.dtype == np.float32
    np.testing.assert_allclose(e_np, [[0, 1], [2, 10]])
    np.testing.assert_allclose(e_t.numpy(), e_np)
    with pytest.raises(ValueError, match="counts_per_electron must be > 0"):
        counts_to_electrons(counts, 0.0)


def test_scale_is_per_frame_mean_with_floor() -> None:
    rng = np.random.default_rng(0)
    stack = np.stack(
        [rng.poisson(d, (32, 48)).astype(np.float32) for d in (1.0, 5.0, 100.0)]
        + [np.zeros((32, 48), np.float32)]
    )
    norm = DoseNormalization(min_scale=0.05)
    s = dose_scale(stack, norm)
    assert s.shape == (4, 1, 1)
    np.testing.assert_allclose(s[:3, 0, 0], stack[:3].mean(axis=(1, 2)), rtol=1e-6)
    assert s[3, 0, 0] == pytest.approx(0.05)  # an empty frame does not divide by zero
    x = to_network(stack, s)
    np.testing.assert_allclose(x[:3].mean(axis=(1, 2)), 1.0, rtol=1e-5)
    assert np.isfinite(x).all()
    # torch gives the same numbers
    st = dose_scale(torch.from_numpy(stack), norm)
    np.testing.assert_allclose(st.numpy(), s, rtol=1e-6)
    np.testing.assert_allclose(to_network(torch.from_numpy(stack), st).numpy(), x, rtol=1e-6)


def test_round_trip_is_identity_and_mean_is_preserved() -> None:
    rng = np.random.default_rng(1)
    e = rng.poisson(4.6, (3, 40, 50)).astype(np.float32)
    s = dose_scale(e)
    x = to_network(e, s)
    # identity network: from_network(to_network(e)) == e
    np.testing.assert_allclose(from_network(x, s, network_input=x), e, rtol=1e-5, atol=1e-5)
    # a biased network output is shifted back to the input's mean, per frame
    y = x * 0.7 + 0.4
    d = from_network(y, s, DoseNormalization(), network_input=x)
    np.testing.assert_allclose(d.mean(axis=(1, 2)), e.mean(axis=(1, 2)), rtol=1e-5)
    # ... unless the card says not to
    d2 = from_network(y, s, DoseNormalization(preserve_mean=False), network_input=x)
    np.testing.assert_allclose(d2, y * s, rtol=1e-6)
    # torch, same result
    dt = from_network(torch.from_numpy(y), torch.from_numpy(s), network_input=torch.from_numpy(x))
    np.testing.assert_allclose(dt.numpy(), d, rtol=1e-5, atol=1e-5)


def test_scale_invariance_one_model_many_doses() -> None:
    # The same specimen at two exposures gives network inputs of equal mean (1): the model
    # sees the dose only through the noise, and its output scales back to each dose.
    rng = np.random.default_rng(2)
    clean = 1 + 0.5 * np.sin(np.arange(64) / 5)[None, :] * np.ones((64, 1))
    low, high = rng.poisson(2 * clean), rng.poisson(50 * clean)
    for e in (low, high):
        x = to_network(e.astype(np.float32), dose_scale(e.astype(np.float32)))
        assert float(x.mean()) == pytest.approx(1.0, rel=1e-5)


def test_normalization_model_is_strict() -> None:
    with pytest.raises(ValueError, match="min_scale"):
        DoseNormalization(min_scale=0)
    with pytest.raises(ValueError, match="Extra inputs"):
        DoseNormalization.model_validate({"kind": "dose", "percentile": 80})
