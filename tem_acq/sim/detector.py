"""Detector models: expected electrons per pixel in, uint16 camera counts out.

Both work at the output (binned) pixel size. Summing Poisson electrons over a bin is Poisson in
the summed rate, and summing Gamma gains over electrons is Gamma in the summed shape, so the
electron statistics of a binned frame are exact without simulating the unbinned sensor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from tem_acq.detector import DetectorModel
from tem_acq.sim._sampling import GammaSumSampler, PoissonSampler, normal_table, uniform16
from tem_acq.sim.config import (
    COUNTING_COUNTS_PER_ELECTRON,
    INTEGRATING_COUNTS_PER_ELECTRON,
    INTEGRATING_DARK_OFFSET,
    INTEGRATING_GAIN_CV,
    INTEGRATING_READ_NOISE,
    INTEGRATING_ROW_NOISE_FRACTION,
    INTEGRATING_ROW_NOISE_LENGTH,
    INTEGRATING_SPREAD_X,
    INTEGRATING_SPREAD_Y,
)

F32 = NDArray[np.float32]
U16 = NDArray[np.uint16]

#: largest value a uint16 camera reports; brighter pixels saturate here
SATURATION = 65535
#: largest value an 8-bit camera reports
SATURATION_8BIT = 255


def detector_from_model(
    model: DetectorModel, counts_per_electron: float
) -> CountingDetector | IntegratingDetector:
    """The simulated detector that samples ``model`` at ``counts_per_electron`` counts/e-."""
    if model.kind == "counting":
        return CountingDetector.from_model(model, counts_per_electron)
    return IntegratingDetector.from_model(model, counts_per_electron)


def _to_uint16(counts: F32) -> U16:
    """Round to the nearest integer and saturate to [0, 65535] (never wrap)."""
    np.clip(counts, 0.0, float(SATURATION), out=counts)
    counts += 0.5
    return counts.astype(np.uint16)


def to_uint8(counts: U16, scale: float) -> NDArray[np.uint8]:
    """A camera's 8-bit readout of 16-bit counts: ``round(counts * scale)``, saturating at 255.

    The 8-bit frame's counts per electron are the detector's times ``scale``.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"the 8-bit scale must be a positive number, got {scale!r}")
    out = counts.astype(np.float32)
    out *= np.float32(scale)
    out += np.float32(0.5)
    np.minimum(out, np.float32(SATURATION_8BIT), out=out)
    return out.astype(np.uint8)


@dataclass
class CountingDetector:
    """Electron-counting direct detector: Poisson electrons, ``counts_per_electron`` counts each.

    Near-ideal (no blur, no coincidence loss, no read noise): the variance of the counts in
    electrons equals the mean.
    """

    counts_per_electron: float = COUNTING_COUNTS_PER_ELECTRON
    _poisson: PoissonSampler = field(default_factory=PoissonSampler, init=False, repr=False)

    @classmethod
    def from_model(cls, model: DetectorModel, counts_per_electron: float) -> CountingDetector:
        """The counting detector of ``model`` (kind ``"counting"``) at ``counts_per_electron``."""
        if model.kind != "counting":
            raise ValueError(f"a {model.kind} detector model is not a counting detector")
        return cls(counts_per_electron=float(counts_per_electron))

    @property
    def detector_model(self) -> DetectorModel:
        """The model, in electrons, that this detector samples."""
        return DetectorModel()

    def sample(self, electrons: F32, rng: np.random.Generator, binning: int = 1) -> U16:
        """Draw one frame of counts.

        Parameters
        ----------
        electrons
            Expected electrons per output pixel (float32, >= 0).
        rng
            Noise generator (consumed deterministically).
        binning
            Camera binning (has no effect on a counting detector beyond the summed rate).

        Returns
        -------
        numpy.ndarray
            uint16 counts of the same shape.
        """
        n = self._poisson.sample(electrons, rng)
        if self.counts_per_electron == 1.0:
            return np.minimum(n, SATURATION).astype(np.uint16)
        return _to_uint16(n.astype(np.float32) * np.float32(self.counts_per_electron))


@dataclass
class IntegratingDetector:
    """Scintillator-coupled CMOS camera such as the Gatan OneView (values fitted to real frames).

    Per output pixel: ``N ~ Poisson(lambda)`` electrons, each depositing a Gamma-distributed
    gain (mean ``counts_per_electron``, coefficient of variation ``gain_cv``), so the signal is
    Gamma(N k, cpe / k) with ``k = 1 / gain_cv**2``; the light spreads to neighbours (3-tap
    kernel, stronger along x than y); then Gaussian read noise (white plus a row-correlated part
    that decays over about 32 pixels along x, as the real frames show), the offset left after dark
    subtraction, rounding and clipping to [0, 65535].

    Binning ``b`` sums ``b x b`` pixels after readout: read noise grows by ``b``, the light that
    leaks across a bin edge shrinks by ``1/b`` and the row correlation length by ``1/b``; the
    offset applies to the output pixel.
    """

    counts_per_electron: float = INTEGRATING_COUNTS_PER_ELECTRON
    gain_cv: float = INTEGRATING_GAIN_CV
    read_noise: float = INTEGRATING_READ_NOISE
    dark_offset: float = INTEGRATING_DARK_OFFSET
    #: fraction of light to each x neighbour and each y neighbour (binning 1)
    spread_x: float = INTEGRATING_SPREAD_X
    spread_y: float = INTEGRATING_SPREAD_Y
    #: share of the read-noise rms that is correlated along rows, and its length (pixels)
    row_noise_fraction: float = INTEGRATING_ROW_NOISE_FRACTION
    row_noise_length: int = INTEGRATING_ROW_NOISE_LENGTH
    _poisson: PoissonSampler = field(default_factory=PoissonSampler, init=False, repr=False)
    _gamma: GammaSumSampler = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._gamma = GammaSumSampler(1.0 / self.gain_cv**2)
        self._noise_tables: dict[int, F32] = {}

    @classmethod
    def from_model(cls, model: DetectorModel, counts_per_electron: float) -> IntegratingDetector:
        """The integrating detector that samples ``model`` (in electrons) in counts.

        Parameters
        ----------
        model
            An integrating :class:`~tem_acq.detector.DetectorModel` with ``clip_at_zero`` (a
            uint16 camera cannot report values below 0).
        counts_per_electron
            Mean counts one electron produces.
        """
        if model.kind != "integrating":
            raise ValueError(f"a {model.kind} detector model is not an integrating detector")
        if not model.clip_at_zero or model.gain_cv == 0.0:
            raise ValueError(
                "the simulated integrating camera clips at 0 and needs gain_cv > 0; "
                "use a model with clip_at_zero=True and gain_cv > 0"
            )
        cpe = float(counts_per_electron)
        return cls(
            counts_per_electron=cpe,
            gain_cv=model.gain_cv,
            read_noise=model.read_noise_e * cpe,
            dark_offset=model.dark_offset_e * cpe,
            spread_x=model.spread_x,
            spread_y=model.spread_y,
            row_noise_fraction=model.row_noise_fraction,
        )

    @property
    def detector_model(self) -> DetectorModel:
        """The model, in electrons, that this detector samples."""
        cpe = self.counts_per_electron
        return DetectorModel(
            kind="integrating",
            gain_cv=self.gain_cv,
            read_noise_e=self.read_noise / cpe,
            dark_offset_e=self.dark_offset / cpe,
            spread_x=self.spread_x,
            spread_y=self.spread_y,
            row_noise_fraction=self.row_noise_fraction,
        )

    def _white_table(self, binning: int) -> F32:
        """Normal table scaled to the white read noise at ``binning``, dark offset included."""
        if binning not in self._noise_tables:
            sigma = self.read_noise * binning * math.sqrt(1.0 - self.row_noise_fraction**2)
            table = sigma * normal_table().astype(np.float64) + self.dark_offset
            self._noise_tables[binning] = table.astype(np.float32)
        return self._noise_tables[binning]

    def sample(self, electrons: F32, rng: np.random.Generator, binning: int = 1) -> U16:
        """Draw one frame of counts.

        Parameters
        ----------
        electrons
            Expected electrons per output pixel (2-D float32, >= 0).
        rng
            Noise generator (consumed deterministically).
        binning
            Camera binning used to produce ``electrons`` (scales read noise and light spread).

        Returns
        -------
        numpy.ndarray
            uint16 counts of the same shape.
        """
        n = self._poisson.sample(electrons, rng)
        signal = self._gamma.sample(n, rng)
        signal *= np.float32(self.counts_per_electron * self.gain_cv**2)  # theta = cpe / k
        signal = _spread(signal, self.spread_x / binning, self.spread_y / binning)
        h, w = signal.shape
        # the white table already holds the dark offset: one pass adds both
        (u_white,) = uniform16(rng, 1, h * w)
        signal += np.take(self._white_table(binning), u_white).reshape(h, w)
        row_sigma = self.read_noise * binning * self.row_noise_fraction
        if row_sigma > 0:
            length = max(1, self.row_noise_length // binning)
            signal += _row_noise(rng, h, w, length, row_sigma)
        return _to_uint16(signal)


def _spread(a: F32, fx: float, fy: float) -> F32:
    """3-tap light spread ``[f, 1 - 2f, f]`` along x then y, reflecting at the edges (sum kept).

    Written with one neighbour-sum buffer and in-place arithmetic: this runs every frame.
    """
    h, w = a.shape
    if w < 2 or h < 2:
        return a
    nb = np.empty_like(a)
    np.add(a[:, :-2], a[:, 2:], out=nb[:, 1:-1])
    np.add(a[:, 0], a[:, 1], out=nb[:, 0])
    np.add(a[:, -1], a[:, -2], out=nb[:, -1])
    nb *= np.float32(fx)
    out = a * np.float32(1.0 - 2.0 * fx)
    out += nb
    np.add(out[:-2], out[2:], out=nb[1:-1])
    np.add(out[0], out[1], out=nb[0])
    np.add(out[-1], out[-2], out=nb[-1])
    nb *= np.float32(fy)
    out *= np.float32(1.0 - 2.0 * fy)
    out += nb
    return out


def _row_noise(rng: np.random.Generator, h: int, w: int, length: int, sigma: float) -> F32:
    """Gaussian noise of rms ``sigma`` correlated along x as ``1 - lag / length`` (boxed noise).

    For long correlation lengths the box-filtered noise is generated on a 4x coarser grid along x
    and interpolated linearly, each interpolation phase rescaled to keep the variance: the same
    correlation to within a few percent at a quarter of the cost.
    """
    step = 4 if length >= 16 else 1
    coarse_len = length // step
    coarse_w = -(-w // step) + 1
    (u,) = uniform16(rng, 1, h * (coarse_w + coarse_len - 1))
    white = np.take(normal_table(), u).reshape(h, coarse_w + coarse_len - 1)
    coarse = _box_along_x(white, coarse_len)
    scale = sigma / math.sqrt(coarse_len)
    if step == 1:
        coarse = coarse[:, :w]
        coarse *= np.float32(scale)
        return coarse
    rho = 1.0 - 1.0 / coarse_len  # correlation of neighbouring knots
    out = np.empty((h, w), np.float32)
    for p in range(step):
        b = p / step
        a = 1.0 - b
        norm = scale / math.sqrt(a * a + b * b + 2.0 * a * b * rho)
        n = len(range(p, w, step))
        view = out[:, p::step]
        np.multiply(coarse[:, :n], np.float32(a * norm), out=view)
        if b:
            view += np.float32(b * norm) * coarse[:, 1 : n + 1]
    return out


def _box_along_x(a: F32, length: int) -> F32:
    """Sums of ``length`` consecutive elements along x (output width = input width - length + 1)."""
    done = 1
    out = a
    # doubling sums are cheaper than cumsum here; finish with plain adds for non-powers of 2
    while done * 2 <= length:
        out = out[:, :-done] + out[:, done:]
        done *= 2
    width = a.shape[1] - length + 1
    result = out[:, :width].copy()
    while done < length:
        result += a[:, done : done + width]
        done += 1
    return result
