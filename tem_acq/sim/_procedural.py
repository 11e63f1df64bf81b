"""Deterministic procedural randomness keyed by absolute coordinates.

The specimen is infinite and generated lazily in tiles, so every random quantity must depend only
on (seed, what it is, where it is) and never on the order in which tiles are requested. Two tools:

- :func:`cell_rng`: a numpy ``Generator`` for one cell of a coarse grid (feature lists such as
  particles or holes are drawn per cell);
- :func:`hash_uniform` / :func:`value_noise`: counter-based hashing of integer lattice
  coordinates (smooth noise fields and per-pixel randomness that agree across tile borders).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)

F64 = NDArray[np.float64]


def zigzag(n: int) -> int:
    """Map an integer to a non-negative one bijectively (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...)."""
    return 2 * n if n >= 0 else -2 * n - 1


def cell_rng(seed: int, stream: int, cx: int, cy: int) -> np.random.Generator:
    """Generator for cell ``(cx, cy)`` of feature stream ``stream``: depends on nothing else.

    Parameters
    ----------
    seed
        The simulation seed.
    stream
        Which kind of feature (each kind draws its own independent numbers).
    cx, cy
        Cell indices (any integers).

    Returns
    -------
    numpy.random.Generator
        A fresh generator.
    """
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(stream, zigzag(cx), zigzag(cy)))
    return np.random.default_rng(ss)


def stream_key(seed: int, stream: int) -> int:
    """A 64-bit hashing key for one (seed, stream) pair."""
    ss = np.random.SeedSequence(entropy=seed, spawn_key=(stream,))
    return int(ss.generate_state(1, np.uint64)[0])


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # splitmix64 finaliser: a strong bijective scramble of 64-bit integers
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def hash_uniform(key: int, iy: NDArray[np.int64], ix: NDArray[np.int64]) -> F64:
    """Uniform [0, 1) numbers for integer coordinates (broadcast), fixed by ``key``.

    Parameters
    ----------
    key
        From :func:`stream_key`.
    iy, ix
        Integer coordinates; broadcast against each other.

    Returns
    -------
    numpy.ndarray
        float64 array of the broadcast shape.
    """
    with np.errstate(over="ignore"):
        z = (
            np.asarray(ix, dtype=np.int64).astype(np.uint64) * _P1
            + np.asarray(iy, dtype=np.int64).astype(np.uint64) * _P2
            + np.uint64(key)
        )
        return (_mix(z) >> _S11).astype(np.float64) * (1.0 / 2**53)


def _fade(t: F64) -> F64:
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def value_noise(key: int, ys: F64, xs: F64, spacing: float) -> F64:
    """Smooth value noise in [-1, 1] on the grid ``ys x xs`` (absolute pixel coordinates).

    Random values at the integer lattice of pitch ``spacing`` are interpolated with a quintic
    fade, so the field is C2-smooth and identical wherever it is evaluated.

    Parameters
    ----------
    key
        From :func:`stream_key`.
    ys, xs
        1-D coordinates of the rows and columns.
    spacing
        Lattice pitch in pixels.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(len(ys), len(xs))``.
    """
    gy, gx = np.asarray(ys, np.float64) / spacing, np.asarray(xs, np.float64) / spacing
    iy, ix = np.floor(gy), np.floor(gx)
    fy, fx = _fade(gy - iy), _fade(gx - ix)
    iy0, ix0 = int(iy.min()), int(ix.min())
    ly = np.arange(iy0, int(iy.max()) + 2, dtype=np.int64)
    lx = np.arange(ix0, int(ix.max()) + 2, dtype=np.int64)
    lattice = 2.0 * hash_uniform(key, ly[:, None], lx[None, :]) - 1.0
    ry, rx = (iy - iy0).astype(np.intp), (ix - ix0).astype(np.intp)
    # interpolate along x on the few lattice rows first, then gather whole rows along y
    along_x = lattice[:, rx] * (1.0 - fx) + lattice[:, rx + 1] * fx
    return along_x[ry] * (1.0 - fy)[:, None] + along_x[ry + 1] * fy[:, None]


def value_noise_points(key: int, y: F64, x: F64, spacing: float) -> F64:
    """:func:`value_noise` evaluated at scattered points ``(y[i], x[i])``."""
    gy, gx = np.asarray(y, np.float64) / spacing, np.asarray(x, np.float64) / spacing
    iy, ix = np.floor(gy), np.floor(gx)
    fy, fx = _fade(gy - iy), _fade(gx - ix)
    iy64, ix64 = iy.astype(np.int64), ix.astype(np.int64)

    def v(dy: int, dx: int) -> F64:
        return 2.0 * hash_uniform(key, iy64 + dy, ix64 + dx) - 1.0

    top = v(0, 0) * (1.0 - fx) + v(0, 1) * fx
    bottom = v(1, 0) * (1.0 - fx) + v(1, 1) * fx
    return top * (1.0 - fy) + bottom * fy


def fractal_noise(key: int, ys: F64, xs: F64, spacing: float, octaves: int) -> F64:
    """Sum of value-noise octaves (pitch halving, amplitude halving), scaled to about unit rms."""
    total = np.zeros((len(ys), len(xs)))
    norm = 0.0
    for octave in range(octaves):
        amp = 0.5**octave
        octave_key = (key + 0x632BE59BD9B4E019 * (octave + 1)) % 2**64
        total += amp * value_noise(octave_key, ys, xs, spacing / 2**octave)
        norm += amp * amp
    # one octave of quintic value noise has rms of about 0.36
    return total / (0.36 * math.sqrt(norm))


def gaussian_filter_fourier(shape: tuple[int, int], sigma_px: float) -> F64:
    """Fourier transfer function of a normalised Gaussian blur (for ``numpy.fft.fft2`` layout)."""
    gy = np.fft.fftfreq(shape[0])[:, None]
    gx = np.fft.fftfreq(shape[1])[None, :]
    return np.exp(-2.0 * math.pi**2 * sigma_px**2 * (gx * gx + gy * gy))
