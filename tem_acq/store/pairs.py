"""Pairs stores: short and long exposures of the same fields, for training and evaluation.

Layout (OME-Zarr 0.5, zarr v3)::

    pairs.ome.zarr/
    ├── zarr.json              bioformats2raw.layout 3 collection; attributes["tem_acq"]:
    │                          PairsMetadata (schema_version, kind="pairs", ...)
    ├── OME/zarr.json          "series": ["low", "high"(, "truth")]; OME/METADATA.ome.xml
    ├── low/0                  (pair, y, x) uint16: the short exposure of each pair (raw counts)
    ├── high/0                 (pair, y, x) float32: the field's long exposure in counts, summed
    │                          over bins to the short frame's grid (never interpolated)
    ├── truth/0                (pair, y, x) float32, simulated stores only: the noise-free
    │                          expected electrons per pixel of the short frame
    └── tem_acq_log.jsonl      per-pair table (one row per pair) and events

The leading axis is a custom ``pair`` axis (NGFF allows one custom axis); y and x are in
angstrom. Row ``i`` of the table describes pair ``i`` of every array; a field's K pairs share
its long exposure (repeated in ``high`` so that ``low[i]``/``high[i]`` always pair up).

Crash safety and resuming: a field is written whole: its frames first (fsynced), then its rows
in one fsynced append. Rows are the commit: a reader counts only pairs with a row, and a writer
resuming an interrupted collection truncates the arrays to them and continues at the first
field not in the table. A crash therefore loses at most the field being written.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import (
    Field,
    JsonValue,
    model_validator,
)

from tem_acq.errors import StoreError
from tem_acq.outputs import claim_output
from tem_acq.schema import as_model
from tem_acq.store._files import (
    EventLog,
    fsync_dir,
    read_event_log,
    write_atomic,
    write_json_atomic,
)
from tem_acq.store.chunks import FIX, ArrayFiles, CheckedArray, describe_problems, frame_ranges
from tem_acq.store.layout import (
    EVENT_LOG,
    LEVEL,
    OME_XML,
    chunk_compressors,
    image_group_doc,
    ome_xml,
    root_group_doc,
    series_group_doc,
)
from tem_acq.store.metadata import StoreHeader, _Model
from tem_acq.store.root import open_root

if TYPE_CHECKING:
    import zarr

LOW, HIGH, TRUTH = "low", "high", "truth"
_DTYPES: dict[str, np.dtype[Any]] = {
    LOW: np.dtype("uint16"),
    HIGH: np.dtype("float32"),
    TRUTH: np.dtype("float32"),
}


class PairsMetadata(StoreHeader):
    """Metadata of a pairs store (``kind="pairs"``): the header plus these.

    Attributes
    ----------
    short_exposure_ms, long_exposure_ms
        Exposure of the short frames and of the long exposure (in ``"sum"`` mode: the total).
    long_mode
        ``"exposure"`` (one long exposure) or ``"sum"`` (short frames summed).
    n_short
        Short exposures (pairs) per field.
    long_order
        Whether the long exposure was taken ``"after"`` or ``"before"`` the shorts.
    short_dose_e_per_px, long_dose_e_per_px, short_dose_e_per_A2, long_dose_e_per_A2
        Nominal doses (derived from the header's dose rate, which is per short-frame pixel,
        when given).
    planned_fields
        How many fields the collection was planned for (``complete`` means all of them).
    """

    kind: Literal["pairs"] = "pairs"
    short_exposure_ms: float = Field(gt=0)
    long_exposure_ms: float = Field(gt=0)
    long_mode: Literal["exposure", "sum"] = "exposure"
    n_short: int = Field(ge=1)
    long_order: Literal["after", "before"] = "after"
    short_dose_e_per_px: float | None = Field(default=None, gt=0)
    long_dose_e_per_px: float | None = Field(default=None, gt=0)
    short_dose_e_per_A2: float | None = Field(default=None, gt=0)
    long_dose_e_per_A2: float | None = Field(default=None, gt=0)
    planned_fields: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _derive_doses(self) -> PairsMetadata:
        rate = self.dose_rate_e_per_px_per_s
        if rate is not None:
            self.short_dose_e_per_px = (
                self.short_dose_e_per_px or rate * self.short_exposure_ms / 1e3
            )
            self.long_dose_e_per_px = self.long_dose_e_per_px or rate * self.long_exposure_ms / 1e3
        area = self.instrument.pixel_size_A**2
        if self.short_dose_e_per_px is not None:
            self.short_dose_e_per_A2 = self.short_dose_e_per_px / area
        if self.long_dose_e_per_px is not None:
            self.long_dose_e_per_A2 = self.long_dose_e_per_px / area
        return self

    @property
    def frame_interval_s(self) -> float:
        """OME-XML wants a time increment; pairs have none, so the short exposure stands in."""
        return self.short_exposure_ms / 1000.0

    def comparable(self) -> dict[str, Any]:
        """The fields that must agree for a collection to resume into an existing store."""
        return self.model_dump(
            mode="json", exclude={"created", "software", "description", "schema_version"}
        )


class PairRecord(_Model):
    """One row of the per-pair table, as the collector knows it when writing a field.

    Attributes
    ----------
    field, pair_in_field
        Which field and which of its short frames.
    stage_x_um, stage_y_um
        Stage position of the field.
    low_exposure_ms, high_exposure_ms
        Exposures of the short frame and of the long exposure.
    low_dose_e_per_px, high_dose_e_per_px
        Measured doses (frame mean over counts per electron).
    counts_per_electron
        The camera's conversion factor.
    low_timestamp, high_timestamp
        When the short frame and the long exposure arrived (ISO 8601, UTC).
    order
        Whether the long exposure came ``"after"`` or ``"before"`` the shorts.
    shift_dy_px, shift_dx_px
        Registration of high to low: ``high(y, x) ≈ low(y - dy, x - dx)``.
    shift_significance
        Correlation peak height in background standard deviations
        (:class:`tem_acq.registration.Registration`).
    flag
        ``None`` for a good pair; ``"drift"`` when the shift exceeded the limit;
        ``"saturated"`` when a frame hit the camera's maximum; ``"low_contrast"`` when the
        field had too little contrast to register (treat its shift as zero).
    """

    field: int = Field(ge=0)
    pair_in_field: int = Field(ge=0)
    stage_x_um: float | None = None
    stage_y_um: float | None = None
    low_exposure_ms: float = Field(gt=0)
    high_exposure_ms: float = Field(gt=0)
    low_dose_e_per_px: float = Field(ge=0)
    high_dose_e_per_px: float = Field(ge=0)
    low_dose_e_per_A2: float | None = Field(default=None, ge=0)
    high_dose_e_per_A2: float | None = Field(default=None, ge=0)
    counts_per_electron: float = Field(gt=0)
    low_timestamp: str | None = None
    high_timestamp: str | None = None
    order: Literal["after", "before"] = "after"
    shift_dy_px: float
    shift_dx_px: float
    shift_significance: float | None = None
    flag: Literal["drift", "saturated", "low_contrast"] | None = None
    extra: dict[str, JsonValue] = Field(default_factory=dict)


class PairRow(PairRecord):
    """A stored row: the record plus its pair index."""

    index: int = Field(ge=0)


#: Every chunk has a file, even an all-zero frame (zarr skips those by default), so that a
#: missing chunk file is damage, never a frame of zeros.
_ARRAY_CONFIG: dict[str, Any] = {"write_empty_chunks": True}


def _create_array(path: Path, name: str, frame_shape: tuple[int, int]) -> zarr.Array:
    import zarr

    return zarr.create_array(
        store=str(path / name / LEVEL),
        shape=(0, *frame_shape),
        chunks=(1, *frame_shape),
        dtype=_DTYPES[name],
        compressors=chunk_compressors("zstd"),
        fill_value=0,
        dimension_names=("pair", "y", "x"),
        zarr_format=3,
        config={"write_empty_chunks": True},  # as _ARRAY_CONFIG
    )


def _open_array(path: Path, name: str, mode: str = "r+") -> zarr.Array:
    import zarr

    try:
        return zarr.open_array(store=str(path / name / LEVEL), mode=mode, config=_ARRAY_CONFIG)
    except Exception as exc:  # zarr raises several types for missing or broken metadata
        raise StoreError(
            f"{path} has no readable {name}/{LEVEL} array ({type(exc).__name__}: {exc}): the "
            f"store is damaged and tem-acq cannot rebuild it: restore {name}/{LEVEL}/zarr.json "
            "from a copy of the store (its frames are the files beside it)"
        ) from None


@dataclass
class PairsLog:
    """What a pairs store's event log says.

    Attributes
    ----------
    rows
        The pair rows, deduplicated by index, in order (a damaged line leaves a gap).
    extent
        One past the last row's index: the pairs committed.
    closed, complete, recovered, aborted
        Whether the last event closed the store, whether that close was complete, whether
        ``tem-acq recover`` wrote it, and whether the collection was stopped early (Ctrl-C).
    errors
        Recorded errors and unreadable lines.
    problems
        The unreadable lines alone.
    """

    rows: list[PairRow] = field(default_factory=list)
    extent: int = 0
    closed: bool = False
    complete: bool = False
    recovered: bool = False
    aborted: bool = False
    errors: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def unrecorded(self) -> list[int]:
        """Committed pairs without a row (their log line is damaged)."""
        present = {row.index for row in self.rows}
        return [i for i in range(self.extent) if i not in present]


def read_pairs_log(path: Path) -> PairsLog:
    """Read the event log of the pairs store at ``path``.

    The log is read by the one reader of event logs (:func:`~tem_acq.store._files.read_event_log`),
    with its rule for a torn last line.

    Raises
    ------
    StoreError
        If a pair row does not validate (the store is damaged).
    """
    log = path / EVENT_LOG
    if not log.is_file():
        return PairsLog(errors=[f"{EVENT_LOG} is missing"])
    events, problems = read_event_log(log)
    rows: dict[int, PairRow] = {}
    result = PairsLog()
    for event in events:
        kind = event.get("event")
        if kind == "pair":
            record = event.get("record")
            data = {**(record if isinstance(record, dict) else {}), "index": event.get("index")}
            what = f"invalid pair row in {path / EVENT_LOG} (the store is damaged)"
            row = as_model(PairRow, data, what, StoreError)
            rows[row.index] = row
        elif kind == "closed":
            result.closed, result.complete = True, bool(event.get("complete"))
            result.recovered = bool(event.get("recovered"))
            result.aborted = bool(event.get("aborted"))
        elif kind == "resumed":
            result.closed = result.complete = result.recovered = result.aborted = False
        elif kind == "error":
            result.errors.append(str(event.get("message")))
    result.rows = [rows[i] for i in sorted(rows)]
    result.extent = max(rows, default=-1) + 1
    result.errors += problems
    result.problems = problems
    return result


class PairsWriter:
    """Write a pairs store a field at a time (see the module docstring for the guarantees).

    Parameters
    ----------
    path
        The store's directory.
    metadata
        The collection's metadata.
    frame_shape
        (height, width) of the short frames (``high`` is on the same grid).
    truth
        Also store the noise-free ``truth`` image (simulated collections).
    overwrite
        Replace an existing store.
    resume
        Continue an existing store made with the same settings (its fields are kept);
        creates the store when there is none.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        metadata: PairsMetadata,
        frame_shape: tuple[int, int],
        *,
        truth: bool = False,
        overwrite: bool = False,
        resume: bool = False,
    ) -> None:
        self.path = Path(path)
        self.metadata = metadata
        self.frame_shape = (int(frame_shape[0]), int(frame_shape[1]))
        self._names = [LOW, HIGH, *([TRUTH] if truth else [])]
        if self.path.exists() and resume:
            self._arrays, rows = self._reopen()
        else:
            if claim_output(
                self.path,
                overwrite=overwrite,
                kind="pairs store",
                parent_must_exist=True,
                alternatives="--resume (resume=True) to continue it",
            ):
                shutil.rmtree(self.path)
            self._arrays = self._create()
            rows = []
        self._pairs = rows[-1].index + 1 if rows else 0
        self.completed_fields: set[int] = {r.field for r in rows}
        self._log = EventLog(self.path / EVENT_LOG)
        if resume and rows:
            self._log.append([json.dumps({"event": "resumed", "time": _utc(), "pairs": len(rows)})])
        self._closed = False

    def _create(self) -> dict[str, zarr.Array]:
        self.path.mkdir()
        write_json_atomic(self.path / "zarr.json", root_group_doc(self.metadata))
        (self.path / "OME").mkdir()
        write_json_atomic(self.path / "OME" / "zarr.json", series_group_doc(self._names))
        px = self.metadata.instrument.pixel_size_A
        arrays = {}
        for name in self._names:
            (self.path / name).mkdir()
            write_json_atomic(
                self.path / name / "zarr.json",
                image_group_doc(name, (1.0, px, px), leading="pair"),
            )
            arrays[name] = _create_array(self.path, name, self.frame_shape)
        self._write_xml(0)
        fsync_dir(self.path)
        return arrays

    def _reopen(self) -> tuple[dict[str, zarr.Array], list[PairRow]]:
        existing = open_root(self.path, PairsMetadata)
        if existing.comparable() != self.metadata.comparable():
            differ = sorted(
                k
                for k, v in self.metadata.comparable().items()
                if existing.comparable().get(k) != v
            )
            raise StoreError(
                f"cannot resume {self.path}: it was collected with other settings "
                f"({', '.join(differ)} differ); use the same settings or a new store"
            )
        self.metadata = existing
        arrays = {name: _open_array(self.path, name) for name in self._names}
        if arrays[LOW].shape[1:] != self.frame_shape:
            raise StoreError(
                f"cannot resume {self.path}: its frames are {arrays[LOW].shape[1:]}, "
                f"not {self.frame_shape}"
            )
        log = read_pairs_log(self.path)
        for array in arrays.values():
            # frames written after the last committed row belong to an unfinished field
            if array.shape[0] != log.extent:
                array.resize((log.extent, *self.frame_shape))
        return arrays, log.rows

    @property
    def pairs(self) -> int:
        """Pairs committed so far."""
        return self._pairs

    def append_field(
        self,
        field: int,
        *,
        low: np.ndarray,
        high: np.ndarray,
        records: Sequence[PairRecord],
        truth: np.ndarray | None = None,
    ) -> None:
        """Write the K pairs of one field: frames first (fsynced), then their rows (the commit).

        Raises
        ------
        StoreError
            If the shapes disagree, the field is already in the store, truth is missing (or
            given to a store without it), or writing fails (the store keeps its earlier fields).
        """
        if self._closed:
            raise StoreError(f"the writer of {self.path} is closed")
        if field in self.completed_fields:
            raise StoreError(f"field {field} is already in {self.path}")
        k = len(records)
        stacks = {LOW: low, HIGH: high}
        if TRUTH in self._names:
            if truth is None:
                raise StoreError("this pairs store keeps ground truth: pass truth for each pair")
            stacks[TRUTH] = truth
        elif truth is not None:
            raise StoreError("this pairs store was created without truth=True")
        for name, stack in stacks.items():
            if stack.shape != (k, *self.frame_shape):
                raise StoreError(
                    f"{name} must be ({k}, {self.frame_shape[0]}, {self.frame_shape[1]}) for "
                    f"{k} records, got {stack.shape}"
                )
        start, stop = self._pairs, self._pairs + k
        area = self.metadata.instrument.pixel_size_A**2
        lines = []
        for i, record in enumerate(records):
            if record.field != field:
                raise StoreError(f"record {i} is for field {record.field}, not {field}")
            row = record.model_copy(
                update={
                    "low_dose_e_per_A2": record.low_dose_e_per_px / area,
                    "high_dose_e_per_A2": record.high_dose_e_per_px / area,
                }
            )
            lines.append(f'{{"event":"pair","index":{start + i},"record":{row.model_dump_json()}}}')
        try:
            for name, stack in stacks.items():
                array = self._arrays[name]
                array.resize((stop, *self.frame_shape))
                array[start:stop] = stack.astype(_DTYPES[name], copy=False)
                _fsync_chunks(self.path / name / LEVEL, start, stop)
            self._log.append(lines)
        except OSError as exc:
            raise StoreError(
                f"could not write field {field} to {self.path} ({exc.strerror or exc}); the "
                f"{start} pairs before it are safe; resume the collection once fixed"
            ) from exc
        self._pairs = stop
        self.completed_fields.add(field)

    def close(self, *, complete: bool = True, aborted: bool = False) -> None:
        """Finish the store; ``complete=False`` leaves it resumable and reported incomplete.

        ``aborted=True`` says in the closing event that the collection was stopped early.
        """
        if self._closed:
            return
        planned = self.metadata.planned_fields
        done = complete and (planned is None or len(self.completed_fields) >= planned)
        self._write_xml(self._pairs)
        self._log.append(
            [
                json.dumps(
                    {
                        "event": "closed",
                        "time": _utc(),
                        "pairs": self._pairs,
                        "complete": done,
                        **({"aborted": True} if aborted else {}),
                    }
                )
            ]
        )
        self._log.close()
        self._closed = True

    def _write_xml(self, pairs: int) -> None:
        images = [(name, _DTYPES[name]) for name in self._names]
        xml = ome_xml(self.metadata, images, self.frame_shape, pairs)
        write_atomic(self.path / "OME" / OME_XML, [xml])


class PairsStore:
    """A pairs store, read lazily.

    Attributes
    ----------
    metadata
        The collection's :class:`PairsMetadata`.
    low, high
        (pair, y, x) arrays limited to the committed pairs
        (:class:`~tem_acq.store.chunks.CheckedArray`: a damaged or missing frame raises a
        :class:`~tem_acq.errors.StoreError` naming it).
    truth
        (pair, y, x) noise-free expected electrons of the short frames, or ``None``.
    pairs
        The per-pair table (:class:`PairRow`), one row per pair (a row whose log line is
        damaged is missing; each row has its ``index``).
    complete
        True when the collection finished every planned field and nothing is damaged (no
        ``damage``, no unreadable log line, no pair without its row).
    closed, recovered
        The store has a closing event; it was written by ``tem-acq recover``.
    aborted
        True when the collection was stopped early (Ctrl-C) and not resumed since.
    damage
        What the cheap check of opening found (missing chunk files, arrays shorter than the
        table), one line each; also in ``errors``.
    errors
        Errors recorded during collection or found while reading.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.metadata = open_root(path, PairsMetadata)
        log = read_pairs_log(path)
        self.closed, self.recovered, self.errors = log.closed, log.recovered, log.errors
        self.aborted = log.aborted
        self.damage: list[str] = []
        n = log.extent
        arrays: dict[str, tuple[zarr.Array, ArrayFiles]] = {}
        for name in (LOW, HIGH, TRUTH):
            if not (path / name / LEVEL / "zarr.json").is_file():
                continue
            array = _open_array(path, name, mode="r")
            if array.shape[0] < n:
                self.damage.append(f"{name} holds {array.shape[0]} frames for {n} rows")
                n = array.shape[0]
            elif array.shape[0] > n and log.closed:  # closed: no field can be unfinished
                self.damage.append(f"{name} counts {array.shape[0]} frames for {n} rows")
            arrays[name] = (array, ArrayFiles.open(path, name))
        if LOW not in arrays or HIGH not in arrays:
            raise StoreError(f"{path} lacks its low or high array: the store is damaged")
        self.pairs = [row for row in log.rows if row.index < n]
        checked = {name: self._checked(name, *pair, n) for name, pair in arrays.items()}
        self.low, self.high, self.truth = checked[LOW], checked[HIGH], checked.get(TRUTH)
        if log.unrecorded:
            self.errors.append(f"pairs {frame_ranges(log.unrecorded)} have no row in {EVENT_LOG}")
        self.damage = [
            f"{line}: the store is damaged; {FIX.format(store=path)}" for line in self.damage
        ]
        self.errors += self.damage
        self.complete = log.complete and not self.damage and not log.problems
        self.complete = self.complete and not log.unrecorded

    def _checked(self, name: str, array: zarr.Array, files: ArrayFiles, n: int) -> CheckedArray:
        """``array`` limited to ``n`` pairs, its missing files added to ``damage``."""
        expected = None if files.checksummed else self._has_signal(name)
        wanted = [i for i in range(n) if expected is None or expected(i)]
        self.damage += describe_problems(name, files.missing(wanted))
        return CheckedArray(array, files, length=n, expected=expected)

    def _has_signal(self, name: str) -> Callable[[int], bool]:
        """For stores written before every chunk had a file: pairs whose frame is not all zero.

        zarr skipped writing an all-zero chunk then, so only a frame with a measured dose must
        have one.
        """
        dose = {
            row.index: row.high_dose_e_per_px if name == HIGH else row.low_dose_e_per_px
            for row in self.pairs
        }
        return lambda i: dose.get(i, 1.0) > 0

    @property
    def fields(self) -> list[int]:
        """Fields present, in collection order."""
        return list(dict.fromkeys(r.field for r in self.pairs))

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary (``tem-acq info``)."""
        md = self.metadata
        n = len(self.pairs)
        shifts = [float(np.hypot(r.shift_dy_px, r.shift_dx_px)) for r in self.pairs]
        flags: dict[str, int] = {}
        for r in self.pairs:
            if r.flag:
                flags[r.flag] = flags.get(r.flag, 0) + 1
        return {
            "path": str(self.path),
            "kind": "pairs",
            "schema_version": md.schema_version,
            "created": md.created.isoformat(),
            "complete": self.complete,
            "pairs": n,
            "frames": n,
            "fields": len(self.fields),
            "planned_fields": md.planned_fields,
            "shape": [n, *self.low.shape[1:]],
            "dtype": str(self.low.dtype),
            "high_dtype": str(self.high.dtype),
            "truth": self.truth is not None,
            "exposure_ms": md.short_exposure_ms,
            "long_exposure_ms": md.long_exposure_ms,
            "long_mode": md.long_mode,
            "n_short": md.n_short,
            "dose_e_per_px": md.short_dose_e_per_px,
            "long_dose_e_per_px": md.long_dose_e_per_px,
            "measured_dose_e_per_px": float(np.mean([r.low_dose_e_per_px for r in self.pairs]))
            if n
            else None,
            "measured_long_dose_e_per_px": float(
                np.mean([r.high_dose_e_per_px for r in self.pairs])
            )
            if n
            else None,
            "pixel_size_A": md.instrument.pixel_size_A,
            "counts_per_electron": md.camera.counts_per_electron,
            "detector": md.camera.detector_kind,
            "camera": md.camera.name,
            "detector_kind": md.camera.detector_kind,
            "detector_model": (
                None
                if md.camera.detector_model is None
                else md.camera.detector_model.model_dump(mode="json")
            ),
            "binning": md.camera.binning,
            "shift_px_median": float(np.median(shifts)) if shifts else None,
            "shift_px_max": float(np.max(shifts)) if shifts else None,
            "flags": flags,
            "simulated": md.protocol.simulated,
            "denoised_frames": 0,
            "skipped": 0,
            "model": None,
            "closed": self.closed,
            "recovered": self.recovered,
            "aborted": self.aborted,
            "damage": list(self.damage),
            "errors": list(self.errors),
        }


def open_pairs(path: str | os.PathLike[str]) -> PairsStore:
    """Open a pairs store (also one still being collected or interrupted).

    Raises
    ------
    StoreError
        If the path is not a tem-acq pairs store (a clear message says what it is instead).
    """
    return PairsStore(Path(path))


def _fsync_chunks(array_dir: Path, start: int, stop: int) -> None:
    """Make the chunks of pairs ``start..stop-1`` and the array's metadata durable.

    zarr-python writes chunk ``i`` to ``c/i/0/0`` (default v3 key encoding) and does not fsync.
    """
    paths = [array_dir / "zarr.json"] + [
        array_dir / "c" / str(i) / "0" / "0" for i in range(start, stop)
    ]
    for path in paths:
        if not path.exists():  # zarr skips chunks that are all fill value
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for directory in {p.parent for p in paths} | {p.parent.parent for p in paths[1:]}:
        if directory.exists():
            fsync_dir(directory)
    if (array_dir / "c").exists():
        fsync_dir(array_dir / "c")


def _utc() -> str:
    return datetime.now(UTC).isoformat()
