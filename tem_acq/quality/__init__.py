"""How good a denoised image is on the user's own frames, without ground truth.

Two exposures of one static field have independent noise, so each frame is a noisy but
unbiased reference for images made from the other: :func:`estimate_pair` turns that into the
mean squared error against the noise-free image, with intervals, for the raw frame, the best
Gaussian filter and any denoiser; :func:`estimate_frames` does it for the consecutive pairs of a
stack, and :func:`summarize` combines pairs. See ``docs/design/quality.md``.
"""

from __future__ import annotations

from tem_acq.quality.estimate import (
    MAX_DRIFT_PX,
    TILE_PX,
    estimate_frames,
    estimate_pair,
    gain,
    saturation_electrons,
    summarize,
)
from tem_acq.quality.results import Estimate, Gain, PairEstimate

__all__ = [
    "MAX_DRIFT_PX",
    "TILE_PX",
    "Estimate",
    "Gain",
    "PairEstimate",
    "estimate_frames",
    "estimate_pair",
    "gain",
    "saturation_electrons",
    "summarize",
]
