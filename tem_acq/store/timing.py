"""The time axis of an acquisition store, measured from the frames' own clocks.

A store's NGFF ``t`` scale, its header's ``frame_interval_ms`` and the OME-XML's
``TimeIncrement`` are the mean interval between frames as their records say: from
``elapsed_ms`` (the camera's or engine's clock) where the first and last frames have one that
advances, else from their timestamps. The writer measures it as frames arrive and writes it at
its commits (see :class:`~tem_acq.store.AcquisitionWriter`); ``tem-acq recover`` measures it
again from the per-frame table.
"""

from __future__ import annotations

from datetime import datetime

from tem_acq.store.metadata import FrameRecord

#: A written interval is rewritten when the measurement moves by more than this fraction.
RELATIVE_CHANGE = 0.01


class FrameClock:
    """The mean frame interval of a run, from the records of its first and latest frames."""

    def __init__(self) -> None:
        self._first: tuple[int, float | None, datetime] | None = None
        self._last: tuple[int, float | None, datetime] | None = None

    def add(self, index: int, record: FrameRecord) -> None:
        """Take frame ``index``'s record into account (frames may come in any order)."""
        mark = (index, record.elapsed_ms, record.timestamp)
        if self._first is None or index < self._first[0]:
            self._first = mark
        if self._last is None or index > self._last[0]:
            self._last = mark

    @property
    def interval_ms(self) -> float | None:
        """The mean interval in ms; ``None`` before two frames, or if the clock did not move."""
        if self._first is None or self._last is None or self._last[0] <= self._first[0]:
            return None
        (i0, elapsed0, stamp0), (i1, elapsed1, stamp1) = self._first, self._last
        if elapsed0 is not None and elapsed1 is not None and elapsed1 > elapsed0:
            span = elapsed1 - elapsed0
        else:
            span = (stamp1 - stamp0).total_seconds() * 1000.0
        return span / (i1 - i0) if span > 0 else None


def differs(measured: float | None, written: float | None) -> bool:
    """True when ``measured`` should replace the ``written`` interval (none yet, or moved)."""
    if measured is None:
        return False
    return written is None or abs(measured - written) > RELATIVE_CHANGE * written
