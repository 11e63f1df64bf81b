"""The axes of a multi-dimensional acquisition: where each frame sits, and the view by them.

Frames are stored in acquisition order along t (crash-safe appends: nothing is ever written
out of order); each row records the frame's place along the acquisition's axes (``axes``, e.g.
a useq event's ``{"t": 2, "p": 1, "z": 0}``) and the header may state the axes' planned sizes
(:class:`~tem_acq.store.metadata.AcquisitionAxes`). :func:`place_frames` maps the rows onto
those axes and :class:`Hyperstack` is the lazy ``(axis..., y, x)`` view that ``tem-acq view``
gives napari (one slider per axis). A place no frame filled (an aborted run) reads as the
array's fill value: 0 in ``raw``, NaN in ``denoised``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tem_acq.store.metadata import AcquisitionMetadata, FrameRow

#: The order of the view's axes when the header states none (useq's names first).
VIEW_ORDER = ("t", "p", "g", "c", "z")


@dataclass(frozen=True)
class FramePlaces:
    """Where each frame of a store sits along its acquisition's axes.

    Attributes
    ----------
    sizes
        Each axis's size, in the view's order (the header's, else from the rows).
    index
        An int array of shape ``sizes``: the frame index at each place, -1 where none.
    placed
        Frames that found a place.
    unplaced
        Frames without one (no ``axes``, an index outside the sizes, or a place taken by a
        later frame), which the view cannot show; all frames stay readable along t.
    """

    sizes: dict[str, int]
    index: np.ndarray
    placed: int
    unplaced: int


def _row_axes(row: FrameRow, names: Sequence[str]) -> tuple[int, ...] | None:
    """The row's integer index along each of ``names``, or None if any is missing."""
    axes = row.axes or {}
    place = []
    for name in names:
        value = axes.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        place.append(value)
    return tuple(place)


def _sizes_from_rows(rows: Sequence[FrameRow]) -> dict[str, int]:
    """Axis sizes derived from the rows: the integer axes every row has (max index + 1)."""
    if not rows:
        return {}
    common: dict[str, int] | None = None  # each axis every row has so far: its largest index
    for row in rows:
        ints = {k: v for k, v in (row.axes or {}).items() if type(v) is int}
        if common is None:
            common = ints
        else:
            common = {n: max(top, ints[n]) for n, top in common.items() if n in ints}
    ordered = sorted(common or {}, key=lambda n: VIEW_ORDER.index(n) if n in VIEW_ORDER else 99)
    return {n: (common or {})[n] + 1 for n in ordered}


def axis_sizes(metadata: AcquisitionMetadata, rows: Sequence[FrameRow]) -> dict[str, int]:
    """The acquisition's axes and their sizes: the header's, else those every row states.

    Empty when the frames have no common axes (the store is a plain series along t).
    """
    if metadata.axes is not None:
        return dict(metadata.axes.sizes)
    return _sizes_from_rows(rows)


def place_frames(metadata: AcquisitionMetadata, rows: Sequence[FrameRow]) -> FramePlaces:
    """Map each row's frame onto the acquisition's axes (a later frame wins a taken place)."""
    sizes = axis_sizes(metadata, rows)
    names = list(sizes)
    index = np.full(tuple(sizes.values()), -1, dtype=np.int64)
    placed = unplaced = 0
    for row in rows:
        place = _row_axes(row, names) if names else None
        if place is None or any(not 0 <= i < n for i, n in zip(place, sizes.values(), strict=True)):
            unplaced += 1
            continue
        if index[place] >= 0:
            unplaced += 1  # the earlier frame at this place is no longer shown
        else:
            placed += 1
        index[place] = row.index
    return FramePlaces(sizes=sizes, index=index, placed=placed, unplaced=unplaced)


class Hyperstack:
    """A lazy ``(axis..., y, x)`` view of a ``(t, y, x)`` frame array by the frames' places.

    Slicing reads only the frames it selects (napari asks for one plane at a time).

    Parameters
    ----------
    frames
        The frames in acquisition order (an array-like supporting ``frames[i]``).
    places
        Where each frame sits (:func:`place_frames`).
    fill
        The value of a place no frame filled.
    """

    def __init__(self, frames: Any, places: FramePlaces, fill: float) -> None:
        self._frames = frames
        self._index = places.index
        self.dims: tuple[str, ...] = (*places.sizes, "y", "x")
        self.dtype = np.dtype(frames.dtype)
        self.shape: tuple[int, ...] = (*self._index.shape, *(int(n) for n in frames.shape[1:]))
        self._fill = fill

    @property
    def ndim(self) -> int:
        """Number of dimensions (the axes, then y and x)."""
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        lead, plane = self._split(key)
        picks = np.asarray(self._index[lead])
        plane_shape = np.broadcast_to(np.zeros((), self.dtype), self.shape[-2:])[plane].shape
        out = np.full(picks.shape + plane_shape, self._fill, dtype=self.dtype)
        flat = out.reshape(-1, *plane_shape)
        for i, frame in enumerate(picks.ravel()):
            if frame >= 0:
                flat[i] = np.asarray(self._frames[int(frame)])[plane]
        return out

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype)

    def _split(self, key: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        """The key's part for the axes and for (y, x), with ``...`` expanded."""
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis for k in key):
            at = next(i for i, k in enumerate(key) if k is Ellipsis)
            fill = (slice(None),) * (self.ndim - len(key) + 1)
            key = key[:at] + fill + key[at + 1 :]
        key = key + (slice(None),) * (self.ndim - len(key))
        if len(key) != self.ndim:
            raise IndexError(f"too many indices for a {self.ndim}-D view: {key!r}")
        n = self._index.ndim
        return key[:n], key[n:]

    def __repr__(self) -> str:
        sizes = " x ".join(f"{d} {n}" for d, n in zip(self.dims, self.shape, strict=True))
        return f"Hyperstack({sizes}, {self.dtype})"


__all__ = ["VIEW_ORDER", "FramePlaces", "Hyperstack", "axis_sizes", "place_frames"]
