"""The time axis of an acquisition store, measured from the frames' own clocks.

A store's NGFF ``t`` scale, its header's ``frame_interval_ms`` and the OME-XML's
``TimeIncrement`` are the mean interval between frames as their records say: from
``elapsed_ms`` (the camera's or engine's clock) where the first and last frames have one that
advances, else from their timestamps. The writer measures it as frames arrive and writes it at
its commits when it is due (:func:`due`) and exactly at close; ``tem-acq recover`` measures it
from the per-frame table of a store that has none.
"""

from __future__ import annotations

from datetime import datetime

from tem_acq.store.metadata import FrameRecord

#: A written interval is rewritten when the measurement moves by more than this fraction
#: (once the frames counted have doubled since it was written) ...
RELATIVE_CHANGE = 0.01
#: ... or by more than this fraction (at once).
LARGE_CHANGE = 0.1


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


def differs(measured: float | None, written: float | None, by: float = RELATIVE_CHANGE) -> bool:
    """True when ``measured`` should replace the ``written`` interval (none yet, or moved)."""
    if measured is None:
        return False
    return written is None or abs(measured - written) > by * written


def due(measured: float | None, written: float | None, frames: int, written_at: int) -> bool:
    """Whether a writer at ``frames`` frames should write ``measured`` over ``written``.

    Yes when none is written yet, when it moved by over 10 %, or by over 1 % once the frames
    have doubled since ``written_at``: a run's mean converges slowly, and rewriting the header
    at every commit would cost as much as the commit. A long run so rewrites it a few times
    (about log2 of its shards), and a crash leaves a value within 10 % of the last commit's
    measurement (within 1 % of one made with at least half its frames).
    """
    if differs(measured, written, LARGE_CHANGE):
        return True
    return differs(measured, written) and frames >= 2 * written_at
