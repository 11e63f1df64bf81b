"""The camera's detector model: what turns expected electrons into the observed values.

One home for the detector's physics parameters, shared by the simulator (which samples them,
:mod:`tem_acq.sim.detector`) and the dose-aware normalisation (which corrects for them,
:mod:`tem_acq.denoise.normalization`).

Everything here is in electrons (counts divided by the camera's counts per electron), so one
model serves a camera whatever its conversion factor:

- **counting**: Poisson electrons, observed as they arrive: the observed mean is the dose.
- **integrating** (scintillator CMOS such as the Gatan OneView): Poisson electrons, each
  depositing a Gamma-distributed gain (coefficient of variation ``gain_cv``), light spread to
  the neighbours, Gaussian read noise, the offset left after dark subtraction, and clipping at
  0. With an offset and the clip the observed mean at low dose is *not* the dose (the real
  OneView frames have 13 % exact zeros): :meth:`DetectorModel.mean_response` says what it is,
  and :meth:`DetectorModel.corrected_dose` inverts it.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import ConfigDict, Field, FiniteFloat, model_validator

from tem_acq.schema import StrictModel

DetectorKind = Literal["counting", "integrating"]


class DetectorModel(StrictModel):
    """A detector's response, in electrons.

    Attributes
    ----------
    kind
        ``"counting"`` or ``"integrating"``.
    gain_cv
        Coefficient of variation of the signal one electron deposits (integrating; 0 for
        counting).
    read_noise_e
        Rms read noise per pixel at binning 1, in electrons (read noise in counts divided by
        the counts per electron); binning ``b`` multiplies it by ``b``.
    dark_offset_e
        Offset left after dark subtraction, in electrons per output pixel.
    spread_x, spread_y
        Fraction of an electron's light reaching each x (y) neighbour at binning 1; binning
        ``b`` divides it by ``b``.
    row_noise_fraction
        Share of the read-noise rms that is correlated along rows.
    clip_at_zero
        The camera reports values below 0 as 0.
    """

    model_config = ConfigDict(frozen=True)

    kind: DetectorKind = "counting"
    gain_cv: FiniteFloat = Field(0.0, ge=0.0, le=3.0)
    read_noise_e: FiniteFloat = Field(0.0, ge=0.0, le=100.0)
    dark_offset_e: FiniteFloat = Field(0.0, ge=-100.0, le=100.0)
    spread_x: FiniteFloat = Field(0.0, ge=0.0, lt=0.5)
    spread_y: FiniteFloat = Field(0.0, ge=0.0, lt=0.5)
    row_noise_fraction: FiniteFloat = Field(0.0, ge=0.0, le=1.0)
    clip_at_zero: bool = True

    @model_validator(mode="after")
    def _counting_is_ideal(self) -> DetectorModel:
        if self.kind == "counting":
            extra = [
                name
                for name in ("gain_cv", "read_noise_e", "dark_offset_e", "spread_x", "spread_y")
                if getattr(self, name) != 0.0
            ]
            if extra:
                raise ValueError(
                    f"{', '.join(extra)} must be 0 for a counting detector (it counts each "
                    "electron once); choose kind='integrating' for a camera that has them"
                )
        return self

    @property
    def is_linear(self) -> bool:
        """True when the observed mean equals the dose (nothing is clipped or offset)."""
        return self.kind == "counting" or (
            self.dark_offset_e == 0.0 and (not self.clip_at_zero or self._sigma2(0.0, 1) == 0.0)
        )

    def _sigma2(self, lam: float | NDArray[np.float64], binning: int) -> NDArray[np.float64]:
        """Variance of the observed value (electrons) at expected ``lam`` per output pixel."""
        fx, fy = self.spread_x / binning, self.spread_y / binning
        # a pixel keeps (1-2f)^2 + 2 f^2 of the variance of its own deposited signal per axis
        keep = ((1 - 2 * fx) ** 2 + 2 * fx**2) * ((1 - 2 * fy) ** 2 + 2 * fy**2)
        shot = np.asarray(lam, np.float64) * (1.0 + self.gain_cv**2) * keep
        return shot + (self.read_noise_e * binning) ** 2

    def mean_response(self, lam: ArrayLike, binning: int = 1) -> NDArray[np.float64]:
        """Expected observed electrons per pixel at expected ``lam`` electrons per pixel.

        The observed value is approximated as Gaussian (mean ``lam + dark_offset_e``, the
        variance of shot noise times the gain spread, light spread and read noise), clipped at
        0 when ``clip_at_zero``.

        Parameters
        ----------
        lam
            Expected electrons per output pixel (>= 0).
        binning
            Camera binning (read noise grows by ``b``, light spread shrinks by ``1/b``).

        Returns
        -------
        numpy.ndarray
            float64 expected observed electrons, same shape as ``lam``.
        """
        lam = np.maximum(np.asarray(lam, np.float64), 0.0)
        mu = lam + self.dark_offset_e
        if not self.clip_at_zero or self.kind == "counting":
            return mu
        sigma = np.sqrt(np.maximum(self._sigma2(lam, binning), 1e-12))
        z = mu / sigma
        phi = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        cdf = 0.5 * (1.0 + _erf(z / math.sqrt(2.0)))
        return mu * cdf + sigma * phi

    def corrected_dose(self, observed_mean: ArrayLike, binning: int = 1) -> NDArray[np.float64]:
        """The dose whose :meth:`mean_response` is ``observed_mean`` (a flat field's inverse).

        Parameters
        ----------
        observed_mean
            Observed mean electrons per pixel (counts / counts per electron).
        binning
            Camera binning.

        Returns
        -------
        numpy.ndarray
            float64 dose in e-/px (>= 0), same shape as ``observed_mean``.
        """
        target = np.asarray(observed_mean, np.float64)
        if self.is_linear:
            return np.maximum(target - self.dark_offset_e, 0.0)
        lo = np.zeros_like(target)
        hi = np.maximum(target, 0.0) + abs(self.dark_offset_e) + 10.0 * (1.0 + self.read_noise_e)
        for _ in range(60):  # bisection: the response is monotonic
            mid = 0.5 * (lo + hi)
            low = self.mean_response(mid, binning) < target
            lo = np.where(low, mid, lo)
            hi = np.where(low, hi, mid)
        return 0.5 * (lo + hi)


def _erf(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Vectorised error function (math.erf per element: exact, and fast enough for tables)."""
    return np.vectorize(math.erf, otypes=[np.float64])(x)


#: The ideal counting detector.
COUNTING = DetectorModel()
#: The Gatan OneView as fitted to the four real frames (44 counts/e-; see tem_acq.sim.config).
ONEVIEW = DetectorModel(
    kind="integrating",
    gain_cv=1.0,
    read_noise_e=125.0 / 44.0,
    dark_offset_e=-12.0 / 44.0,
    spread_x=0.045,
    spread_y=0.035,
    row_noise_fraction=0.3,
)
#: The model assumed for a detector kind when the camera says no more than its kind.
DEFAULT_MODELS: dict[str, DetectorModel] = {"counting": COUNTING, "integrating": ONEVIEW}

__all__ = ["COUNTING", "DEFAULT_MODELS", "ONEVIEW", "DetectorKind", "DetectorModel"]
