"""Noise-free fields for training and test data: the specimens users image, field by field.

The simulated camera (:mod:`tem_acq.sim.simulator`) renders one procedural specimen map live;
these generators instead make independent fields, each drawn from a *recipe* (materials, shapes,
orientations, thicknesses, optics, pixel sizes), for training data that covers what users image
and for independent test sets drawn from recipes the training never uses:

- :mod:`~tem_acq.sim.fields.atomic`: atomic resolution by multislice image formation
  (atomic potentials, slice propagation, a CTF with defocus, Cs, aperture and partial coherence);
- :mod:`~tem_acq.sim.fields.lowmag`: low magnification (particles of many shapes and materials
  on holey carbon, Fresnel fringes over a defocus range).

A :class:`Field` is the expected intensity relative to vacuum at the detector's pixel size; a
detector model turns it into counts (:mod:`tem_acq.sim.detector`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class Field:
    """One noise-free field.

    Attributes
    ----------
    intensity
        ``(y, x)`` float32 expected intensity relative to vacuum (vacuum is 1, >= 0), at the
        detector pixel size: multiply by the dose in e-/px for the expected electrons per pixel.
    pixel_size_A
        Detector pixel size at the specimen (Å).
    vacuum
        ``(y, x)`` True where the beam passes through no material.
    particles
        ``(y, x)`` True where a particle (nanocrystal, nanoparticle) is.
    kind
        ``"atomic"`` or ``"low-mag"``.
    settings
        What was drawn for this field (material, shape, orientation, thickness, defocus, Cs, ...):
        JSON values only, for provenance and for splitting results by setting.
    """

    intensity: F32
    pixel_size_A: float
    vacuum: Mask
    particles: Mask
    kind: str
    settings: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = self.intensity.shape
        if len(shape) != 2 or self.vacuum.shape != shape or self.particles.shape != shape:
            raise ValueError(
                f"a field needs 2-D intensity, vacuum and particles of one shape, got {shape}, "
                f"{self.vacuum.shape}, {self.particles.shape}"
            )


__all__ = ["Field"]
