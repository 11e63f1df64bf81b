"""The fast table-based samplers behind the detectors: exact moments, right distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tem_acq.sim._sampling import (
    GammaSumSampler,
    PoissonSampler,
    normal_table,
    standard_normal,
    uniform16,
)

N = 1_000_000


@pytest.mark.parametrize("lam", [0.03, 0.7, 4.6, 17.31, 31.99, 32.0, 250.0, 1e5])
def test_poisson_moments(lam: float) -> None:
    counts = PoissonSampler().sample(np.full(N, lam, np.float32), np.random.default_rng(1))
    assert counts.dtype == np.int32
    se = math.sqrt(lam / N)
    assert abs(counts.mean() - lam) < 5 * se
    # variance: sampling sd of a Poisson variance estimate is about lam * sqrt(2 / N)
    assert counts.var() == pytest.approx(lam, abs=6 * lam * math.sqrt((2 + 1 / lam) / N))
    assert (counts == 0).mean() == pytest.approx(math.exp(-lam), abs=5 * math.sqrt(
        math.exp(-lam) / N) + 2**-16)


def test_poisson_distribution_matches_the_pmf() -> None:
    lam = 4.6
    counts = PoissonSampler().sample(np.full(N, lam, np.float32), np.random.default_rng(2))
    k = np.arange(16)
    pmf = np.exp(-lam + k * math.log(lam) - np.array([math.lgamma(i + 1) for i in k]))
    observed = np.bincount(counts, minlength=64)[:16]
    chi2 = float(np.sum((observed - N * pmf) ** 2 / (N * pmf)))
    assert chi2 < 45  # 15 degrees of freedom: p < 1e-4 beyond this


def test_poisson_handles_mixed_rates_and_shapes() -> None:
    lam = np.array([[0.0, 0.5, 40.0], [3.0, 1000.0, 0.01]], np.float32)
    out = PoissonSampler().sample(np.repeat(lam[None], 20000, axis=0), np.random.default_rng(3))
    assert out.shape == (20000, 2, 3)
    np.testing.assert_allclose(out.mean(axis=0), lam, rtol=0.03, atol=0.01)
    assert not out[:, 0, 0].any()


@pytest.mark.parametrize(("events", "k"), [(1, 1.0), (3, 1.0), (5, 0.5), (64, 1.0), (65, 1.0),
                                           (400, 2.0)])
def test_gamma_sum_moments(events: int, k: float) -> None:
    g = GammaSumSampler(k).sample(np.full(N, events, np.int32), np.random.default_rng(4))
    a = events * k
    assert g.mean() == pytest.approx(a, rel=4 / math.sqrt(N * a) + 1e-4)
    assert g.var() == pytest.approx(a, rel=0.01)
    skew = float(np.mean((g - a) ** 3)) / a**1.5
    assert skew == pytest.approx(2 / math.sqrt(a), abs=0.05)
    assert not GammaSumSampler(k).sample(np.zeros(10, np.int32), np.random.default_rng(0)).any()


def test_exponential_gain_has_the_right_tail() -> None:
    g = GammaSumSampler(1.0).sample(np.ones(N, np.int32), np.random.default_rng(5))
    for x in (0.1, 1.0, 3.0):
        assert (g > x).mean() == pytest.approx(math.exp(-x), abs=0.002)


def test_normal_table_and_uniform_bits() -> None:
    t = normal_table()
    assert t.size == 65536
    assert float(t.astype(np.float64).mean()) == pytest.approx(0.0, abs=1e-7)
    assert float(t.astype(np.float64).var()) == pytest.approx(1.0, abs=1e-6)
    z = standard_normal(np.random.default_rng(6), (1000, 1000))
    assert abs(float((z > 1.96).mean()) - 0.025) < 0.001
    a, b = uniform16(np.random.default_rng(7), 2, N)
    assert a.dtype == np.uint16 and a.size == b.size == N
    assert abs(np.corrcoef(a.astype(float), b.astype(float))[0, 1]) < 0.005
    assert np.bincount(a >> 12, minlength=16).min() > N / 16 * 0.98
