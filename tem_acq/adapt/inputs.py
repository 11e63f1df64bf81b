"""What ``tem-acq adapt`` reads: consecutive raw frames of a static field, in electrons.

An input is an acquisition store (:func:`tem_acq.store.open_store`) or a stack of frames in
a TIFF, NPY or MRC file (:func:`tem_acq.denoise.io.read_frames`). Counts become electrons
with ``--counts-per-electron`` when given, else with what the store or file says; an input
that says nothing, holds one frame, or whose frames differ in size from the others' is
refused in one line before any work.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np

from tem_acq.denoise.card import Detector
from tem_acq.errors import ConfigError, TemAcqError
from tem_acq.quality import saturation_electrons

#: Stage steps (micrometres) below this between two frames are read as "the stage did not move".
STAGE_TOLERANCE_UM = 1e-3
#: Detector kinds a model card knows (its ``Detector`` type, the one list).
DETECTOR_KINDS: tuple[str, ...] = get_args(Detector)


@dataclass
class FrameSeries:
    """The raw frames of one input, in recording order, and what is known about them.

    Attributes
    ----------
    source
        The input's path, as given.
    counts
        ``(n, y, x)`` raw frames as recorded (never changed).
    counts_per_electron
        The camera's conversion factor used for these frames.
    sha256
        ``sha256:<hex>`` over the frames' dtype, shape and bytes (the card's provenance).
    moved
        ``(n,)`` True where the stage moved between the previous frame and this one (from
        the store's per-frame table; never for frame files).
    detector
        ``"counting"`` or ``"integrating"`` when the input says, else ``None``.
    pixel_size_A
        Pixel size at the specimen (Å), when known.
    """

    source: str
    counts: np.ndarray
    counts_per_electron: float
    sha256: str
    moved: np.ndarray
    detector: str | None = None
    pixel_size_A: float | None = None

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    @property
    def electrons(self) -> np.ndarray:
        """``(n, y, x)`` float32 electrons per pixel."""
        from tem_acq.denoise.normalization import counts_to_electrons

        return np.asarray(
            counts_to_electrons(self.counts.astype(np.float32), self.counts_per_electron),
            dtype=np.float32,
        )

    @property
    def saturation_e(self) -> float | None:
        """The camera's saturation level in electrons (integer frames), else ``None``."""
        return saturation_electrons(self.counts.dtype, self.counts_per_electron)


def frames_sha256(frames: np.ndarray) -> str:
    """``sha256:<hex>`` over an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(frames)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def read_inputs(
    paths: Sequence[str | os.PathLike[str]], counts_per_electron: float | None = None
) -> list[FrameSeries]:
    """Read every input, checking them all before any work.

    Parameters
    ----------
    paths
        Acquisition stores (folders) and frame files (TIFF, NPY, MRC).
    counts_per_electron
        The camera's conversion factor; overrides what the inputs say.

    Returns
    -------
    One series per input, in the order given.

    Raises
    ------
    ConfigError
        No inputs, a bad ``counts_per_electron``, an input that gives no conversion factor,
        holds fewer than two frames, has non-finite values, or frames of another size than
        the first input's.
    TemAcqError
        An input that cannot be read (its reader's one-line error).
    """
    if not paths:
        raise ConfigError("give at least one input: an acquisition store or a stack of frames")
    if counts_per_electron is not None and not (
        np.isfinite(counts_per_electron) and counts_per_electron > 0
    ):
        raise ConfigError(
            f"--counts-per-electron must be a finite number > 0, got {counts_per_electron}"
        )
    series = [_read_one(Path(p), counts_per_electron) for p in paths]
    shape = series[0].counts.shape[1:]
    for s in series[1:]:
        if s.counts.shape[1:] != shape:
            raise ConfigError(
                f"{s.source} has {s.counts.shape[1]}x{s.counts.shape[2]} px frames but "
                f"{series[0].source} has {shape[0]}x{shape[1]}: adapt on inputs of one frame "
                "size (one camera setting) at a time"
            )
    return series


def _read_one(path: Path, flag_cpe: float | None) -> FrameSeries:
    """One input as a checked :class:`FrameSeries`."""
    if path.is_dir():
        series = _read_store(path, flag_cpe)
    else:
        series = _read_file(path, flag_cpe)
    if len(series) < 2:
        raise ConfigError(
            f"{path} holds {len(series)} frame(s): adaptation needs consecutive frames of a "
            "static field (at least 2 per input, and 4 in all); record a series of frames"
        )
    if series.counts.dtype.kind == "f" and not np.isfinite(series.counts).all():
        raise ConfigError(f"{path} has NaN or infinite values; give raw camera frames")
    return series


def _read_store(path: Path, flag_cpe: float | None) -> FrameSeries:
    from tem_acq.store import open_store

    store = open_store(path)
    counts = np.asarray(store.raw[:])
    table = store.frame_table()
    moved = np.zeros(len(counts), dtype=bool)
    if len(table["index"]) == len(counts):
        for axis in ("stage_x_um", "stage_y_um"):
            step = np.abs(np.diff(table[axis], prepend=table[axis][:1]))
            moved |= np.nan_to_num(step, nan=0.0) > STAGE_TOLERANCE_UM
    camera = store.metadata.camera
    kind = camera.detector_kind
    return FrameSeries(
        source=str(path),
        counts=counts,
        counts_per_electron=float(flag_cpe or camera.counts_per_electron),
        sha256=frames_sha256(counts),
        moved=moved,
        detector=kind if kind in DETECTOR_KINDS else None,
        pixel_size_A=float(store.metadata.instrument.pixel_size_A),
    )


def _read_file(path: Path, flag_cpe: float | None) -> FrameSeries:
    from tem_acq.denoise.io import read_frames

    frame_file = read_frames(path)
    counts = np.asarray(frame_file.data)
    if counts.ndim == 2:
        counts = counts[None]
    if counts.ndim != 3 or counts.dtype.kind not in "iuf":
        raise TemAcqError(
            f"{path} holds {counts.dtype} data of shape {counts.shape}: give a stack of 2-D "
            "camera frames"
        )
    cpe = flag_cpe or frame_file.counts_per_electron
    if not cpe:
        raise ConfigError(
            f"{path} does not say its camera's counts per electron: pass "
            "--counts-per-electron G (e.g. 44 for a Gatan OneView, 1 for a counting camera)"
        )
    return FrameSeries(
        source=str(path),
        counts=counts,
        counts_per_electron=float(cpe),
        sha256=frames_sha256(counts),
        moved=np.zeros(len(counts), dtype=bool),
        pixel_size_A=frame_file.pixel_size_A,
    )
