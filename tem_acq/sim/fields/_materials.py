"""Materials of low-magnification specimens: phase (mean inner potential) and amplitude contrast.

A particle of thickness ``t`` shifts the electron wave's phase by ``sigma V0 t`` (``sigma`` the
interaction constant, ``V0`` the mean inner potential) and, because the objective aperture stops
the electrons it scatters to high angles, attenuates the intensity by ``exp(-t / L)`` with ``L``
the aperture-limited mean free path ("mass-thickness contrast").

``V0``: approximate measured or computed mean inner potentials (electron holography and
neutral-atom sums; values in the literature spread by about 10 %). ``L``: at 200 kV for an
objective aperture of about 10-20 mrad, scaled from amorphous carbon's about 150 nm by the
inverse of ``rho Z^(4/3) / A`` (the screened-Rutherford trend of the scattering cross-section
per volume), rounded; at other voltages ``L`` scales with ``beta^2`` (the elastic
cross-section goes as ``1 / beta^2``). These are contrast levels that span what users see
(a 20 nm Au particle is dark, a 20 nm SiO2 one is faint), not reference data.
"""

from __future__ import annotations

from dataclasses import dataclass

_MC2_KEV = 510.99895


@dataclass(frozen=True)
class Material:
    """One material's contrast parameters.

    Attributes
    ----------
    mean_inner_potential_V
        ``V0`` in volts (the phase shift per thickness is ``sigma V0``).
    mean_free_path_200kV_nm
        Aperture-limited mean free path at 200 kV (nm): intensity ``exp(-t / L)``.
    """

    mean_inner_potential_V: float
    mean_free_path_200kV_nm: float

    def mean_free_path_nm(self, voltage_kv: float) -> float:
        """The aperture-limited mean free path at ``voltage_kv`` (scales with ``beta^2``)."""
        return self.mean_free_path_200kV_nm * beta_squared(voltage_kv) / beta_squared(200.0)


def beta_squared(voltage_kv: float) -> float:
    """``(v / c)^2`` of an electron accelerated through ``voltage_kv``."""
    gamma = 1.0 + voltage_kv / _MC2_KEV
    return 1.0 - 1.0 / (gamma * gamma)


#: The support film (amorphous carbon, about 2 g/cm^3) and every particle material by name.
MATERIALS: dict[str, Material] = {
    "C": Material(9.0, 150.0),
    # heavy metals
    "Au": Material(25.0, 14.0),
    "Pt": Material(27.0, 13.0),
    "Ir": Material(28.0, 12.5),
    "Pd": Material(22.0, 22.0),
    "Ag": Material(20.0, 25.0),
    "Cu": Material(20.0, 33.0),
    # oxides, from strong to weak contrast
    "CeO2": Material(19.0, 30.0),
    "ZrO2": Material(17.0, 42.0),
    "Fe3O4": Material(17.5, 50.0),
    "Co3O4": Material(18.0, 46.0),
    "ZnO": Material(15.5, 45.0),
    "TiO2": Material(16.0, 62.0),
    "Al2O3": Material(14.0, 80.0),
    "SiO2": Material(11.0, 125.0),
}

#: Atoms per Å^3 of the amorphous carbon film (2 g/cm^3): sets the film's fine texture.
CARBON_ATOMS_PER_A3 = 0.1
