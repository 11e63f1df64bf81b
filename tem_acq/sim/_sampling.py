"""Fast random sampling for frame-rate noise: table-based Poisson, Gamma and normal deviates.

numpy's own ``Generator.poisson`` costs about 9 ms and ``standard_gamma`` about 4 ms per 512x512
frame at 5 e-/px here, which alone would break the 5 ms frame budget. Inverse-CDF tables indexed
by 16-bit uniforms (from ``BitGenerator.random_raw``, four per 64-bit word) cost one gather each.

Accuracy, stated so nobody has to guess:

- Poisson: ``Poisson(lam) = Poisson(j * step) + Poisson(r)`` (additivity) with ``j * step`` read
  from an inverse-CDF table and the remainder ``r < step`` drawn exactly through the first
  arrival of a unit-rate process. The only error is the 16-bit quantisation of the uniform: each
  CDF value is off by at most 2**-16. Rates above ``lam_max`` go to numpy's exact sampler.
- Gamma and normal: each table entry is the *mean* of an equiprobable bin of the distribution
  (65536 bins), rescaled so the table's mean and variance are exact. Shapes above the table use
  the Wilson-Hilferty transform (quantile error below 1e-3 for shape > 64).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

LEVEL_BITS = 16
LEVELS = 1 << LEVEL_BITS

F32 = NDArray[np.float32]
I32 = NDArray[np.int32]
U16 = NDArray[np.uint16]


def uniform16(rng: np.random.Generator, count: int, n: int) -> list[U16]:
    """Draw ``count`` contiguous arrays of ``n`` independent 16-bit uniforms.

    Parameters
    ----------
    rng
        The generator whose bit stream is consumed (deterministically).
    count
        How many arrays.
    n
        Length of each array.

    Returns
    -------
    list of numpy.ndarray
        ``count`` uint16 arrays of length ``n``, views into one buffer.
    """
    words = (count * n + 3) // 4
    raw = rng.bit_generator.random_raw(words).view(np.uint16)
    return [raw[i * n : (i + 1) * n] for i in range(count)]


def _cumtrapz(w: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.empty_like(w)
    out[0] = 0.0
    np.cumsum(0.5 * (w[1:] + w[:-1]), out=out[1:])
    return out


def _equiprobable_bin_means(x: NDArray[np.float64], w: NDArray[np.float64]) -> NDArray[np.float64]:
    """Means of ``LEVELS`` equiprobable bins of a density tabulated on a grid.

    ``w`` is the density per unit grid step (density(x) * dx/dstep), so non-uniform grids (such as
    a logarithmic one) integrate correctly with the trapezoid rule.
    """
    cdf = _cumtrapz(w)
    first = _cumtrapz(w * x)
    total = cdf[-1]
    cdf /= total
    first /= total
    levels = np.linspace(0.0, 1.0, LEVELS + 1)
    m = np.interp(levels, cdf, first)
    return np.diff(m) * LEVELS


def _match_moments(table: NDArray[np.float64], mean: float, var: float) -> NDArray[np.float64]:
    """Shift and scale a table so its mean and variance are exactly ``mean`` and ``var``."""
    dev = table - table.mean()
    scale = math.sqrt(var / float(np.mean(dev * dev))) if var > 0 else 0.0
    return mean + dev * scale


@lru_cache(maxsize=1)
def normal_table() -> F32:
    """Standard normal deviates indexed by a 16-bit uniform (exact mean 0, variance 1)."""
    x = np.linspace(-9.0, 9.0, 1 << 19)
    w = np.exp(-0.5 * x * x)
    table = _match_moments(_equiprobable_bin_means(x, w), 0.0, 1.0)
    return table.astype(np.float32)


@lru_cache(maxsize=1)
def exponential_table() -> F32:
    """Unit exponential deviates ``-log(u)`` at the centres of the 16-bit uniform levels."""
    u = (np.arange(LEVELS, dtype=np.float64) + 0.5) / LEVELS
    return (-np.log(u)).astype(np.float32)


def _gamma_bin_means(shape: float) -> NDArray[np.float64]:
    """Equiprobable-bin means of Gamma(shape, 1), integrated on a log grid (no singularity at 0)."""
    lg = math.lgamma(shape)
    # Lower end where the remaining mass x**a / Gamma(a+1) is negligible (1e-14).
    u_lo = (math.log(1e-14) + math.lgamma(shape + 1.0)) / shape
    u_lo = max(u_lo, math.log(max(shape - 40.0 * math.sqrt(shape), 1e-300)))
    u_hi = math.log(shape + 40.0 * math.sqrt(shape) + 40.0)
    u = np.linspace(u_lo, u_hi, 1 << 17)
    x = np.exp(u)
    # density in u: x**a * exp(-x) / Gamma(a); times du per grid step (constant, cancels).
    w = np.exp(shape * u - x - lg)
    return _match_moments(_equiprobable_bin_means(x, w), shape, shape)


@lru_cache(maxsize=4)
def gamma_sum_table(shape_per_event: float, max_events: int) -> F32:
    """Rows of Gamma(n * shape_per_event, 1) deviates, n = 0..max_events, indexed by n and 16 bits.

    Row 0 is all zeros (no electron, no signal). Used for the integrating detector: the sum of
    ``n`` independent Gamma(k, theta) gains is Gamma(n k, theta).
    """
    table = np.zeros((max_events + 1, LEVELS), dtype=np.float32)
    for n in range(1, max_events + 1):
        table[n] = _gamma_bin_means(n * shape_per_event)
    table.setflags(write=False)
    return table


@lru_cache(maxsize=2)
def poisson_table(step: float, lam_max: float) -> NDArray[np.uint8]:
    """Inverse-CDF rows of Poisson(j * step), j = 0..lam_max/step, indexed by a 16-bit uniform.

    Entry ``[j, i]`` is the smallest k with CDF(k) > (i + 0.5) / 2**16.
    """
    rows = round(lam_max / step) + 1
    kmax = int(lam_max + 12.0 * math.sqrt(lam_max) + 20.0)
    if kmax > 255:
        raise ValueError("poisson_table: lam_max too large for uint8 entries")
    k = np.arange(kmax + 1, dtype=np.float64)
    log_fact = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, kmax + 1)))))
    table = np.empty((rows, LEVELS), dtype=np.uint8)
    for j in range(rows):
        lam = j * step
        if lam == 0.0:
            table[j] = 0
            continue
        pmf = np.exp(-lam + k * math.log(lam) - log_fact)
        cdf = np.cumsum(pmf)
        # number of level centres below each CDF value = where value k stops
        bounds = np.clip(np.ceil(cdf * LEVELS - 0.5), 0, LEVELS).astype(np.int64)
        bounds[-1] = LEVELS
        counts = np.diff(np.concatenate(([0], bounds)))
        table[j] = np.repeat(k.astype(np.uint8), counts)
    table.setflags(write=False)
    return table


class PoissonSampler:
    """Exact-to-2**-16 Poisson sampler for float32 rate arrays.

    Parameters
    ----------
    step
        Spacing of the tabulated rates; the remainder below it is sampled exactly.
    lam_max
        Largest tabulated rate; larger rates use numpy's exact sampler.
    """

    def __init__(self, step: float = 0.125, lam_max: float = 32.0) -> None:
        self.step = float(step)
        self.lam_max = float(lam_max)
        self._inv_step = np.float32(1.0 / step)
        self._table = poisson_table(self.step, self.lam_max).reshape(-1)
        self._exp = exponential_table()

    def sample(self, lam: F32, rng: np.random.Generator) -> I32:
        """Draw one Poisson count per element of ``lam`` (any shape, float32, >= 0).

        Parameters
        ----------
        lam
            Expected counts; finite and non-negative.
        rng
            Generator consumed deterministically.

        Returns
        -------
        numpy.ndarray
            int32 counts of the same shape.
        """
        flat = np.ascontiguousarray(lam, dtype=np.float32).reshape(-1)
        n = flat.size
        u_tab, u_rem = uniform16(rng, 2, n)
        big = None
        if n and float(flat.max()) >= self.lam_max:
            big = np.flatnonzero(flat >= self.lam_max)
            flat = flat.copy()
            flat[big] = 0.0
        j = (flat * self._inv_step).astype(np.int32)
        # the remainder r = lam - j*step lies in [0, step): Poisson(r) is 0 unless the first
        # arrival E ~ Exp(1) comes before r; then it is 1 + Poisson(r - E) (memorylessness).
        r = flat - j.astype(np.float32) / self._inv_step
        idx = (j << LEVEL_BITS) | u_tab
        counts = np.take(self._table, idx).astype(np.int32)
        e = np.take(self._exp, u_rem)
        hit = np.flatnonzero(e < r)
        if hit.size:
            counts[hit] += 1 + rng.poisson(r[hit] - e[hit]).astype(np.int32)
        if big is not None:
            counts[big] = rng.poisson(np.asarray(lam, dtype=np.float64).reshape(-1)[big])
        return counts.reshape(np.shape(lam))


class GammaSumSampler:
    """Samples the sum of ``n`` independent Gamma(k, 1) variables, i.e. Gamma(n k, 1), per element.

    Parameters
    ----------
    shape_per_event
        ``k``: the shape of one event's Gamma distribution (1 / CV**2 of the per-event gain).
    max_events
        Largest ``n`` tabulated; larger ``n`` use the Wilson-Hilferty transform.
    """

    def __init__(self, shape_per_event: float, max_events: int = 64) -> None:
        self.k = float(shape_per_event)
        self.max_events = int(max_events)
        self._table = gamma_sum_table(self.k, self.max_events).reshape(-1)
        self._normal = normal_table()

    def sample(self, n_events: I32, rng: np.random.Generator) -> F32:
        """Draw Gamma(n * k, 1) per element of ``n_events`` (int32, >= 0); 0 where ``n`` is 0.

        Parameters
        ----------
        n_events
            Event counts per element.
        rng
            Generator consumed deterministically.

        Returns
        -------
        numpy.ndarray
            float32 array of the same shape.
        """
        flat = np.ascontiguousarray(n_events, dtype=np.int32).reshape(-1)
        (u,) = uniform16(rng, 1, flat.size)
        over = None
        if flat.size and int(flat.max()) > self.max_events:
            over = np.flatnonzero(flat > self.max_events)
            flat = np.minimum(flat, self.max_events)
        out = np.take(self._table, (flat << LEVEL_BITS) | u)
        if over is not None:
            a = np.asarray(n_events, dtype=np.float64).reshape(-1)[over] * self.k
            (u2,) = uniform16(rng, 1, over.size)
            z = self._normal[u2].astype(np.float64)
            c = 1.0 / (9.0 * a)
            out[over] = (a * np.maximum(1.0 - c + z * np.sqrt(c), 0.0) ** 3).astype(np.float32)
        return out.reshape(np.shape(n_events))


def standard_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> F32:
    """Standard normal float32 deviates from the 16-bit table (exact mean and variance).

    Parameters
    ----------
    rng
        Generator consumed deterministically.
    shape
        Output shape.

    Returns
    -------
    numpy.ndarray
        float32 array.
    """
    n = math.prod(shape)
    (u,) = uniform16(rng, 1, n)
    return np.take(normal_table(), u).reshape(shape)
