"""Electron-optical helpers: interaction constant and the coherent transfer function."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from tem_acq.sim.config import electron_wavelength_A

_MC2_KEV = 510.99895
#: h^2 / (2 pi m0 e) in V A^2: turns an electron scattering factor f_e(0) (A) into the volume
#: integral of the atom's potential (V A^3).
_H2_OVER_2PI_M_E = 47.878


def interaction_constant(voltage_kv: float) -> float:
    """Interaction constant sigma in rad / (V A) (7.29e-4 at 200 kV).

    Parameters
    ----------
    voltage_kv
        Accelerating voltage in kV.

    Returns
    -------
    float
        Phase shift per volt of projected potential per angstrom of thickness.
    """
    lam = electron_wavelength_A(voltage_kv)
    v = voltage_kv * 1e3
    return 2.0 * math.pi / (lam * v) * (_MC2_KEV + voltage_kv) / (2.0 * _MC2_KEV + voltage_kv)


def atom_phase_integral(voltage_kv: float, scattering_factor_A: float) -> float:
    """Phase shift of one atom integrated over the projected area (rad A^2).

    Parameters
    ----------
    voltage_kv
        Accelerating voltage in kV.
    scattering_factor_A
        Electron scattering factor at zero angle, f_e(0), in A (about 10 for Au, 2.5 for C).

    Returns
    -------
    float
        ``sigma * integral of V over the atom's volume``.
    """
    return interaction_constant(voltage_kv) * _H2_OVER_2PI_M_E * scattering_factor_A


def ctf(
    shape: tuple[int, int],
    pixel_size_A: float,
    voltage_kv: float,
    cs_mm: float,
    defocus_nm: float,
    focal_spread_A: float = 30.0,
    convergence_mrad: float = 0.1,
    aperture_fraction: float = 0.9,
) -> NDArray[np.complex128]:
    """Coherent transfer function with partial-coherence envelopes, in ``numpy.fft.fft2`` layout.

    ``H(g) = exp(-i chi(g)) E_t(g) E_s(g) A(g)`` with ``chi = pi lambda df g^2 + pi/2 Cs lambda^3
    g^4`` (negative defocus = underfocus, so at Scherzer defocus atoms image dark).

    Parameters
    ----------
    shape
        FFT shape in pixels.
    pixel_size_A
        Pixel size.
    voltage_kv, cs_mm, defocus_nm
        Microscope settings.
    focal_spread_A
        Rms focal spread (temporal coherence envelope).
    convergence_mrad
        Beam convergence semi-angle (spatial coherence envelope).
    aperture_fraction
        Objective aperture radius as a fraction of Nyquist (stops corner aliasing).

    Returns
    -------
    numpy.ndarray
        Complex transfer function.
    """
    lam = electron_wavelength_A(voltage_kv)
    cs = cs_mm * 1e7
    df = defocus_nm * 10.0
    gy = np.fft.fftfreq(shape[0], d=pixel_size_A)[:, None]
    gx = np.fft.fftfreq(shape[1], d=pixel_size_A)[None, :]
    g2 = gx * gx + gy * gy
    chi = math.pi * lam * df * g2 + 0.5 * math.pi * cs * lam**3 * g2 * g2
    e_t = np.exp(-0.5 * (math.pi * lam * focal_spread_A) ** 2 * g2 * g2)
    grad = df * np.sqrt(g2) + cs * lam * lam * g2 * np.sqrt(g2)
    e_s = np.exp(-((math.pi * convergence_mrad * 1e-3 * grad) ** 2))
    nyquist = 0.5 / pixel_size_A
    aperture = g2 <= (aperture_fraction * nyquist) ** 2
    out: NDArray[np.complex128] = np.exp(-1j * chi) * e_t * e_s * aperture
    return out


def delocalisation_px(
    pixel_size_A: float,
    voltage_kv: float,
    cs_mm: float,
    defocus_nm: float,
    focal_spread_A: float = 30.0,
    aperture_fraction: float = 0.9,
    threshold: float = 0.02,
) -> float:
    """Largest image delocalisation (px) among frequencies the CTF still passes above ``threshold``.

    Used to size the apron of atomic-resolution tiles so neighbouring tiles join seamlessly.
    """
    lam = electron_wavelength_A(voltage_kv)
    cs = cs_mm * 1e7
    df = defocus_nm * 10.0
    g = np.linspace(0.0, aperture_fraction * 0.5 / pixel_size_A, 2048)
    e_t = np.exp(-0.5 * (math.pi * lam * focal_spread_A) ** 2 * g**4)
    shift_A = lam * np.abs(df * g + cs * lam * lam * g**3)
    passed = e_t > threshold
    return float(shift_A[passed].max() / pixel_size_A) if passed.any() else 0.0
