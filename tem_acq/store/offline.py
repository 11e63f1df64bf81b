"""Add denoised frames to a closed acquisition store afterwards, shard by shard, crash-safely.

Offline denoising (``tem-acq denoise STORE ...``) writes into the store's ``denoised`` image as
live recording does, with the same per-frame ``denoised`` rows and model provenance; raw frames
are never opened for writing. The steps, each safe to interrupt:

1. :func:`prepare_denoised` (once per store, in the coordinating process): creates the
   ``denoised`` image when the store has none (built in a hidden sibling folder, renamed into
   place, then listed in ``OME/``), extends its length to the raw length (frames without a row
   read as NaN, as skipped frames do), and names the model in the header when it names none.
2. :func:`write_denoised_shard` (anywhere, e.g. on a cluster worker): writes one shard file
   whole under a unique temporary name, fsyncs it and renames it into place. Frames the shard
   already held are kept.
3. :func:`record_denoised` (in the coordinating process): appends the shard's rows to the log
   (fdatasynced). Only then do the frames count as denoised.

A crash between 2 and 3 leaves a shard whose new frames have no row: readers ignore them and a
rerun recomputes and replaces that shard (the same frames, the same model: the same values).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq.errors import StoreError
from tem_acq.store._files import (
    EventLog,
    fsync_dir,
    read_json,
    read_shard_chunks,
    shard_parts,
    with_checksum,
    write_atomic,
    write_json_atomic,
    write_synced,
)
from tem_acq.store.layout import (
    BLOSC_SETTINGS,
    DENOISED,
    EVENT_LOG,
    LEVEL,
    OME_XML,
    RAW,
    ArrayLayout,
    Compression,
    array_doc,
    image_group_doc,
    ome_xml,
    root_group_doc,
    series_group_doc,
)
from tem_acq.store.metadata import AcquisitionMetadata, ModelProvenance
from tem_acq.store.reader import AcquisitionStore
from tem_acq.store.writer import _codec, denoised_event


@dataclass(frozen=True)
class ShardWork:
    """One shard of a store that still has frames to denoise.

    Attributes
    ----------
    store
        The store's directory.
    shard
        The shard's number.
    frames
        The frames of the shard that have no denoised version yet, in order.
    """

    store: Path
    shard: int
    frames: tuple[int, ...]


def pending_shards(store: AcquisitionStore, shard_frames: int) -> list[ShardWork]:
    """The shards of ``store`` holding frames without a denoised version (skipped ones too)."""
    done = {row.index for row in store.frames if row.denoised}
    by_shard: dict[int, list[int]] = {}
    for index in range(store.n_frames):
        if index not in done:
            by_shard.setdefault(index // shard_frames, []).append(index)
    return [ShardWork(store.path, n, tuple(frames)) for n, frames in sorted(by_shard.items())]


def raw_shard_frames(path: Path) -> int:
    """Frames per shard of the store's raw image (the unit offline denoising works in)."""
    doc = read_json(path / RAW / LEVEL / "zarr.json")
    return int(doc["chunk_grid"]["configuration"]["chunk_shape"][0])


def prepare_denoised(path: Path, provenance: ModelProvenance) -> int:
    """Make ``path`` ready to take denoised frames; returns the denoised image's frames per shard.

    Creates the ``denoised`` image when there is none (same geometry as ``raw``), extends its
    length to the raw length, and records ``provenance`` in the header when the store names no
    model yet (a header that names another model keeps it; each row names its own). Every file
    is replaced atomically.

    Raises
    ------
    StoreError
        If the store is not closed (still being recorded, or crashed: ``tem-acq recover``
        first) or its files cannot be written.
    """
    store = AcquisitionStore(path)
    if not store.closed:
        raise StoreError(
            f"{path} was not closed (still recording, or its writer crashed): run "
            f"`tem-acq recover {path}` first"
        )
    try:
        if store.denoised is None:
            _create_denoised_image(store)
        _list_denoised(store)  # also after a crash between creating the image and this
        _extend_denoised(path, store.n_frames)
        if store.metadata.model is None:
            meta = store.metadata.model_copy(update={"model": provenance})
            write_json_atomic(path / "zarr.json", root_group_doc(meta))
    except OSError as exc:
        raise StoreError(f"cannot prepare {path} for denoised frames: {exc}") from exc
    return int(
        read_json(path / DENOISED / LEVEL / "zarr.json")["chunk_grid"]["configuration"][
            "chunk_shape"
        ][0]
    )


def write_denoised_shard(
    work: ShardWork,
    frames: np.ndarray,
    metadata: AcquisitionMetadata,
    model: dict[str, str],
    latency_ms: float | None = None,
) -> list[str]:
    """Write ``frames`` (one per ``work.frames``) into their shard; returns the log rows.

    The shard file is written whole under a unique temporary name, fsynced and renamed into
    place (then its directory fsynced): readers see the old shard or the new one, never a mix.
    Frames already in the shard are kept. The rows (:func:`record_denoised` appends them) are
    those live recording writes.
    """
    directory = work.store / DENOISED / LEVEL
    layout = _layout(directory)
    codec = _codec(layout)
    target = directory / layout.chunk_key(work.shard)
    chunks: list[bytes | None] = [None] * layout.shard_frames
    if target.is_file() and target.stat().st_size:
        chunks = read_shard_chunks(target, layout.shard_frames)
    lines = []
    for index, frame in zip(work.frames, frames, strict=True):
        array = np.ascontiguousarray(frame, dtype=np.float32)
        encoded = array.tobytes() if codec is None else codec.encode(array)
        chunks[index % layout.shard_frames] = with_checksum(encoded)
        lines.append(json.dumps(denoised_event(index, array, latency_ms, metadata, model)))
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    write_synced(tmp, shard_parts(chunks, layout.shard_frames))
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return lines


def record_denoised(path: Path, lines: list[str]) -> None:
    """Append the rows of a written shard to the store's log (fdatasynced): the commit."""
    log = EventLog(path / EVENT_LOG)
    try:
        log.append(lines)
    finally:
        log.close()


def _layout(directory: Path) -> ArrayLayout:
    """The layout of an existing (t, y, x) array from its ``zarr.json``."""
    doc = read_json(directory / "zarr.json")
    shard_frames = int(doc["chunk_grid"]["configuration"]["chunk_shape"][0])
    inner = doc["codecs"][0]["configuration"]["codecs"]
    compression: Compression = "none"
    for codec in inner:
        if codec["name"] == "blosc":
            cname = codec["configuration"]["cname"]
            matches = [k for k, v in BLOSC_SETTINGS.items() if v["cname"] == cname]
            if not matches:
                raise StoreError(f"{directory}: blosc {cname!r} is not a tem-acq compression")
            compression = matches[0]  # type: ignore[assignment]
    return ArrayLayout(
        DENOISED,
        (int(doc["shape"][1]), int(doc["shape"][2])),
        np.dtype(doc["data_type"]),
        shard_frames,
        compression,
    )


def _create_denoised_image(store: AcquisitionStore) -> None:
    """Add an empty ``denoised`` image (raw's geometry, lz4), built aside and renamed in."""
    path = store.path
    layout = ArrayLayout(
        DENOISED, store.frame_shape, np.dtype("float32"), raw_shard_frames(path), "lz4"
    )
    px = store.metadata.instrument.pixel_size_A
    scale = (store.metadata.frame_interval_s, px, px)
    staging = path / f".{DENOISED}.creating-{uuid.uuid4().hex[:8]}"
    try:
        (staging / LEVEL).mkdir(parents=True)
        write_atomic(staging / LEVEL / "zarr.json", [json.dumps(array_doc(layout)).encode()])
        write_atomic(staging / "zarr.json", [json.dumps(image_group_doc(DENOISED, scale)).encode()])
        fsync_dir(staging)
        os.rename(staging, path / DENOISED)
        fsync_dir(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _list_denoised(store: AcquisitionStore) -> None:
    """Name the ``denoised`` image in ``OME/`` (its series and OME-XML) when it is not yet."""
    path = store.path
    series = read_json(path / "OME" / "zarr.json")["attributes"]["ome"]["series"]
    if DENOISED in series:
        return
    write_json_atomic(path / "OME" / "zarr.json", series_group_doc([RAW, DENOISED]))
    images = [(RAW, store.raw.dtype), (DENOISED, np.dtype("float32"))]
    xml = ome_xml(store.metadata, images, store.frame_shape, store.n_frames)
    write_atomic(path / "OME" / OME_XML, [xml])


def _extend_denoised(path: Path, length: int) -> None:
    """Set the denoised array's length to ``length`` frames when it is shorter (atomically)."""
    target = path / DENOISED / LEVEL / "zarr.json"
    doc: dict[str, Any] = read_json(target)
    if int(doc["shape"][0]) >= length:
        return
    doc["shape"] = [length, *doc["shape"][1:]]
    write_json_atomic(target, doc)


def read_raw_frames(path: Path, frames: tuple[int, ...]) -> np.ndarray:
    """Raw frames ``frames`` (consecutive, one shard's) of the store at ``path``, checked.

    Reads only those frames (not the log, not other shards).
    """
    from tem_acq.store.chunks import ArrayFiles, CheckedArray
    from tem_acq.store.reader import _open_array

    raw = CheckedArray(_open_array(path, RAW), ArrayFiles.open(path, RAW))
    return np.asarray(raw[frames[0] : frames[-1] + 1])[[i - frames[0] for i in frames]]
