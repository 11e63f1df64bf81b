"""Open an acquisition store for reading: metadata, lazy frame arrays, the per-frame table."""

from __future__ import annotations

import os
from collections import Counter
from functools import cached_property
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from tem_acq.errors import StoreError
from tem_acq.schema import as_model
from tem_acq.store._files import read_event_log
from tem_acq.store.axes import FramePlaces, Hyperstack, place_frames
from tem_acq.store.chunks import FIX, ArrayFiles, CheckedArray, describe_problems, frame_ranges
from tem_acq.store.layout import DENOISED, EVENT_LOG, LEVEL, RAW
from tem_acq.store.metadata import AcquisitionMetadata, FrameRow
from tem_acq.store.root import open_root

if TYPE_CHECKING:
    import zarr


def open_store(path: str | os.PathLike[str]) -> AcquisitionStore:
    """Open an acquisition store written by :class:`~tem_acq.store.AcquisitionWriter`.

    Works on stores still being written and on stores whose writer crashed: everything
    committed reads, and ``complete`` is False. Opening also checks cheaply that every shard
    file the committed frames need is there (``damage``); reading a damaged frame raises
    :class:`~tem_acq.errors.StoreError` naming it (``tem-acq info --check`` verifies every
    frame's checksum).

    Raises
    ------
    StoreError
        If ``path`` does not exist, is not a directory, is not a zarr v3 store, is not a
        tem-acq store, is a tem-acq store of another kind or a newer schema, or is damaged.
    """
    return AcquisitionStore(Path(path))


class AcquisitionStore:
    """A recorded acquisition, read lazily.

    Attributes
    ----------
    path
        The store's directory.
    metadata
        The acquisition's metadata.
    raw
        The raw frames, a (t, y, x) array of committed frames (a
        :class:`~tem_acq.store.chunks.CheckedArray` over the zarr array, read on slicing:
        ``raw[i]``, ``np.asarray(raw)``; its ``array`` is the zarr array itself).
    denoised
        The denoised frames (float32 electrons per pixel; NaN where none), or ``None`` when the
        store has no denoised image. After a crash it may be shorter than ``raw``.
    complete
        True when the writer closed the store and nothing is damaged; False while writing,
        after a crash, after ``tem-acq recover``, whenever ``damage`` is not empty, and when
        the log has unreadable lines or committed frames lack their row.
    closed
        The store has a closing event (its writer closed it, or ``tem-acq recover`` did).
    recovered
        The last closing event was written by ``tem-acq recover``.
    aborted
        True when the acquisition was stopped early (Ctrl-C, ``LiveRecorder.abort``): the
        store was closed, complete up to its last frame.
    model_swaps
        The live model swaps (``LiveRecorder(adapt=...)``), as (index of the first frame the
        new model denoised, the ``model_swap`` event's details) in log order.
    damage
        What the cheap check of opening found (missing or truncated shard files, lengths
        beyond what the log records), one line each; also in ``errors``.
    errors
        Errors recorded during the acquisition, plus any damage found when reading.
    warnings
        Warnings recorded during the acquisition (``warning`` events: a pixel size outside
        the model's trained range), schema 1.3.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata: AcquisitionMetadata = open_root(path, AcquisitionMetadata)
        self.raw = CheckedArray(_open_array(path, RAW), ArrayFiles.open(path, RAW))
        self._denoised: dict[int, float | None] = {}
        self.denoised: CheckedArray | None = None
        if (path / DENOISED / "zarr.json").is_file():
            self.denoised = CheckedArray(
                _open_array(path, DENOISED),
                ArrayFiles.open(path, DENOISED),
                expected=self._denoised.__contains__,
            )
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.closed = self.recovered = self.aborted = False
        self._closed_event: dict[str, Any] = {}
        self._rows: dict[int, dict[str, Any]] = {}
        self.model_swaps: list[tuple[int, dict[str, Any]]] = []
        self._skipped: dict[int, str] = {}
        self._models: dict[int, dict[str, Any]] = {}
        self._quality: dict[int, dict[str, Any]] = {}
        self._denoised_dose: dict[int, float] = {}
        self._log_problems: list[str] = []
        self._log_read = self._read_log()
        self.damage = self._find_damage()
        self.errors.extend(self.damage)
        # An aborted acquisition closed normally: complete up to its last frame (``aborted`` says
        # it stopped early); only ``tem-acq recover`` writes a closing event that says false.
        closed_complete = self.closed and bool(self._closed_event.get("complete", True))
        table_whole = not self._log_problems and len(self._rows) == self.n_frames
        self.complete = closed_complete and table_whole and not self.damage

    # -- public API --------------------------------------------------------------------------

    @property
    def n_frames(self) -> int:
        """Committed raw frames."""
        return int(self.raw.shape[0])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """(height, width) of every frame."""
        return int(self.raw.shape[1]), int(self.raw.shape[2])

    @property
    def denoised_frames(self) -> int:
        """Frames that have a stored denoised version."""
        return len(self._denoised)

    @property
    def skipped(self) -> dict[int, str]:
        """Frames marked skipped (no denoised version), with the reason."""
        return dict(self._skipped)

    @cached_property
    def frames(self) -> list[FrameRow]:
        """The per-frame table, one row per committed frame, in order."""
        rows = []
        for index in range(self.n_frames):
            record = self._rows.get(index)
            if record is None:
                continue  # reported in errors when the log was read
            row = {
                **_lift_axes(record),
                "index": index,
                "denoised": index in self._denoised,
                "denoise_latency_ms": self._denoised.get(index),
                "skipped": self._skipped.get(index),
                "model": self._row_model(index),
                "quality": self._quality.get(index),
            }
            if index in self._denoised_dose:  # a denoised frame's dose is its own mean
                row["corrected_dose_e_per_px"] = self._denoised_dose[index]
            what = f"{self.path}: the record of frame {index} is invalid (the store is damaged)"
            rows.append(as_model(FrameRow, row, what, StoreError))
        return rows

    @property
    def quality(self) -> list[tuple[int, dict[str, Any]]]:
        """The live quality estimates, as (frame index, estimate) in frame order.

        Each estimate is the ``quality`` of that frame's row (see
        :class:`~tem_acq.store.FrameRow`); empty when none was computed.
        """
        return sorted(self._quality.items())

    def _row_model(self, index: int) -> dict[str, Any] | None:
        """The model of a denoised frame: its own (schema 1.2), else the header's one model."""
        if index not in self._denoised:
            return None
        own = self._models.get(index)
        if own is not None:
            return own
        model = self.metadata.model
        return None if model is None else {"name": model.name, "sha256": model.sha256}

    @cached_property
    def places(self) -> FramePlaces:
        """Where each frame sits along the acquisition's axes (see :mod:`tem_acq.store.axes`).

        The header's axes (schema 1.4, e.g. a useq sequence's ``t``, ``p``, ``z``), else the
        integer axes every row states; ``sizes`` is empty for a plain series along t.
        """
        return place_frames(self.metadata, self.frames)

    def hyperstack(self, image: str = RAW) -> Hyperstack:
        """A lazy ``(axis..., y, x)`` view of ``raw`` or ``denoised`` by the frames' axes.

        With no axes (:attr:`places` has no sizes) the view is ``(t, y, x)`` in acquisition
        order. Places no frame filled read as 0 (raw) or NaN (denoised).

        Raises
        ------
        StoreError
            If ``image`` is not ``"raw"`` or ``"denoised"``, or the store has no such image.
        """
        frames = {RAW: self.raw, DENOISED: self.denoised}.get(image)
        if frames is None:
            raise StoreError(f"{self.path} has no {image!r} image (raw or denoised)")
        places = self.places
        if not places.sizes:
            places = FramePlaces({"t": self.n_frames}, np.arange(self.n_frames), self.n_frames, 0)
        return Hyperstack(frames, places, 0 if image == RAW else float("nan"))

    def frame_table(self) -> dict[str, np.ndarray]:
        """The per-frame table as columns (numpy arrays; NaN or None where unknown)."""
        rows = self.frames

        def floats(name: str) -> np.ndarray:
            values = [getattr(row, name) for row in rows]
            return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

        return {
            "index": np.array([row.index for row in rows], dtype=np.int64),
            "timestamp": np.array(
                [row.timestamp.replace(tzinfo=None) for row in rows], dtype="datetime64[us]"
            ),
            "elapsed_ms": floats("elapsed_ms"),
            "exposure_ms": floats("exposure_ms"),
            "dose_e_per_px": floats("dose_e_per_px"),
            "raw_mean_e_per_px": floats("raw_mean_e_per_px"),
            "corrected_dose_e_per_px": floats("corrected_dose_e_per_px"),
            "stage_x_um": floats("stage_x_um"),
            "stage_y_um": floats("stage_y_um"),
            "stage_z_um": floats("stage_z_um"),
            "position_name": np.array([row.position_name for row in rows], dtype=object),
            "denoised": np.array([row.denoised for row in rows], dtype=bool),
            "denoise_latency_ms": floats("denoise_latency_ms"),
            "skipped": np.array([row.skipped for row in rows], dtype=object),
        }

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``tem-acq info --json`` prints)."""
        meta = self.metadata
        latencies = [v for v in self._denoised.values() if v is not None]
        p50 = p95 = None
        if latencies:
            p50, p95 = (float(v) for v in np.percentile(latencies, [50, 95]))
        model = None
        if meta.model is not None:
            model = {"name": meta.model.name, "sha256": meta.model.sha256}
        return {
            "path": str(self.path),
            "kind": meta.kind,
            "schema_version": meta.schema_version,
            "created": meta.created.isoformat(),
            "complete": self.complete,
            "frames": self.n_frames,
            "shape": [int(n) for n in self.raw.shape],
            "dtype": str(self.raw.dtype),
            "exposure_ms": meta.exposure_ms,
            "frame_interval_ms": meta.frame_interval_ms,
            "dose_e_per_px": meta.dose_e_per_px,
            "dose_e_per_A2": meta.dose_e_per_A2,
            "dose_rate_e_per_px_per_s": meta.dose_rate_e_per_px_per_s,
            "pixel_size_A": meta.instrument.pixel_size_A,
            "voltage_kV": meta.instrument.voltage_kV,
            "magnification": meta.instrument.magnification,
            "camera": meta.camera.name,
            "counts_per_electron": meta.camera.counts_per_electron,
            "binning": meta.camera.binning,
            "detector_kind": meta.camera.detector_kind,
            **self._axes_summary(),
            "detector_model": (
                None
                if meta.camera.detector_model is None
                else meta.camera.detector_model.model_dump(mode="json")
            ),
            **self._dose_summary(),
            "simulated": meta.protocol.simulated,
            "denoised_frames": self.denoised_frames,
            "skipped": len(self._skipped),
            "skipped_reasons": dict(Counter(self._skipped.values())),
            "denoise_latency_p50_ms": p50,
            "denoise_latency_p95_ms": p95,
            "model": model,
            "closed": self.closed,
            "recovered": self.recovered,
            "aborted": self.aborted,
            "damage": list(self.damage),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "bytes_on_disk": _disk_usage(self.path),
        }

    def _axes_summary(self) -> dict[str, Any]:
        """The acquisition's axes, how many frames found a place, the stage positions' names."""
        places = self.places
        names = sorted({row.position_name for row in self.frames if row.position_name})
        return {
            "axes": places.sizes or None,
            "axes_source": None if self.metadata.axes is None else self.metadata.axes.source,
            "frames_placed": places.placed,
            "frames_unplaced": places.unplaced,
            "positions": names,
        }

    def _dose_summary(self) -> dict[str, float | None]:
        """Mean, min and max over the rows of the raw mean and the corrected dose (e-/px)."""
        table = self.frame_table()
        summary: dict[str, float | None] = {}
        for name in ("raw_mean_e_per_px", "corrected_dose_e_per_px"):
            values = table[name][np.isfinite(table[name])]
            known = values.size > 0
            summary[name] = float(values.mean()) if known else None
            summary[f"{name}_min"] = float(values.min()) if known else None
            summary[f"{name}_max"] = float(values.max()) if known else None
        return summary

    def __enter__(self) -> AcquisitionStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        return f"AcquisitionStore({str(self.path)!r}, frames={self.n_frames}, {state})"

    # -- internals ---------------------------------------------------------------------------

    def _read_log(self) -> bool:
        """Read the event log into the table; False when it is missing or unreadable."""
        log = self.path / EVENT_LOG
        if not log.is_file():
            self.errors.append(f"{EVENT_LOG} is missing: the per-frame table is lost")
            return False
        try:
            events, problems = read_event_log(log)
        except OSError as exc:
            self.errors.append(f"cannot read {EVENT_LOG}: {exc}")
            return False
        n = self.n_frames
        n_denoised = 0 if self.denoised is None else int(self.denoised.shape[0])
        for event in events:
            kind = event.get("event")
            index = event.get("index")
            if kind == "frame" and isinstance(index, int) and index < n:
                self._rows[index] = event.get("record") or {}
            elif kind == "denoised" and isinstance(index, int) and index < min(n, n_denoised):
                self._denoised[index] = event.get("latency_ms")
                if isinstance(event.get("model"), dict):
                    self._models[index] = event["model"]
                dose = event.get("corrected_dose_e_per_px")
                if isinstance(dose, int | float) and not isinstance(dose, bool):
                    self._denoised_dose[index] = float(dose)
            elif kind == "quality" and isinstance(index, int) and index < n:
                estimate = event.get("estimate")
                if isinstance(estimate, dict):
                    self._quality[index] = estimate
            elif kind == "model_swap" and isinstance(index, int) and index < n:
                self.model_swaps.append((index, {k: v for k, v in event.items() if k != "event"}))
            elif kind == "skipped" and isinstance(index, int) and index < n:
                self._skipped[index] = str(event.get("reason", ""))
            elif kind == "warning" and str(event.get("message", "")) not in self.warnings:
                self.warnings.append(str(event.get("message", "")))
            elif kind == "error" and str(event.get("message", "")) not in self.errors:
                # a commit retried after a failed write may log the same error again
                self.errors.append(str(event.get("message", "")))
            elif kind == "closed":
                self.closed, self._closed_event = True, event
                self.recovered = bool(event.get("recovered"))
                self.aborted = bool(event.get("aborted"))
        self.errors.extend(problems)
        self._log_problems = problems
        return True

    def _find_damage(self) -> list[str]:
        """The cheap check of opening: files and lengths, not checksums (see the class)."""
        fix = FIX.format(store=self.path)
        n = self.n_frames
        damage = describe_problems(RAW, self.raw.files.missing(range(n)))
        if self.denoised is not None:
            n_den = int(self.denoised.shape[0])
            if n_den > n:
                damage.append(f"{DENOISED}/{LEVEL}/zarr.json counts {n_den} frames, raw {n}")
            wanted = [i for i in self._denoised if i < n_den]
            damage += describe_problems(DENOISED, self.denoised.files.missing(wanted))
        if self._log_read:
            recorded = max(self._rows, default=-1) + 1
            if recorded < n:
                damage.append(
                    f"{RAW}/{LEVEL}/zarr.json counts {n} frames but {EVENT_LOG} records "
                    f"{recorded}: frames {recorded}-{n - 1} were never recorded"
                )
            unrecorded = [i for i in range(recorded) if i not in self._rows]
            if unrecorded:
                self.errors.append(
                    f"committed frames {frame_ranges(unrecorded)} have no row in {EVENT_LOG}"
                )
        closed_frames = self._closed_event.get("frames")
        if isinstance(closed_frames, int) and closed_frames != n:
            damage.append(f"the store was closed with {closed_frames} frames, zarr.json counts {n}")
        return [f"{line}: the store is damaged; {fix}" for line in damage]


def _lift_axes(record: dict[str, Any]) -> dict[str, Any]:
    """A row as schema 1.4 has it: ``extra["axes"]`` of older rows becomes ``axes``."""
    extra = record.get("extra")
    if "axes" in record or not isinstance(extra, dict) or "axes" not in extra:
        return record
    rest = {k: v for k, v in extra.items() if k != "axes"}
    return {**record, "axes": extra["axes"], "extra": rest}


def _open_array(path: Path, image: str) -> zarr.Array:
    """The zarr array of ``image`` (level 0), checked to be (t, y, x)."""
    import zarr

    where = path / image / LEVEL
    try:
        array = zarr.open_array(store=str(where), mode="r")
    except Exception as exc:  # zarr raises several types for missing or broken metadata
        raise StoreError(
            f"{path} has no readable {image}/{LEVEL} array ({type(exc).__name__}: {exc}): the "
            f"store is damaged and tem-acq cannot rebuild it: restore {image}/{LEVEL}/zarr.json "
            f"from a copy of the store (its frames are the files beside it)"
        ) from None
    if array.ndim != 3:
        raise StoreError(f"{where} has {array.ndim} dimensions, expected (t, y, x): damaged")
    return array


def _disk_usage(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(directory, name)).st_size
            except OSError:
                pass
    return total
