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
from functools import lru_cache
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
    gain_cv: FiniteFloat = Field(default=0.0, ge=0.0, le=3.0)
    read_noise_e: FiniteFloat = Field(default=0.0, ge=0.0, le=100.0)
    dark_offset_e: FiniteFloat = Field(default=0.0, ge=-100.0, le=100.0)
    spread_x: FiniteFloat = Field(default=0.0, ge=0.0, lt=0.5)
    spread_y: FiniteFloat = Field(default=0.0, ge=0.0, lt=0.5)
    row_noise_fraction: FiniteFloat = Field(default=0.0, ge=0.0, le=1.0)
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
        return self.is_affine and self.dark_offset_e == 0.0

    @property
    def is_affine(self) -> bool:
        """True when the observed mean is the dose plus the offset (nothing is clipped)."""
        return self.kind == "counting" or not self.clip_at_zero

    def describe(self) -> str:
        """A short description (kind and, for integrating, the parameters in electrons)."""
        if self.kind == "counting":
            return "counting"
        clip = ", clip at 0" if self.clip_at_zero else ""
        return (
            f"integrating, gain CV {self.gain_cv:.3g}, read noise {self.read_noise_e:.3g} e-, "
            f"offset {self.dark_offset_e:+.3g} e-, spread {self.spread_x:.3g}/{self.spread_y:.3g}"
            f"{clip}"
        )

    def mean_response(self, lam: ArrayLike, binning: int = 1) -> NDArray[np.float64]:
        """Expected observed electrons per pixel at expected ``lam`` electrons per pixel.

        Exact for the integrating model on a flat field (see :class:`ResponseTable`: the
        characteristic function of Poisson electrons with Gamma gains, light spread, Gaussian
        read noise and offset, clipped at 0), up to the table's linear interpolation (below
        1e-4 of the noise rms); the observed value before rounding to integer counts. A
        counting detector's response is ``lam`` itself.

        Parameters
        ----------
        lam
            Expected electrons per output pixel (values below 0 count as 0).
        binning
            Camera binning (read noise grows by ``b``, light spread shrinks by ``1/b``).

        Returns
        -------
        numpy.ndarray
            float64 expected observed electrons, same shape as ``lam``.
        """
        lam = np.maximum(np.asarray(lam, np.float64), 0.0)
        if self.is_affine:
            return lam + self.dark_offset_e
        return response_table(self, binning).value(lam)

    def response_slope(self, lam: ArrayLike, binning: int = 1) -> NDArray[np.float64]:
        """Derivative of :meth:`mean_response` with respect to ``lam`` (0 below ``lam`` = 0)."""
        lam = np.asarray(lam, np.float64)
        if self.is_affine:
            return np.where(lam < 0.0, 0.0, 1.0)
        return np.where(lam < 0.0, 0.0, response_table(self, binning).slope(lam))

    def corrected_dose(self, observed_mean: ArrayLike, binning: int = 1) -> NDArray[np.float64]:
        """The dose whose :meth:`mean_response` is ``observed_mean`` (a flat field's inverse).

        The pipeline's corrected dose of a raw-only frame: its mean counts over the counts per
        electron, corrected here. A frame denoised with the detector-aware rule
        (:func:`tem_acq.denoise.normalization.keep_input_mean` with this model) needs no
        correction: the denoised frame's mean *is* its corrected dose.

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
        if self.is_affine:
            return np.maximum(target - self.dark_offset_e, 0.0)
        return response_table(self, binning).inverse(target)


#: Read noise below this (e-) is taken as this when tabulating the response (the
#: characteristic-function integral needs the Gaussian's decay; real cameras have far more).
_MIN_READ_NOISE_E = 0.25
#: Nodes of the frequency integral (Simpson; odd).
_FREQ_NODES = 4097
#: Table steps per noise rms along the dose axis (linear interpolation error ~ 5e-5 rms).
_STEPS_PER_SIGMA = 32


class ResponseTable:
    """The mean response ``g(lam)`` of one (integrating model, binning), tabulated exactly.

    The observed value is ``X = S + R + o``: ``S = sum_j w_j C_j`` over the pixel and its 8
    neighbours (light-spread weights ``w_j``), each ``C_j`` Poisson(``lam``) electrons with
    Gamma gains (mean 1, CV ``gain_cv``), ``R`` Gaussian read noise, ``o`` the offset. Its
    characteristic function is ``exp(i t o - s_r^2 t^2 / 2 + lam A(t))`` with ``A(t) =
    sum_j (phi_gain(w_j t) - 1)``, and ``E max(X, 0) = (E X + E|X|) / 2`` with ``E|X| =
    (2 / pi) int_0^inf (1 - Re phi(t)) / t^2 dt``: a smooth integral (Simpson) truncated
    where the read noise's Gaussian has killed ``phi``. Tabulated on a dose grid of
    ``rms / 32`` steps up to where the clip no longer matters (mean 10 rms above 0); beyond
    it ``g(lam) = lam + o``, and below 0 it continues linearly (for solvers).

    Parameters
    ----------
    model
        An integrating detector model.
    binning
        Camera binning.
    """

    def __init__(self, model: DetectorModel, binning: int) -> None:
        self.offset = float(model.dark_offset_e)
        self.lam = _dose_grid(model, binning)
        freq, weights, gain_sum = _gain_exponent(model, binning)
        read = max(model.read_noise_e * binning, _MIN_READ_NOISE_E)
        per_e = _variance_per_electron(model, binning)
        g, slope = [], []
        for chunk in np.array_split(self.lam, max(1, self.lam.size // 64)):
            gc, sc = _clipped_mean(chunk, self.offset, read, per_e, freq, weights, gain_sum)
            g.append(gc)
            slope.append(sc)
        self.g = np.concatenate(g)
        self.g_slope = np.concatenate(slope)
        self.lam_max = float(self.lam[-1])

    def value(self, lam: NDArray[np.float64]) -> NDArray[np.float64]:
        """``g(lam)``, continued linearly below 0 and as ``lam + offset`` above the table."""
        inside = np.interp(lam, self.lam, self.g)
        below = self.g[0] + self.g_slope[0] * np.minimum(lam, 0.0)
        out = np.where(lam < 0.0, below, inside)
        return np.where(lam > self.lam_max, lam + self.offset, out)

    def slope(self, lam: NDArray[np.float64]) -> NDArray[np.float64]:
        """``g'(lam)``: the tabulated derivative, linearly interpolated (1 above the table)."""
        out = np.interp(lam, self.lam, self.g_slope)
        return np.where(lam > self.lam_max, 1.0, out)

    def inverse(self, observed: NDArray[np.float64]) -> NDArray[np.float64]:
        """The ``lam >= 0`` whose ``g`` is ``observed`` (0 below ``g(0)``)."""
        inside = np.interp(observed, self.g, self.lam)
        above = observed - self.offset
        return np.where(observed > self.g[-1], above, np.maximum(inside, 0.0))


def _variance_per_electron(model: DetectorModel, binning: int) -> float:
    fx, fy = model.spread_x / binning, model.spread_y / binning
    keep = ((1 - 2 * fx) ** 2 + 2 * fx**2) * ((1 - 2 * fy) ** 2 + 2 * fy**2)
    return (1.0 + model.gain_cv**2) * keep


def _dose_grid(model: DetectorModel, binning: int) -> NDArray[np.float64]:
    """Doses from 0 in steps of ``rms / 32`` until the mean is 10 rms above the clip."""
    per_e = _variance_per_electron(model, binning)
    read2 = max(model.read_noise_e * binning, _MIN_READ_NOISE_E) ** 2
    lam, grid = 0.0, [0.0]
    while True:
        sigma = math.sqrt(lam * per_e + read2)
        if lam + model.dark_offset_e >= 10.0 * sigma and lam >= 1.0:
            return np.asarray(grid)
        lam += sigma / _STEPS_PER_SIGMA
        grid.append(lam)


def _gain_exponent(
    model: DetectorModel, binning: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.complex128]]:
    """Frequencies ``t``, their Simpson weights and ``A(t)`` (per unit dose, see the class)."""
    read = max(model.read_noise_e * binning, _MIN_READ_NOISE_E)
    t_max = 12.0 / read  # the read noise alone makes |phi| < exp(-72) beyond
    t = np.linspace(0.0, t_max, _FREQ_NODES)
    simpson = np.ones(_FREQ_NODES)
    simpson[1:-1:2], simpson[2:-1:2] = 4.0, 2.0
    simpson *= (t[1] - t[0]) / 3.0
    fx, fy = model.spread_x / binning, model.spread_y / binning
    kx, ky = (fx, 1 - 2 * fx, fx), (fy, 1 - 2 * fy, fy)
    a = np.zeros(t.shape, np.complex128)
    for wx in kx:
        for wy in ky:
            a += _gain_cf(wx * wy * t, model.gain_cv) - 1.0
    return t, simpson, a


def _gain_cf(u: NDArray[np.float64], cv: float) -> NDArray[np.complex128]:
    """Characteristic function of one electron's gain (Gamma, mean 1, CV ``cv``) at ``u``."""
    if cv == 0.0:
        return np.exp(1j * u)
    k = 1.0 / cv**2
    return np.exp(-k * np.log(1.0 - 1j * u / k))


def _clipped_mean(
    lam: NDArray[np.float64],
    offset: float,
    read: float,
    var_per_e: float,
    t: NDArray[np.float64],
    weights: NDArray[np.float64],
    a: NDArray[np.complex128],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``E max(X, 0)`` and its derivative in ``lam`` for each dose of ``lam`` (a chunk)."""
    lam2 = lam[:, None]
    re = -0.5 * (read * t) ** 2 + lam2 * a.real
    im = offset * t + lam2 * a.imag
    phi = np.exp(re) * np.exp(1j * im)
    one_minus = -np.expm1(re) * np.cos(im) + 2.0 * np.sin(0.5 * im) ** 2
    d_phi = -(a * phi).real  # -d Re(phi) / d lam
    t2 = t[1:] ** 2
    mean = lam + offset
    second = 0.5 * (lam * var_per_e + read**2 + mean**2)  # (1 - Re phi) / t^2 at t = 0
    integral = second * weights[0] + (one_minus[:, 1:] / t2) @ weights[1:]
    d_integral = (0.5 * var_per_e + mean) * weights[0] + (d_phi[:, 1:] / t2) @ weights[1:]
    abs_mean = (2.0 / math.pi) * (integral + 1.0 / t[-1])
    d_abs_mean = (2.0 / math.pi) * d_integral
    return 0.5 * (mean + abs_mean), 0.5 * (1.0 + d_abs_mean)


@lru_cache(maxsize=64)
def response_table(model: DetectorModel, binning: int = 1) -> ResponseTable:
    """The cached :class:`ResponseTable` of an integrating ``model`` at ``binning``."""
    return ResponseTable(model, int(binning))


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

__all__ = [
    "COUNTING",
    "DEFAULT_MODELS",
    "ONEVIEW",
    "DetectorKind",
    "DetectorModel",
    "ResponseTable",
    "response_table",
]
