"""The pixel-size check: a model denoises best at the pixel sizes it was trained for.

A model card states the range of pixel sizes its training data covered
(``ModelCard.pixel_size_A_range``, angstrom per pixel). Frames outside it are still denoised
(nothing stops a run for it), with one warning line naming the pixel size, the range and what
to do.
"""

from __future__ import annotations

import logging
import math
import warnings

from tem_acq.denoise.card import ModelCard
from tem_acq.errors import PixelSizeWarning

log = logging.getLogger(__name__)


def pixel_size_note(card: ModelCard, pixel_size_A: float | None) -> str | None:
    """The warning line for frames of ``pixel_size_A`` (A/px), or None when inside the range.

    None too when the pixel size or the card's range is unknown.
    """
    span = card.pixel_size_A_range
    if span is None or pixel_size_A is None or not math.isfinite(pixel_size_A):
        return None
    lo, hi = span
    if lo <= pixel_size_A <= hi:
        return None
    if pixel_size_A < lo:
        fix = f"bin by {math.ceil(lo / pixel_size_A)} or lower the magnification"
    else:
        fix = "raise the magnification"
    return (
        f"pixel size {pixel_size_A:.4g} A/px is outside the range model {card.name!r} was "
        f"trained for ({lo:g}-{hi:g} A/px): expect worse denoising; use a model trained for "
        f"this pixel size, or {fix}"
    )


def warn_pixel_size(card: ModelCard, pixel_size_A: float | None) -> str | None:
    """Log and warn (:class:`~tem_acq.errors.PixelSizeWarning`) once when outside the range.

    Returns
    -------
    str or None
        The warning line, or None when there is nothing to say. Call it once per run.
    """
    note = pixel_size_note(card, pixel_size_A)
    if note is not None:
        log.warning("tem-acq: %s", note)
        warnings.warn(note, PixelSizeWarning, stacklevel=3)
    return note


__all__ = ["pixel_size_note", "warn_pixel_size"]
