"""Configuration of the simulated microscope (specimen, electron dose, optics, detector)."""

from __future__ import annotations

import math
from typing import Any, Literal, get_args

from pydantic import ConfigDict, Field, FiniteFloat, field_validator, model_validator

from tem_acq.detector import COUNTING, DetectorKind, DetectorModel
from tem_acq.schema import StrictModel

SpecimenKind = Literal["nanoparticles", "atomic"]

#: The specimen kinds the simulator can render.
SPECIMEN_KINDS: tuple[str, ...] = get_args(SpecimenKind)
#: The detector models the simulator can apply.
DETECTOR_KINDS: tuple[str, ...] = get_args(DetectorKind)
#: Camera binnings the simulated camera supports.
BINNINGS: tuple[int, ...] = (1, 2, 4, 8)

#: Unbinned pixel size per specimen kind (A): 3 nm as in Katsuno et al.; 0.5 A resolves Au fringes.
DEFAULT_PIXEL_SIZE_A: dict[str, float] = {"nanoparticles": 30.0, "atomic": 0.5}
#: Default defocus per specimen kind (nm, negative = underfocus). ``None`` for atomic = Scherzer.
DEFAULT_DEFOCUS_NM: dict[str, float | None] = {"nanoparticles": -1000.0, "atomic": None}

#: Counting detector: one count per electron.
COUNTING_COUNTS_PER_ELECTRON = 1.0
#: Integrating (Gatan OneView-like) defaults, fitted to the four real OneView frames (see
#: tests/test_sim_calibration.py): mean gain 44 counts/e- (DM calibration), gain CV 1,
#: Gaussian read noise 125 counts (rms, white and row-correlated parts), offset -12 counts.
INTEGRATING_COUNTS_PER_ELECTRON = 44.0
INTEGRATING_GAIN_CV = 1.0
INTEGRATING_READ_NOISE = 125.0
INTEGRATING_DARK_OFFSET = -12.0
#: Fraction of an electron's light reaching each x (y) neighbour at binning 1, the share of
#: the read noise correlated along rows, and that correlation's length (pixels).
INTEGRATING_SPREAD_X = 0.045
INTEGRATING_SPREAD_Y = 0.035
INTEGRATING_ROW_NOISE_FRACTION = 0.3
INTEGRATING_ROW_NOISE_LENGTH = 32

_INTEGRATING_ONLY = ("read_noise", "dark_offset", "gain_cv")


class SimulationConfig(StrictModel):
    """Everything that defines a simulated microscope; one config and seed, one set of frames.

    Parameters
    ----------
    specimen
        ``"nanoparticles"`` (low magnification, nanoparticle aggregates on holey carbon) or
        ``"atomic"`` (crystalline Au particles with lattice fringes on lacey carbon, through a CTF).
    detector
        ``"counting"`` (Poisson, one count per electron) or ``"integrating"`` (scintillator CMOS
        like the Gatan OneView: Gamma gain per electron, light spread, read noise, offset, clip).
    dose_rate
        Electrons per unbinned pixel per second where the specimen transmits fully (vacuum).
    seed
        Fixes the specimen (which depends on nothing else) and the noise sequence.
    drift_px_per_s
        Stage drift ``(x, y)`` in unbinned pixels per second; a single number means along x.
    specimen_change_per_s
        Fraction of the particles' mass lost per second under the beam (negative: contamination
        grows). 0 keeps the specimen fixed.
    size
        Camera sensor size in unbinned pixels (square).
    pixel_size_A
        Unbinned pixel size at the specimen (A); ``None`` takes the specimen kind's default.
    counts_per_electron
        Mean camera counts per electron; ``None`` takes the detector's default (1 or 44).
    read_noise, dark_offset, gain_cv
        Integrating detector only: rms read noise (counts, per pixel at binning 1), offset left
        after dark subtraction (counts), coefficient of variation of the per-electron gain.
    voltage_kv
        Accelerating voltage (sets the electron wavelength).
    cs_mm
        Spherical aberration of the objective lens (atomic specimen's CTF).
    defocus_nm
        Defocus (negative = underfocus); ``None`` takes the kind's default (Scherzer for atomic).
    """

    model_config = ConfigDict(frozen=True)

    specimen: SpecimenKind = "nanoparticles"
    detector: DetectorKind = "counting"
    dose_rate: FiniteFloat = Field(2500.0, ge=0.0, le=1e12)
    seed: int = Field(0, ge=0, lt=2**63)
    drift_px_per_s: tuple[FiniteFloat, FiniteFloat] = (0.0, 0.0)
    specimen_change_per_s: FiniteFloat = Field(0.0, ge=-1.0, le=1.0)
    size: int = Field(512, gt=0, le=16384)
    pixel_size_A: FiniteFloat | None = Field(None, gt=0.0)
    counts_per_electron: FiniteFloat | None = Field(None, gt=0.0)
    read_noise: FiniteFloat | None = Field(None, ge=0.0)
    dark_offset: FiniteFloat | None = None
    gain_cv: FiniteFloat | None = Field(None, gt=0.0, le=3.0)
    voltage_kv: FiniteFloat = Field(200.0, gt=0.0, le=3000.0)
    cs_mm: FiniteFloat = Field(1.2, ge=-10.0, le=10.0)
    defocus_nm: FiniteFloat | None = Field(None, ge=-1e6, le=1e6)

    @field_validator("drift_px_per_s", mode="before")
    @classmethod
    def _scalar_drift_is_along_x(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (float(value), 0.0)
        return value

    @model_validator(mode="after")
    def _integrating_only(self) -> SimulationConfig:
        if self.detector == "counting":
            given = [name for name in _INTEGRATING_ONLY if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} only apply to detector='integrating'; "
                    "remove them or choose the integrating detector"
                )
        return self

    # Effective values (defaults filled in) -------------------------------------------------

    @property
    def effective_pixel_size_A(self) -> float:
        """Unbinned pixel size in A, the kind's default when not set."""
        if self.pixel_size_A is not None:
            return float(self.pixel_size_A)
        return DEFAULT_PIXEL_SIZE_A[self.specimen]

    @property
    def effective_counts_per_electron(self) -> float:
        """Mean counts per electron, the detector's default when not set."""
        if self.counts_per_electron is not None:
            return float(self.counts_per_electron)
        if self.detector == "counting":
            return COUNTING_COUNTS_PER_ELECTRON
        return INTEGRATING_COUNTS_PER_ELECTRON

    @property
    def detector_model(self) -> DetectorModel:
        """The detector's model in electrons (:mod:`tem_acq.detector`).

        The one set of parameters the simulated camera samples and the normalisation corrects
        for.
        """
        if self.detector == "counting":
            return COUNTING
        cpe = self.effective_counts_per_electron
        return DetectorModel(
            kind="integrating",
            gain_cv=_default(self.gain_cv, INTEGRATING_GAIN_CV),
            read_noise_e=_default(self.read_noise, INTEGRATING_READ_NOISE) / cpe,
            dark_offset_e=_default(self.dark_offset, INTEGRATING_DARK_OFFSET) / cpe,
            spread_x=INTEGRATING_SPREAD_X,
            spread_y=INTEGRATING_SPREAD_Y,
            row_noise_fraction=INTEGRATING_ROW_NOISE_FRACTION,
        )

    @property
    def effective_defocus_nm(self) -> float:
        """Defocus in nm; Scherzer defocus for the atomic kind when not set."""
        if self.defocus_nm is not None:
            return float(self.defocus_nm)
        default = DEFAULT_DEFOCUS_NM[self.specimen]
        if default is not None:
            return default
        return scherzer_defocus_nm(self.voltage_kv, self.cs_mm)

    @property
    def drift_speed_px_per_s(self) -> float:
        """Magnitude of the drift vector."""
        return math.hypot(*self.drift_px_per_s)


def _default(value: float | None, default: float) -> float:
    return float(default if value is None else value)


def electron_wavelength_A(voltage_kv: float) -> float:
    """Relativistic electron wavelength in A.

    Parameters
    ----------
    voltage_kv
        Accelerating voltage in kV.

    Returns
    -------
    float
        Wavelength (0.02508 A at 200 kV).
    """
    v = voltage_kv * 1e3
    # h / sqrt(2 m e V (1 + e V / 2 m c^2)), constants in SI, result in A.
    h, m, e, c = 6.62607015e-34, 9.1093837015e-31, 1.602176634e-19, 299792458.0
    return h / math.sqrt(2.0 * m * e * v * (1.0 + e * v / (2.0 * m * c * c))) * 1e10


def scherzer_defocus_nm(voltage_kv: float, cs_mm: float) -> float:
    """Scherzer defocus ``-1.2 sqrt(Cs lambda)`` in nm (0 for a corrected lens with Cs <= 0).

    Parameters
    ----------
    voltage_kv
        Accelerating voltage in kV.
    cs_mm
        Spherical aberration in mm.

    Returns
    -------
    float
        Defocus in nm (negative = underfocus).
    """
    if cs_mm <= 0:
        return 0.0
    return -1.2 * math.sqrt(cs_mm * 1e7 * electron_wavelength_A(voltage_kv)) / 10.0
