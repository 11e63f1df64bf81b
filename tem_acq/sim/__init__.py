"""Physics-based simulated TEM (specimen, dose, drift, detector): tests without a microscope.

numpy only: this package never imports pycro-manager or pymmcore.

>>> from tem_acq.sim import SimulationConfig, TEMSimulator
>>> sim = TEMSimulator(SimulationConfig(specimen="nanoparticles", detector="integrating"))
>>> frame = sim.render(exposure_s=0.002)               # uint16 counts
>>> truth = sim.expected_electrons(exposure_s=0.002)   # float32 e-/px, noise-free
"""

from __future__ import annotations

from tem_acq.sim.analysis import (
    PairNoiseStats,
    lag_correlation,
    pair_noise_stats,
    power_spectrum,
)
from tem_acq.sim.config import (
    BINNINGS,
    DETECTOR_KINDS,
    SPECIMEN_KINDS,
    SimulationConfig,
    electron_wavelength_A,
    scherzer_defocus_nm,
)
from tem_acq.sim.detector import (
    SATURATION,
    SATURATION_8BIT,
    CountingDetector,
    IntegratingDetector,
    to_uint8,
)
from tem_acq.sim.dose import FieldDose
from tem_acq.sim.simulator import Region, SimulationError, TEMSimulator

__all__ = [
    "BINNINGS",
    "DETECTOR_KINDS",
    "SATURATION",
    "SATURATION_8BIT",
    "SPECIMEN_KINDS",
    "CountingDetector",
    "FieldDose",
    "IntegratingDetector",
    "PairNoiseStats",
    "Region",
    "SimulationConfig",
    "SimulationError",
    "TEMSimulator",
    "electron_wavelength_A",
    "lag_correlation",
    "pair_noise_stats",
    "power_spectrum",
    "scherzer_defocus_nm",
    "to_uint8",
]
