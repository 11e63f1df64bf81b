"""Detector recipes: which cameras a training or test set is recorded with.

A :class:`DetectorRecipe` draws, per field, a detector kind, its detector model
(:class:`~tem_acq.detector.DetectorModel`: integrating cameras with gain spread, light spread,
read noise, dark offset and clipping at 0), the camera's counts per electron and its binning.
:data:`DETECTORS_TRAIN` spans cameras like the OneView and its neighbours;
:data:`DETECTORS_INDEPENDENT` is an integrating camera whose parameters lie outside every range
the training draws (held out whole, not by seed), beside the ideal counting detector.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import ConfigDict, Field, FiniteFloat, model_validator

from tem_acq.detector import COUNTING, DetectorKind, DetectorModel
from tem_acq.schema import StrictModel
from tem_acq.sim.config import BINNINGS

Range = tuple[FiniteFloat, FiniteFloat]


class DetectorRecipe(StrictModel):
    """Distributions of the cameras a set of fields is recorded with (uniform in each range).

    Attributes
    ----------
    kinds
        Detector kinds drawn with equal probability.
    gain_cv, read_noise_e, dark_offset_e, spread
        Integrating cameras: coefficient of variation of one electron's signal, rms read noise
        per unbinned pixel (e-), offset left after dark subtraction (e- per output pixel), light
        to each neighbour (x and y drawn separately).
    counts_per_electron
        Integrating cameras' conversion factor (counting cameras report 1 count per electron).
    binning, binning_weights
        Camera binnings and their probabilities.
    """

    model_config = ConfigDict(frozen=True)

    kinds: tuple[DetectorKind, ...] = Field(default=("counting", "integrating"), min_length=1)
    gain_cv: Range = (0.7, 1.2)
    read_noise_e: Range = (1.5, 4.0)
    dark_offset_e: Range = (-0.6, 0.2)
    spread: Range = (0.02, 0.06)
    counts_per_electron: Range = (20.0, 60.0)
    binning: tuple[int, ...] = (1, 2, 4, 8)
    binning_weights: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)

    @model_validator(mode="after")
    def _consistent(self) -> DetectorRecipe:
        for name in ("gain_cv", "read_noise_e", "dark_offset_e", "spread", "counts_per_electron"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} range ({lo}, {hi}) is reversed: give (low, high)")
        if bad := [b for b in self.binning if b not in BINNINGS]:
            raise ValueError(f"binning {bad} not supported: choose from {BINNINGS}")
        if len(self.binning_weights) != len(self.binning) or min(self.binning_weights) < 0:
            raise ValueError("binning_weights needs one weight >= 0 per binning")
        return self

    def draw(self, rng: np.random.Generator) -> Camera:
        """One camera: its kind, detector model, counts per electron and binning."""
        kind = self.kinds[int(rng.integers(len(self.kinds)))]
        weights = np.asarray(self.binning_weights, float)
        binning = int(self.binning[int(rng.choice(len(self.binning), p=weights / weights.sum()))])
        if kind == "counting":
            return Camera(COUNTING, 1.0, binning)

        def u(r: Range) -> float:
            return float(rng.uniform(*r))

        model = DetectorModel(
            kind="integrating",
            gain_cv=u(self.gain_cv),
            read_noise_e=u(self.read_noise_e),
            dark_offset_e=u(self.dark_offset_e),
            spread_x=u(self.spread),
            spread_y=u(self.spread),
            row_noise_fraction=0.3,
        )
        return Camera(model, u(self.counts_per_electron), binning)


@dataclass(frozen=True)
class Camera:
    """One drawn camera."""

    model: DetectorModel
    counts_per_electron: float
    binning: int


#: Training cameras: counting, and integrating cameras around the OneView fit (gain CV 1, read
#: noise 2.8 e-, offset -0.27 e-, spread 0.045/0.035 lie inside every range).
DETECTORS_TRAIN = DetectorRecipe()
#: Independent cameras: an integrating camera outside every training range (gain CV 1.35, read
#: noise 4.5 e-, positive offset 0.45 e-, light spread 0.075), and the counting detector.
DETECTORS_INDEPENDENT = DetectorRecipe(
    gain_cv=(1.35, 1.35),
    read_noise_e=(4.5, 4.5),
    dark_offset_e=(0.45, 0.45),
    spread=(0.075, 0.075),
    counts_per_electron=(30.0, 30.0),
)

__all__ = ["DETECTORS_INDEPENDENT", "DETECTORS_TRAIN", "Camera", "DetectorRecipe"]
