"""Reading pairs stores (:func:`tem_acq.store.open_pairs`) into :class:`PairArrays`.

The store kind itself (writer, reader, the pair table's rows) is :mod:`tem_acq.store.pairs`;
this module turns what it holds into the arrays training and evaluation use, leaving out the
pairs the collection flagged unusable (:data:`~tem_acq.pairs.assembly.SKIPPED_FLAGS`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq.errors import TemAcqError
from tem_acq.pairs.arrays import PairArrays, concatenate
from tem_acq.pairs.assembly import SKIPPED_FLAGS


def from_pairs_store(
    paths: Sequence[str | os.PathLike[str]], *, skip_flagged: bool = True
) -> PairArrays:
    """Read one or more pairs stores (:func:`tem_acq.store.open_pairs`) into :class:`PairArrays`.

    Parameters
    ----------
    paths
        Pairs store folders (``*.ome.zarr``).
    skip_flagged
        Leave out pairs flagged ``"drift"`` or ``"saturated"`` by the collection run.

    Returns
    -------
    The pairs of all stores; field ids are made unique per store. Doses are the measured ones
    of the table (frame means), so the target keeps the input's electron total.

    Raises
    ------
    TemAcqError
        A missing path, a store that is not a pairs store, a store without usable pairs, or
        stores of different frame sizes.
    """
    if not paths:
        raise TemAcqError("no pairs stores given; pass at least one --pairs STORE")
    from tem_acq.store import open_pairs

    parts = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise TemAcqError(f"pairs store {p} does not exist; pass the folder of a pairs store")
        store = open_pairs(p)
        parts.append(_pairs_from_store(store, str(p), skip_flagged=skip_flagged))
    return parts[0] if len(parts) == 1 else concatenate(parts)


def _pairs_from_store(store: Any, source: str, *, skip_flagged: bool) -> PairArrays:
    """The pairs of one open pairs store (``source`` names it in messages and provenance)."""
    meta = store.metadata
    rows = list(store.pairs)
    if not rows:
        raise TemAcqError(f"pairs store {source} holds no pairs; record some first")
    keep = [r for r in rows if not (skip_flagged and r.flag in SKIPPED_FLAGS)]
    if not keep:
        raise TemAcqError(f"every pair in {source} is flagged drift or saturated; nothing to use")
    index = np.array([int(r.index) for r in keep])
    low = _read_rows(store.low, index)
    high = _read_rows(store.high, index).astype(np.float32, copy=False)
    truth = None if store.truth is None else _read_rows(store.truth, index).astype(np.float32)
    settings: dict[str, Any] = dict(meta.protocol.settings or {})
    detector = str(meta.camera.detector_kind or settings.get("detector", ""))
    specimen = str(settings.get("specimen", "") or "")
    shift = np.array(
        [[0.0, 0.0] if r.flag == "low_contrast" else [r.shift_dy_px, r.shift_dx_px] for r in keep],
        dtype=float,
    )
    n = len(keep)
    return PairArrays(
        low=low,
        high=high,
        counts_per_electron=np.array([float(r.counts_per_electron) for r in keep]),
        low_dose=np.array([float(r.low_dose_e_per_px) for r in keep]),
        high_dose=np.array([float(r.high_dose_e_per_px) for r in keep]),
        field=np.array([int(r.field) for r in keep]),
        shift=shift,
        truth=truth,
        detector=[detector] * n if detector in ("counting", "integrating") else [],
        specimen=[specimen] * n if specimen else [],
        pixel_size_A=np.full(n, float(meta.instrument.pixel_size_A)),
        source=f"pairs store {source}",
    )


def _read_rows(arr: Any, index: np.ndarray) -> np.ndarray:
    """Frames ``index`` of a (n, y, x) array-like (NumPy, zarr...), read whole then selected."""
    return np.asarray(arr[:])[index]
