"""Electron scattering factors and projected atomic potentials for the multislice.

Electron scattering factors come from ``periodictable``'s X-ray form factors (the
Waasmaier-Kirfel five-Gaussian fits, ``f_x(s) = sum_i a_i exp(-b_i s^2) + c``, public domain) by
the Mott-Bethe formula

``f_e(s) = C (Z - f_x(s)) / s^2``,  ``C = m0 e^2 / (8 pi^2 eps0 h^2) = 0.023934 A``,

with ``s = sin(theta) / lambda = k / 2`` (``k`` the spatial frequency, 1/A). The fit is made
neutral (``Z = sum a_i + c``, off by < 0.04 electrons for these elements), so the Gaussian terms
give ``f_e(s) = C sum_i a_i (1 - exp(-b_i s^2)) / s^2``, whose limit at ``s -> 0`` is
``C sum_i a_i b_i``: evaluated with ``expm1``, finite and smooth at ``s = 0``.

The 2-D Fourier transform of an atom's projected potential is ``47.878 V A^2 x f_e(k / 2)``
(V A^3 per atom, ``h^2 / (2 pi m0 e)``; the same constant as :mod:`tem_acq.sim.optics`), damped
by the Debye-Waller factor ``exp(-B k^2 / 4)`` (``B = 8 pi^2 u_rms^2``).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import periodictable
from numpy.typing import ArrayLike, NDArray
from periodictable.cromermann import getCMformula

from tem_acq.errors import ConfigError
from tem_acq.sim.optics import _H2_OVER_2PI_M_E

#: m0 e^2 / (8 pi^2 eps0 h^2) in A (Mott-Bethe prefactor; s in 1/A).
MOTT_BETHE_A = 0.023934

#: The elements the field generators use, with atomic numbers.
ELEMENTS: dict[str, int] = {
    sym: int(periodictable.elements.symbol(sym).number)
    for sym in "C O Mg Si Ti Fe Ni Cu Zr Rh Pd Ag Ce Ir Pt Au".split()
}
SYMBOLS: dict[int, str] = {z: sym for sym, z in ELEMENTS.items()}

#: Room-temperature Debye-Waller B factors (A^2, ``8 pi^2 <u^2>``), rounded from tabulated
#: values (Peng et al. 1996 for the metals; typical values for the oxides and carbon).
DEBYE_WALLER_B: dict[str, float] = {
    "C": 0.5, "O": 0.6, "Mg": 0.6, "Si": 0.5, "Ti": 0.5, "Fe": 0.35, "Ni": 0.4, "Cu": 0.55,
    "Zr": 0.4, "Rh": 0.3, "Pd": 0.45, "Ag": 0.65, "Ce": 0.4, "Ir": 0.2, "Pt": 0.35, "Au": 0.6,
}  # fmt: skip


def _symbol(element: str | int) -> str:
    """The symbol of ``element`` (symbol or atomic number), or ConfigError naming the choices."""
    sym = SYMBOLS.get(element, "") if isinstance(element, int) else element
    if sym not in ELEMENTS:
        raise ConfigError(
            f"element {element!r} has no scattering factor here; choose one of "
            f"{', '.join(ELEMENTS)}"
        )
    return sym


@cache
def _gaussians(sym: str) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    formula = getCMformula(sym)
    return np.asarray(formula.a, dtype=np.float64), np.asarray(formula.b, dtype=np.float64)


def electron_scattering_factor(element: str | int, s: ArrayLike) -> NDArray[np.float64]:
    """Electron scattering factor ``f_e(s)`` in A (Mott-Bethe from Waasmaier-Kirfel).

    Parameters
    ----------
    element
        Symbol or atomic number (one of :data:`ELEMENTS`).
    s
        ``sin(theta) / lambda`` in 1/A (half the spatial frequency), any shape, >= 0.

    Returns
    -------
    numpy.ndarray
        ``f_e`` (A), finite at ``s = 0`` (Au: 10.12 A at 0 by this fit; Lobato: 10.58).
    """
    a, b = _gaussians(_symbol(element))
    s2 = np.asarray(s, dtype=np.float64)[..., None] ** 2
    safe = np.where(s2 > 0.0, s2, 1.0)
    terms = np.where(s2 > 0.0, -np.expm1(-b * s2) / safe, b)
    return np.asarray(MOTT_BETHE_A * (a * terms).sum(axis=-1))


def projected_potential_fourier(
    element: str | int, k: ArrayLike, b_factor_A2: float | None = None
) -> NDArray[np.float64]:
    """2-D Fourier transform of one atom's projected potential, V A^3 (``47.878 f_e(k/2)``).

    Parameters
    ----------
    element
        Symbol or atomic number.
    k
        Spatial frequency magnitude (1/A).
    b_factor_A2
        Debye-Waller B (A^2); ``None``: the element's :data:`DEBYE_WALLER_B`; 0: a frozen atom.

    Returns
    -------
    numpy.ndarray
        ``47.878 f_e(k / 2) exp(-B k^2 / 4)``; its value at ``k = 0`` is the potential's volume
        integral.
    """
    sym = _symbol(element)
    b = DEBYE_WALLER_B[sym] if b_factor_A2 is None else float(b_factor_A2)
    k_arr = np.asarray(k, dtype=np.float64)
    damping = np.exp(-0.25 * b * k_arr * k_arr)
    return np.asarray(_H2_OVER_2PI_M_E * electron_scattering_factor(sym, 0.5 * k_arr) * damping)


__all__ = [
    "DEBYE_WALLER_B",
    "ELEMENTS",
    "MOTT_BETHE_A",
    "SYMBOLS",
    "electron_scattering_factor",
    "projected_potential_fourier",
]
