"""Write an acquisition store frame by frame, crash-safely and at the speed of the disk.

See :mod:`tem_acq.store` for the layout and the crash-safety guarantee. In short: each frame
is compressed as it arrives and held in memory until its shard (up to 16 frames) is full; then
the shard is written and fsynced, its per-frame rows are appended to the log and fdatasynced,
and the array's ``zarr.json`` is replaced atomically (fsynced temporary file, rename, directory
fsync) with the new length. That rename is the commit. The fsyncs of one commit run in parallel
on a few I/O threads (they block in the kernel and never hold the GIL), and shard files are
created ahead of time in batches so that a new shard needs no directory fsync of its own.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numcodecs import Blosc

from tem_acq.detector import DEFAULT_MODELS
from tem_acq.errors import StoreConfigError, StoreError
from tem_acq.outputs import claim_output
from tem_acq.schema import as_model
from tem_acq.store._files import (
    EventLog,
    SpaceReserve,
    fsync_dir,
    read_shard_chunks,
    shard_parts,
    temp_path,
    with_checksum,
    write_atomic,
    write_json_atomic,
    write_synced,
)
from tem_acq.store.layout import (
    BLOSC_SETTINGS,
    COMPRESSIONS,
    DENOISED,
    EVENT_LOG,
    LEVEL,
    OME_XML,
    RAW,
    SUPPORTED_DTYPES,
    ArrayLayout,
    Compression,
    array_doc,
    ome_xml,
    series_group_doc,
    time_scale_documents,
)
from tem_acq.store.metadata import (
    AcquisitionMetadata,
    FrameModel,
    FrameRecord,
    collect_software_versions,
    validate_metadata,
)
from tem_acq.store.timing import FrameClock, due

#: Most frames per shard, and so most frames a crash can lose (see the module docstring).
MAX_SHARD_FRAMES = 16
#: Shards are kept to about this many raw bytes, so big frames get fewer frames per shard.
_SHARD_BYTES = 32 * 2**20
#: Raw shard files created ahead of time, in one batch per directory fsync.
_PREALLOCATE = 16

_UNRESOLVED, _DENOISED, _SKIPPED = 0, 1, 2


def default_shard_frames(frame_shape: tuple[int, int], dtype: np.dtype[Any]) -> int:
    """Frames per shard: 16, fewer for frames so big that 16 would exceed 32 MiB."""
    frame_bytes = frame_shape[0] * frame_shape[1] * dtype.itemsize
    return max(1, min(MAX_SHARD_FRAMES, _SHARD_BYTES // frame_bytes))


@dataclass
class _Array:
    """One (t, y, x) array on disk: its layout, its zarr.json, and the length committed there."""

    layout: ArrayLayout
    path: Path
    doc: dict[str, Any]
    codec: Blosc | None
    length: int = 0

    def encode(self, frame: np.ndarray) -> bytes:
        """Encode one frame as a chunk (the zarr codec chain: bytes, blosc if any, crc32c)."""
        encoded: bytes = frame.tobytes() if self.codec is None else self.codec.encode(frame)
        return with_checksum(encoded)

    def shard_path(self, shard: int) -> Path:
        return self.path / self.layout.chunk_key(shard)

    def stage_shard(self, shard: int, chunks: list[bytes | None]) -> tuple[Path, Path] | None:
        """Write shard ``shard`` holding ``chunks`` and fsync it (not its directory).

        A new shard beyond the committed length is written in place: no reader looks there
        until the commit. One inside it (a partly filled shard written before) is written
        under a temporary name, returned as (temporary, final) for the caller to rename, so
        readers see the old or the new shard whole.
        """
        target = self.shard_path(shard)
        parts = shard_parts(chunks, self.layout.shard_frames)
        if shard * self.layout.shard_frames < self.length:
            tmp = temp_path(target)
            write_synced(tmp, parts)
            return tmp, target
        write_synced(target, parts)
        return None

    def stage_length(self, length: int) -> tuple[Path, Path, dict[str, Any]] | None:
        """Write (and fsync) a temporary zarr.json with ``length`` frames along t.

        Returns (temporary, final, document), or None when the length is unchanged. Renaming
        the temporary file over zarr.json is the commit.
        """
        if length == self.length:
            return None
        doc = {**self.doc, "shape": [length, *self.layout.frame_shape]}
        target = self.path / "zarr.json"
        tmp = temp_path(target)
        write_synced(tmp, [json.dumps(doc, indent=2).encode()])
        return tmp, target, doc

    def set_length(self, length: int, doc: dict[str, Any]) -> None:
        """Record a committed length."""
        self.length = length
        self.doc = doc


@dataclass
class _PendingShard:
    """Denoised frames of one shard not yet final on disk (they may arrive in any order)."""

    chunks: list[bytes | None]
    lines: list[str] = field(default_factory=list)
    dirty: bool = False


@dataclass
class _Commit:
    """What one commit writes, decided before any I/O (see :meth:`AcquisitionWriter._commit`).

    Attributes
    ----------
    write_raw
        The open raw shard holds frames not yet on disk.
    committed
        The raw length once the commit lands.
    outgoing
        Denoised shards whose data or rows go out now, oldest first.
    final
        Those of ``outgoing`` dropped from memory afterwards.
    written
        Those of ``outgoing`` with new data to write.
    lines
        The log rows and events of the commit.
    rewrite_raw
        The raw shard replaces one that already holds committed frames.
    rewrites
        Some shard is rewritten: the rows go out only after it is in place.
    den_durable
        End of the denoised shards whose files are durable after the commit.
    events
        How many of the pending quality rows ``lines`` holds (dropped once committed).
    """

    write_raw: bool
    committed: int
    outgoing: list[int]
    final: list[int]
    written: list[int]
    lines: list[str]
    rewrite_raw: bool
    rewrites: bool
    den_durable: int
    events: int = 0


class AcquisitionWriter:
    """Record one acquisition: raw frames, denoised frames, a per-frame table, errors.

    Use it as a context manager (``close`` runs on exit and marks the store complete)::

        with AcquisitionWriter("run.zarr", metadata, (512, 512)) as writer:
            index = writer.append_raw(frame, FrameRecord(stage_x_um=1.0))
            writer.write_denoised(index, denoised, latency_ms=7.5)

    Parameters
    ----------
    path
        Directory of the new store (conventionally ``NAME.zarr``).
    metadata
        The acquisition's metadata (a model, or a mapping validated into one).
    frame_shape
        (height, width) of every frame.
    dtype
        The camera's dtype (``uint16`` for most TEM cameras).
    overwrite
        Replace an existing store at ``path``. Without it an existing path is an error.
    denoised
        Create the ``denoised`` image (float32 electrons per pixel) beside ``raw``.
    shard_frames
        Frames per shard (the most a crash can lose); default 16, fewer for very big frames.
    compression
        Raw chunks: ``"lz4"`` (blosc-lz4 with bit-shuffle, the default: 1.7x on integrating
        camera counts, 7-8x on sparse counting-camera frames, over 3 GB/s on one core),
        ``"zstd"`` (blosc-zstd level 1: 5 % smaller, 40 % smaller on sparse counts, a third
        the speed) or ``"none"``.
    denoised_compression
        The same choice for denoised frames (lz4 gives about 1.45x on float32 output).
    flush_interval_s
        Also write a partly filled shard when its oldest frame has waited this long
        (checked whenever a frame is appended); ``None`` to write only whole shards.
    max_pending_denoised_shards
        Denoised shards kept in memory waiting for late frames; beyond it the oldest is
        written as it is and a late frame for it costs a rewrite.

    Raises
    ------
    StoreError
        If the path exists (and ``overwrite`` is false) or is not a store that may be
        replaced, the metadata or geometry is invalid, or the store cannot be created.

    Notes
    -----
    Thread safety: one thread (the pipeline's writer thread) is meant to make every call.
    Calls are serialised by a lock, so an occasional call from another thread (for example
    ``record_error`` from a watchdog) is safe, but a second busy caller only waits.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        metadata: AcquisitionMetadata | Mapping[str, Any],
        frame_shape: tuple[int, int],
        dtype: str | np.dtype[Any] | type = "uint16",
        *,
        overwrite: bool = False,
        denoised: bool = True,
        shard_frames: int | None = None,
        compression: Compression = "lz4",
        denoised_compression: Compression = "lz4",
        flush_interval_s: float | None = 5.0,
        max_pending_denoised_shards: int = 4,
    ) -> None:
        self.path = Path(path)
        self.metadata = _with_current_software(validate_metadata(metadata))
        # no interval given: the frames' clocks say what it is (written at commits)
        self._clock = FrameClock() if self.metadata.frame_interval_ms is None else None
        self._scale_written_at = 0  # frames committed when the measured interval was written
        self.frame_shape = _check_frame_shape(frame_shape)
        self.dtype = _check_dtype(dtype)
        self.shard_frames = (
            default_shard_frames(self.frame_shape, self.dtype)
            if shard_frames is None
            else _check_positive_int("shard_frames", shard_frames)
        )
        _check_compressions(compression=compression, denoised_compression=denoised_compression)
        self._flush_interval = _check_flush_interval(flush_interval_s)
        self._max_pending = _check_positive_int(
            "max_pending_denoised_shards", max_pending_denoised_shards
        )
        self._lock = threading.RLock()
        self._closed = False
        self._raw, self._den = self._create(
            compression, denoised_compression if denoised else None, overwrite
        )
        self._log = EventLog(self.path / EVENT_LOG)
        self._reserve = SpaceReserve(self.path)  # made with the store (see _write_store_files)
        self._den_durable = 0  # end of the denoised shards whose files are durable
        # A few threads so that a commit's fsyncs overlap (they block, they never spin).
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tem-acq-store")

        self._appended = 0  # frames handed to append_raw
        self._committed = 0  # frames durably on disk and counted in raw/0/zarr.json
        self._open_shard = 0  # shard the next raw frame goes to
        self._raw_chunks: list[bytes | None] = []  # encoded frames of the open shard
        self._raw_on_disk = 0  # how many of them a partial flush already wrote
        self._rows: list[str] = []  # per-frame rows not yet in the event log
        self._oldest_unflushed: float | None = None
        self._status = bytearray()  # per frame: unresolved, denoised or skipped
        self._pending: dict[int, _PendingShard] = {}
        self._pending_errors: list[str] = []
        self._pending_events: list[str] = []  # quality rows, out with the next commit
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def _create(
        self, compression: Compression, denoised_compression: Compression | None, overwrite: bool
    ) -> tuple[_Array, _Array | None]:
        """Create the empty store; its raw array and its denoised one (None: no denoised image)."""
        raw = ArrayLayout(RAW, self.frame_shape, self.dtype, self.shard_frames, compression)
        den = None
        if denoised_compression is not None:
            float32 = np.dtype("float32")
            den = ArrayLayout(
                DENOISED, self.frame_shape, float32, self.shard_frames, denoised_compression
            )
        docs = _create_store(self.path, self.metadata, raw, den, overwrite=overwrite)

        def array(layout: ArrayLayout) -> _Array:
            doc = docs[f"{layout.name}/{LEVEL}/zarr.json"]
            return _Array(layout, self.path / layout.name / LEVEL, doc, _codec(layout))

        return array(raw), None if den is None else array(den)

    # -- public API --------------------------------------------------------------------------

    @property
    def frames(self) -> int:
        """Raw frames appended so far (committed or still in the open shard)."""
        return self._appended

    @property
    def committed_frames(self) -> int:
        """Raw frames durably on disk: what a reader would see after a crash now."""
        return self._committed

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has finished."""
        return self._closed

    def append_raw(
        self, frame: np.ndarray, record: FrameRecord | Mapping[str, Any] | None = None
    ) -> int:
        """Append a raw frame along t and return its index.

        Parameters
        ----------
        frame
            A (height, width) array of the store's dtype.
        record
            What is known about the frame (timestamp, stage position, ...).

        Returns
        -------
        int
            The frame's index along t.

        Raises
        ------
        StoreError
            If the frame's shape or dtype differ from the store's, the record is invalid, the
            writer is closed, or a full shard could not be written (disk full): the message
            says which frames are safely on disk.
        """
        with self._lock:
            self._check_open()
            frame = _check_frame(frame, self.frame_shape, self.dtype, "raw", self._appended)
            row = _check_record(record, self._appended)
            if len(self._raw_chunks) == self.shard_frames:
                self._commit()  # a previous attempt failed (disk full?): retry before taking more
            index = self._appended
            self._raw_chunks.append(self._raw.encode(frame))
            self._rows.append(
                f'{{"event":"frame","index":{index},"record":{row.model_dump_json()}}}'
            )
            self._status.append(_UNRESOLVED)
            if self._clock is not None:
                self._clock.add(index, row)
            self._appended += 1
            now = time.monotonic()
            if self._oldest_unflushed is None:
                self._oldest_unflushed = now
            if len(self._raw_chunks) == self.shard_frames:
                self._commit()
            elif self._flush_interval is not None and now - self._oldest_unflushed >= (
                self._flush_interval
            ):
                self._flush()
            return index

    def write_denoised(
        self,
        index: int,
        frame: np.ndarray,
        latency_ms: float | None = None,
        *,
        model: FrameModel | Mapping[str, Any] | None = None,
    ) -> None:
        """Store the denoised version of raw frame ``index`` (in any order, at most once).

        The frame is held in memory with its shard and written when the shard is resolved
        (every frame denoised or skipped) at the next commit of raw frames, or at
        :meth:`flush` or :meth:`close`.

        Parameters
        ----------
        index
            Index returned by :meth:`append_raw`.
        frame
            (height, width) floating-point array in electrons per pixel (kept as float32).
        latency_ms
            Time from hand-over to result, for the latency statistics.
        model
            The model that denoised it (package name and sha256), recorded in its row.

        The frame's mean goes into its row's event (``denoised_mean_e_per_px``) and, clipped at
        0, becomes the row's ``corrected_dose_e_per_px`` when it is the dose
        (:func:`denoised_mean_is_dose`); otherwise the row keeps the corrected dose its record
        has (the detector model inverted at the raw mean).

        Raises
        ------
        StoreError
            If the store has no denoised image, ``index`` was never appended or is already
            resolved, the frame's shape or dtype is wrong, or ``model`` is invalid.
        """
        with self._lock:
            self._check_open()
            if self._den is None:
                raise StoreError(
                    f"{self.path} was created without a denoised image: create the writer with "
                    "denoised=True to store denoised frames"
                )
            self._check_index(index)
            dtype = np.asarray(frame).dtype
            if not np.issubdtype(dtype, np.floating):
                raise StoreError(
                    f"denoised frame {index} has dtype {dtype}, expected a floating-point array "
                    "in electrons per pixel (stored as float32)"
                )
            array = _check_frame(
                np.asarray(frame, dtype=np.float32),
                self.frame_shape,
                np.dtype("float32"),
                "denoised",
                index,
            )
            if latency_ms is not None and not latency_ms >= 0:
                raise StoreError(f"latency_ms must be >= 0 (got {latency_ms}) for frame {index}")
            event = denoised_event(index, array, latency_ms, self.metadata, model)
            shard = self._pending_shard(index // self.shard_frames)
            shard.chunks[index % self.shard_frames] = self._den.encode(array)
            shard.dirty = True
            shard.lines.append(json.dumps(event))
            self._status[index] = _DENOISED

    def record_quality(self, index: int, estimate: Mapping[str, Any]) -> None:
        """Record a quality estimate in the row of frame ``index`` (written at the next commit).

        Parameters
        ----------
        index
            The frame the estimate belongs to (a pair's second frame), already appended.
        estimate
            JSON-ready values (``PairEstimate.to_dict()`` and what the caller adds).

        Raises
        ------
        StoreError
            If the writer is closed, ``index`` was never appended, or ``estimate`` is not
            JSON-ready (finite numbers only).
        """
        with self._lock:
            self._check_open()
            if not isinstance(index, int | np.integer) or not 0 <= index < self._appended:
                raise StoreError(
                    f"no raw frame with index {index} in {self.path} to attach a quality "
                    "estimate to: use an index append_raw returned"
                )
            try:
                line = json.dumps(
                    {"event": "quality", "index": int(index), "estimate": dict(estimate)},
                    allow_nan=False,
                )
            except (TypeError, ValueError) as exc:
                raise StoreError(
                    f"the quality estimate of frame {index} is not JSON: {exc}"
                ) from exc
            self._pending_events.append(line)

    def record_model_swap(self, index: int, details: Mapping[str, Any]) -> None:
        """Record that frame ``index`` is the first a swapped-in model denoised (next commit).

        ``details`` (JSON-ready: the new model, why it was swapped in) go into a
        ``model_swap`` event; each denoised row already names its own model.

        Raises
        ------
        StoreError
            If the writer is closed, ``index`` was never appended, or ``details`` is not JSON.
        """
        with self._lock:
            self._check_open()
            if not isinstance(index, int | np.integer) or not 0 <= index < self._appended:
                raise StoreError(
                    f"no raw frame with index {index} in {self.path} to attach a model swap to"
                )
            try:
                line = json.dumps(
                    {"event": "model_swap", "index": int(index), **dict(details)}, allow_nan=False
                )
            except (TypeError, ValueError) as exc:
                raise StoreError(f"the model swap at frame {index} is not JSON: {exc}") from exc
            self._pending_events.append(line)

    def mark_skipped(self, index: int, reason: str) -> None:
        """Record that raw frame ``index`` gets no denoised frame, and why.

        Raises
        ------
        StoreError
            If ``index`` was never appended or is already denoised or skipped.
        """
        with self._lock:
            self._check_open()
            self._check_index(index)
            shard = self._pending_shard(index // self.shard_frames)
            shard.lines.append(
                json.dumps({"event": "skipped", "index": index, "reason": str(reason)})
            )
            self._status[index] = _SKIPPED

    def record_error(self, message: str) -> None:
        """Record an error in the store (``tem-acq info`` lists it); never raises for disk errors.

        The error is written and fsynced at once; if that fails (a full disk), it is kept and
        written with the next successful write.

        Raises
        ------
        StoreError
            Only if the writer is closed.
        """
        self._record_event("error", message, self.errors)

    def record_warning(self, message: str) -> None:
        """Record a warning in the store's event log (``tem-acq info`` lists it), at once.

        For what makes the frames worse without being an error (a pixel size outside the
        model's range): written like an error (:meth:`record_error`), as a ``warning`` event.

        Raises
        ------
        StoreError
            Only if the writer is closed.
        """
        self._record_event("warning", message, self.warnings)

    def _record_event(self, event: str, message: str, kept: list[str]) -> None:
        """Keep ``message`` in ``kept`` and write it to the event log as ``event``, at once."""
        with self._lock:
            self._check_open()
            text = str(message)
            kept.append(text)
            self._pending_errors.append(
                json.dumps({"event": event, "time": _utc_now(), "message": text})
            )
            self._log_errors_now()

    def flush(self) -> None:
        """Write everything received so far (partial shards too) and commit it.

        Raises
        ------
        StoreError
            If writing fails (for example a full disk); nothing committed before is affected
            and the frames stay in memory for another try.
        """
        with self._lock:
            self._check_open()
            self._flush()

    def close(self, *, aborted: bool = False) -> None:
        """Write everything, mark the store complete and release the files (idempotent).

        ``aborted=True`` says in the closing event that the acquisition was stopped early
        (the store is complete up to its last frame; ``tem-acq info`` shows it aborted).

        Raises
        ------
        StoreError
            If writing fails; the store then stays incomplete (its committed frames read) and
            ``close`` may be called again after freeing space.
        """
        with self._lock:
            if self._closed:
                return
            self._commit(everything=True, closing=True)
            self._extend_denoised_length(self._committed)
            self._remove_unused_shard_files()
            self._update_time_scale(final=True)
            try:
                # The OME-XML's sizes are written once, here (zarr.json is what counts before).
                images = [(RAW, self.dtype)]
                if self._den is not None:
                    images.append((DENOISED, np.dtype("float32")))
                xml = ome_xml(self.metadata, images, self.frame_shape, self._committed)
                write_atomic(self.path / "OME" / OME_XML, [xml])
            except OSError as exc:
                raise self._write_failed(exc, "OME/METADATA.ome.xml") from exc
            summary = {
                "event": "closed",
                "time": _utc_now(),
                "frames": self._committed,
                "denoised_frames": self._status.count(_DENOISED),
                "skipped": self._status.count(_SKIPPED),
                **({"aborted": True} if aborted else {}),
            }
            self._append_log([json.dumps(summary)])
            self._log.close()
            self._io.shutdown()
            self._reserve.release()
            self._closed = True

    def __enter__(self) -> AcquisitionWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not self._closed:
            # Keep every frame received, and say why the acquisition ended early.
            name = exc_type.__name__ if exc_type else "an exception"
            self.record_error(f"acquisition ended by {name}: {exc}")
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return (
            f"AcquisitionWriter({str(self.path)!r}, frames={self._appended}, "
            f"committed={self._committed}, {state})"
        )

    # -- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(
                f"the writer of {self.path} is closed: create a new store to record more frames"
            )

    def _check_index(self, index: int) -> None:
        if not isinstance(index, int | np.integer) or not 0 <= index < self._appended:
            raise StoreError(
                f"no raw frame with index {index} in {self.path} ({self._appended} appended): "
                "use the index append_raw returned"
            )
        status = self._status[index]
        if status != _UNRESOLVED:
            what = "a denoised frame" if status == _DENOISED else "been marked skipped"
            raise StoreError(f"frame {index} already has {what}: each frame is resolved once")

    def _pending_shard(self, number: int) -> _PendingShard:
        shard = self._pending.get(number)
        if shard is None:
            chunks: list[bytes | None] = [None] * self.shard_frames
            den = self._den
            if den is not None and den.shard_path(number).exists():
                # A late frame for a shard already written and dropped from memory: start
                # from what is on disk so the rewrite keeps it.
                try:
                    chunks = read_shard_chunks(den.shard_path(number), self.shard_frames)
                except (OSError, ValueError) as exc:
                    raise StoreError(
                        f"cannot read back denoised shard {number} of {self.path} to add a late "
                        f"frame: {exc}"
                    ) from exc
            shard = self._pending[number] = _PendingShard(chunks)
        return shard

    def _commit(self, everything: bool = False, closing: bool = False) -> None:
        """Write and commit the open raw shard and the denoised shards that are ready.

        The order is what makes a crash harmless (each step waits for the one before; the
        fsyncs within a step run in parallel on the I/O threads):

        1. every shard file and the temporary zarr.json documents are written and fsynced;
           the log rows are appended and fdatasynced too, unless a shard is being rewritten;
        2. only when shards are rewritten (a partly filled shard, or a late denoised frame):
           the rewritten shards are renamed into place and their directory fsynced, then the
           log rows are appended;
        3. the zarr.json documents are renamed into place, raw first (the commit), and the
           directories fsynced.

        A new raw shard is written in place into a file created (and made durable) in
        advance; a new denoised shard is written in place too and counted in the denoised
        length from the next commit on, once its directory entry is durable. Rows and events
        beyond an array's length are ignored by readers. A failure at any step leaves what
        was committed untouched and keeps everything in memory for a retry; a retry may log
        rows again, which readers deduplicate by index.

        Parameters
        ----------
        everything
            Also write partly filled shards (flush, close, the flush interval).
        closing
            Drop every denoised shard from memory.
        """
        plan = self._plan_commit(everything, closing)
        try:
            if plan.write_raw and not plan.rewrite_raw:
                self._preallocate(self._open_shard)
            shards, lengths = self._stage(plan)
            if plan.rewrites:
                self._place_rewritten_shards(shards, lengths, plan.lines)
            self._rename_lengths(lengths, plan.written)
        except OSError as exc:
            first = self._open_shard * self.shard_frames
            what = (
                f"raw frames {first}-{plan.committed - 1}" if plan.write_raw else "denoised frames"
            )
            raise self._write_failed(exc, what) from exc
        self._record_commit(plan, lengths)
        self._update_time_scale()

    def _plan_commit(self, everything: bool, closing: bool) -> _Commit:
        """Decide what a commit writes, before any I/O (see :class:`_Commit`)."""
        size = self.shard_frames
        raw, den = self._raw, self._den
        chunks = self._raw_chunks
        write_raw = len(chunks) > self._raw_on_disk
        committed = self._open_shard * size + len(chunks) if write_raw else self._committed
        outgoing, final = self._outgoing_denoised(committed, everything, closing)
        written = [n for n in outgoing if self._pending[n].dirty] if den is not None else []
        rewrite_raw = write_raw and self._open_shard * size < raw.length
        return _Commit(
            write_raw=write_raw,
            committed=committed,
            lines=self._pending_errors
            + self._rows
            + self._pending_events
            + [line for number in outgoing for line in self._pending[number].lines],
            outgoing=outgoing,
            final=final,
            written=written,
            rewrite_raw=rewrite_raw,
            rewrites=rewrite_raw or any(den is not None and n * size < den.length for n in written),
            den_durable=max(
                [self._den_durable] + [min((n + 1) * size, committed) for n in written]
            ),
            events=len(self._pending_events),
        )

    def _outgoing_denoised(
        self, committed: int, everything: bool, closing: bool
    ) -> tuple[list[int], list[int]]:
        """Denoised shards that go out now, oldest first, and those then dropped from memory.

        Out go the resolved ones, everything when asked, and the oldest beyond the memory
        budget.
        """
        size = self.shard_frames
        outgoing: list[int] = []
        final: list[int] = []
        kept = len(self._pending)
        for number in sorted(self._pending):
            first = number * size
            if first + size > committed and not everything:
                break
            resolved = not self._status[first : first + size].count(_UNRESOLVED)
            complete = resolved and first + size <= committed
            evict = kept > self._max_pending
            if complete or evict or everything:
                outgoing.append(number)
                if complete or evict or closing:
                    final.append(number)
                    kept -= 1
        return outgoing, final

    def _stage(
        self, plan: _Commit
    ) -> tuple[list[tuple[Path, Path]], list[tuple[Path, Path, dict[str, Any]]]]:
        """Step 1: write and fsync shards and temporary zarr.json documents, in parallel.

        The log rows go out in the same step unless a shard is rewritten. Returns the shards
        staged under a temporary name and the zarr.json documents, each as (temporary, final,
        ...).
        """
        raw, den = self._raw, self._den
        tasks: list[Callable[[], Any]] = []
        if plan.write_raw:
            tasks.append(partial(raw.stage_shard, self._open_shard, self._raw_chunks))
            tasks.append(partial(raw.stage_length, plan.committed))
        if den is not None:
            tasks += [partial(den.stage_shard, n, self._pending[n].chunks) for n in plan.written]
            # Never past the raw length already on disk, whichever rename lands first.
            tasks.append(partial(den.stage_length, min(self._den_durable, self._committed)))
        if not plan.rewrites:
            tasks.append(partial(self._log.append, plan.lines))
        staged = self._run(tasks)
        shards = [r for r in staged if isinstance(r, tuple) and len(r) == 2]
        lengths = [r for r in staged if isinstance(r, tuple) and len(r) == 3]
        return shards, lengths

    def _place_rewritten_shards(
        self,
        shards: list[tuple[Path, Path]],
        lengths: list[tuple[Path, Path, dict[str, Any]]],
        lines: list[str],
    ) -> None:
        """Step 2: rewritten shards into place, durably, before the rows that describe them."""
        try:
            for tmp, target in shards:
                os.replace(tmp, target)
            self._run([partial(fsync_dir, d) for d in {t.parent for _, t in shards}])
            self._log.append(lines)
        except BaseException:
            for tmp, _ in shards:
                tmp.unlink(missing_ok=True)
            for tmp, _, _ in lengths:
                tmp.unlink(missing_ok=True)
            raise

    def _rename_lengths(
        self, lengths: list[tuple[Path, Path, dict[str, Any]]], written: list[int]
    ) -> None:
        """Step 3, the commit: raw zarr.json first, then denoised; their directories fsynced.

        The fsync of the denoised directory also makes new denoised shards durable for the
        next commit's length.
        """
        for tmp, target, _ in lengths:
            os.replace(tmp, target)
        dirs = {target.parent for _, target, _ in lengths}
        if self._den is not None and written:
            dirs.add(self._den.path)
        self._run([partial(fsync_dir, d) for d in dirs])

    def _record_commit(
        self, plan: _Commit, lengths: list[tuple[Path, Path, dict[str, Any]]]
    ) -> None:
        """Everything is durable: update the bookkeeping to the committed state."""
        raw, den = self._raw, self._den
        for _, target, doc in lengths:
            array = raw if target.parent == raw.path else den
            assert array is not None
            array.set_length(doc["shape"][0], doc)
        self._den_durable = plan.den_durable
        self._pending_errors = []
        self._pending_events = self._pending_events[plan.events :]
        for number in plan.outgoing:
            self._pending[number].lines = []
            self._pending[number].dirty = False
        for number in plan.final:
            del self._pending[number]
        if plan.write_raw:
            self._committed = plan.committed
            self._rows = []
            self._oldest_unflushed = None
            if len(self._raw_chunks) == self.shard_frames:
                self._open_shard += 1
                self._raw_chunks = []
                self._raw_on_disk = 0
            else:
                self._raw_on_disk = len(self._raw_chunks)

    def _flush(self) -> None:
        self._commit(everything=True)
        self._extend_denoised_length(min(self._den_durable, self._committed))

    def _preallocate(self, shard: int) -> None:
        """Make sure raw shard files exist (and their names are durable) from ``shard`` on.

        Files are created in batches with one directory fsync, so that writing a new shard
        needs no directory fsync of its own. Unused ones are removed at close; after a crash
        they are empty files beyond the array's length, which no reader looks at.
        """
        if self._raw.shard_path(shard).exists():
            return
        for number in range(shard, shard + _PREALLOCATE):
            path = self._raw.shard_path(number)
            if not path.exists():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
        fsync_dir(self._raw.path)

    def _extend_denoised_length(self, length: int) -> None:
        """Let ``denoised`` count up to ``length`` frames now rather than at the next commit.

        Only for lengths whose shards are durable (after a commit wrote everything).
        """
        den = self._den
        if den is None or den.length >= length:
            return
        try:
            staged = den.stage_length(length)
            if staged is not None:
                tmp, target, doc = staged
                os.replace(tmp, target)
                fsync_dir(den.path)
                den.set_length(length, doc)
        except OSError as exc:
            raise self._write_failed(exc, "the denoised array's length") from exc

    def _remove_unused_shard_files(self) -> None:
        """Delete preallocated raw shard files that were never written (best effort)."""
        first_unused = -(-self._committed // self.shard_frames)
        for number in range(first_unused, first_unused + _PREALLOCATE + 1):
            path = self._raw.shard_path(number)
            try:
                if path.stat().st_size == 0:
                    path.unlink()
            except OSError:
                pass

    def _run(self, tasks: list[Callable[[], Any]]) -> list[Any]:
        """Run tasks on the I/O threads (their fsyncs overlap); re-raise the first error."""
        if len(tasks) <= 1:
            return [task() for task in tasks]
        futures = [self._io.submit(task) for task in tasks]
        results: list[Any] = []
        error: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:
                results.append(None)
                error = error or exc
        if error is not None:
            # Remove what the successful tasks staged before raising.
            for item in results:
                if isinstance(item, tuple) and item and isinstance(item[0], Path):
                    item[0].unlink(missing_ok=True)
            raise error
        return results

    def _append_log(self, lines: list[str]) -> None:
        try:
            self._log.append(self._pending_errors + lines)
        except OSError as exc:
            raise self._write_failed(exc, "the per-frame table") from exc
        self._pending_errors = []

    def _write_failed(self, exc: OSError, what: str) -> StoreError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            cause = "the disk is full"
            fix = "free space on that disk, then call flush() or close() again"
        else:
            cause = exc.strerror or str(exc)
            fix = "fix the cause, then call flush() or close() again"
        stored = (
            f"frames 0-{self._committed - 1} are safely stored"
            if self._committed
            else "no frames are stored yet"
        )
        message = (
            f"could not write {what} to {self.path}: {cause}. The raw {stored}; the "
            f"{self._appended - self._committed} newer raw frames are kept in memory: {fix}"
        )
        self.errors.append(message)
        self._pending_errors.append(
            json.dumps({"event": "error", "time": _utc_now(), "message": message})
        )
        self._log_errors_now()
        return StoreError(message)

    def _log_errors_now(self) -> None:
        """Write the pending error events at once, best effort, so the store says what failed.

        On a full disk the shard that failed often leaves no room for the line either: the
        space reserve is then released and the line tried once more. Errors that still cannot
        be written go out with the next successful write.
        """
        for attempt in range(2):
            try:
                self._log.append(self._pending_errors)
            except OSError as exc:
                no_room = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                if attempt or not no_room or not self._reserve.release():
                    return
                continue
            self._pending_errors = []
            return

    def _update_time_scale(self, *, final: bool = False) -> None:
        """Write the measured frame interval where the time axis is stated, when it has moved.

        The header's ``frame_interval_ms`` and each image's NGFF ``t`` scale are rewritten
        (atomically) when that is due (:func:`~tem_acq.store.timing.due`: none yet, or the
        measurement moved), and at close (``final``) to its exact value. A failure is harmless:
        the frames are safe and the next commit tries again.
        """
        measured = None if self._clock is None else self._clock.interval_ms
        written = self.metadata.frame_interval_ms
        moved = due(measured, written, self._committed, self._scale_written_at)
        if measured is None or not (moved or (final and measured != written)):
            return
        metadata = self.metadata.model_copy(update={"frame_interval_ms": measured})
        names = [RAW] + ([DENOISED] if self._den is not None else [])
        docs = time_scale_documents(metadata, names)
        try:
            self._run([partial(write_json_atomic, self.path / k, doc) for k, doc in docs.items()])
        except OSError:
            return
        self.metadata = metadata
        self._scale_written_at = self._committed


def denoised_event(
    index: int,
    array: np.ndarray,
    latency_ms: float | None,
    metadata: AcquisitionMetadata,
    model: FrameModel | Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The log row of a denoised frame (live recording and offline denoising write the same).

    Its mean (``denoised_mean_e_per_px``), the corrected dose when the mean is the dose
    (:func:`denoised_mean_is_dose`, schema 1.3) and the model that denoised it.
    """
    event: dict[str, Any] = {"event": "denoised", "index": index, "latency_ms": latency_ms}
    mean = float(np.mean(array, dtype=np.float64))
    event["denoised_mean_e_per_px"] = mean
    if denoised_mean_is_dose(metadata):
        event["corrected_dose_e_per_px"] = max(mean, 0.0)
    if model is not None:
        what = f"invalid model for denoised frame {index}"
        event["model"] = as_model(FrameModel, model, what, StoreError).model_dump()
    return event


def denoised_mean_is_dose(metadata: AcquisitionMetadata) -> bool:
    """Whether a denoised frame's mean is the detector-corrected dose for this store.

    It is unless the camera's detector is nonlinear (an integrating camera's offset and clip:
    the model it states, else its kind's default) and the model's normalisation does not
    correct for it (its card's ``normalization`` lacks ``detector_aware``: the model keeps the
    raw mean, offset and clip included). With no detector or no model known, it is taken to be.
    """
    camera, model = metadata.camera, metadata.model
    detector = camera.detector_model or DEFAULT_MODELS.get(camera.detector_kind or "")
    if detector is None or detector.is_linear or model is None:
        return True
    return bool(model.normalization.get("detector_aware", False))


def _with_current_software(metadata: AcquisitionMetadata) -> AcquisitionMetadata:
    """``metadata`` with the versions of the software loaded now, when the store is created.

    Metadata is often built before a model is loaded (and torch imported); the store records
    what was running when it was written. Versions the caller added under ``other`` stay.
    """
    software = collect_software_versions()
    software.other = {**metadata.software.other, **software.other}
    return metadata.model_copy(update={"software": software})


def _codec(layout: ArrayLayout) -> Blosc | None:
    if layout.compression == "none":
        return None
    # The same settings as the BloscCodec in layout.array_doc; typesize comes from the dtype.
    return Blosc(shuffle=Blosc.BITSHUFFLE, **BLOSC_SETTINGS[layout.compression])


def _utc_now() -> str:
    return datetime.now(UTC).isoformat()


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise StoreConfigError(f"{name} must be a positive integer (got {value!r})")
    return int(value)


def _check_compressions(**choices: str) -> None:
    """Refuse a compression that is not one of :data:`~tem_acq.store.layout.COMPRESSIONS`."""
    for name, value in choices.items():
        if value not in COMPRESSIONS:
            raise StoreConfigError(
                f"{name} must be one of {', '.join(COMPRESSIONS)} (got {value!r})"
            )


def _check_flush_interval(seconds: float | None) -> float | None:
    if seconds is not None and not seconds > 0:
        raise StoreConfigError(f"flush_interval_s must be > 0 or None (got {seconds})")
    return seconds


def _check_frame_shape(shape: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = (int(n) for n in shape)
    except (TypeError, ValueError):
        raise StoreConfigError(f"frame_shape must be (height, width) (got {shape!r})") from None
    if height < 1 or width < 1:
        raise StoreConfigError(f"frame_shape must be positive (got {shape!r})")
    return height, width


def _check_dtype(dtype: str | np.dtype[Any] | type) -> np.dtype[Any]:
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise StoreConfigError(f"unknown dtype {dtype!r}") from None
    if resolved.name not in SUPPORTED_DTYPES:
        raise StoreConfigError(
            f"raw frames of dtype {resolved} cannot be stored: use one of "
            f"{', '.join(SUPPORTED_DTYPES)}"
        )
    return resolved.newbyteorder("<")


def _check_frame(
    frame: np.ndarray, shape: tuple[int, int], dtype: np.dtype[Any], what: str, index: int
) -> np.ndarray:
    array = np.asarray(frame)
    if array.shape != shape or array.dtype.newbyteorder("<") != dtype:
        raise StoreError(
            f"{what} frame {index} is {array.shape} {array.dtype}, but this store holds "
            f"{shape} {dtype.name} frames: the camera's ROI, binning or pixel type changed "
            "mid-acquisition; start a new store for the new settings (frames so far stay "
            "readable)"
        )
    # Little-endian and contiguous, as the chunk encoding expects.
    return np.ascontiguousarray(array, dtype=dtype)


def _check_record(record: FrameRecord | Mapping[str, Any] | None, index: int) -> FrameRecord:
    if record is None:
        return FrameRecord()
    return as_model(FrameRecord, record, f"invalid record for frame {index}", StoreError)


def _create_store(
    path: Path,
    metadata: AcquisitionMetadata,
    raw: ArrayLayout,
    denoised: ArrayLayout | None,
    *,
    overwrite: bool,
) -> dict[str, Any]:
    """Build the empty store in a hidden sibling directory, then rename it into place.

    A crash while creating leaves no half-made store at ``path``. Returns the documents
    written, by path inside the store.
    """
    replace = claim_output(path, overwrite=overwrite)
    parent = path.parent
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    staging = parent / f".{path.name}.creating-{tag}"
    layouts = [raw] + ([denoised] if denoised else [])
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        docs = _store_documents(metadata, layouts)
        _write_store_files(staging, docs, metadata, layouts)
        _move_into_place(
            staging, path, parent / f".{path.name}.replaced-{tag}" if replace else None
        )
        return docs
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        hint = (
            "free space on that disk"
            if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else ("check the path and its permissions")
        )
        raise StoreError(f"cannot create the store {path}: {exc.strerror or exc}: {hint}") from exc


def _store_documents(metadata: AcquisitionMetadata, layouts: list[ArrayLayout]) -> dict[str, Any]:
    """Every ``zarr.json`` of a new store (root, OME, each image and its array), by path."""
    names = [layout.name for layout in layouts]
    docs: dict[str, Any] = {
        **time_scale_documents(metadata, names),
        "OME/zarr.json": series_group_doc(names),
    }
    for layout in layouts:
        docs[f"{layout.name}/{LEVEL}/zarr.json"] = array_doc(layout)
    return docs


def _write_store_files(
    staging: Path, docs: dict[str, Any], metadata: AcquisitionMetadata, layouts: list[ArrayLayout]
) -> None:
    """Write a new store's files into ``staging``, each fsynced, then fsync its directories."""
    for key, doc in docs.items():
        target = staging / key
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, [json.dumps(doc, indent=2).encode()], sync_dir=False)
    images = [(layout.name, layout.dtype) for layout in layouts]
    xml = ome_xml(metadata, images, layouts[0].frame_shape, 0)
    write_atomic(staging / "OME" / OME_XML, [xml], sync_dir=False)
    write_atomic(staging / EVENT_LOG, [b""], sync_dir=False)
    if not SpaceReserve(staging).make():
        raise OSError(errno.ENOSPC, "no room for the store's space reserve")
    for directory in [
        staging / "OME",
        *(staging / layout.name / LEVEL for layout in layouts),
        *(staging / layout.name for layout in layouts),
        staging,
    ]:
        fsync_dir(directory)


def _move_into_place(staging: Path, path: Path, old: Path | None) -> None:
    """Rename the built store to ``path``; an existing store there is first moved to ``old``."""
    if old is not None:
        os.rename(path, old)
        os.rename(staging, path)
        fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, path)
        fsync_dir(path.parent)
