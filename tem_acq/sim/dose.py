"""The electron dose each field of the specimen has taken, for beam-sensitive workflows."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence


class FieldDose:
    """Accumulated electron dose per field of the specimen (e-/A^2, incident, as in vacuum).

    A field is the specimen area under the beam: the stage position, in unbinned specimen
    pixels, on a grid of one field of view (``field_px`` per side), so every exposure taken
    with the stage within half a field of a grid point adds to that field's dose. Exposures
    with the beam blanked add nothing.

    Parameters
    ----------
    field_px
        Side of one field in unbinned specimen pixels (the sensor size).
    """

    def __init__(self, field_px: float) -> None:
        if not (math.isfinite(field_px) and field_px > 0):
            raise ValueError(f"field_px must be a positive number, got {field_px!r}")
        self.field_px = float(field_px)
        self._dose: dict[tuple[int, int], float] = {}
        self._lock = threading.Lock()

    def field_of(self, stage_xy_px: Sequence[float]) -> tuple[int, int]:
        """The grid index ``(i, j)`` of the field centred nearest ``stage_xy_px``."""
        return (
            math.floor(float(stage_xy_px[0]) / self.field_px + 0.5),
            math.floor(float(stage_xy_px[1]) / self.field_px + 0.5),
        )

    def add(self, stage_xy_px: Sequence[float], e_per_A2: float) -> float:
        """Add ``e_per_A2`` to the field at ``stage_xy_px``; return the field's new total."""
        if not (math.isfinite(e_per_A2) and e_per_A2 >= 0):
            raise ValueError(f"a dose must be finite and >= 0, got {e_per_A2!r}")
        key = self.field_of(stage_xy_px)
        with self._lock:
            total = self._dose.get(key, 0.0) + float(e_per_A2)
            self._dose[key] = total
        return total

    def dose(self, stage_xy_px: Sequence[float]) -> float:
        """The dose the field at ``stage_xy_px`` has taken so far (e-/A^2)."""
        with self._lock:
            return self._dose.get(self.field_of(stage_xy_px), 0.0)

    def fields(self) -> dict[tuple[int, int], float]:
        """Every field that has taken a dose, with its total (a copy)."""
        with self._lock:
            return dict(self._dose)

    def reset(self) -> None:
        """Forget every field's dose (a fresh specimen)."""
        with self._lock:
            self._dose.clear()
