"""``tem-acq recover STORE``: bring a store's derived metadata in line with what is on disk.

After a crash (or damage) a store's metadata can disagree with its frames: the OME-XML still
says ``SizeT=1`` while ``zarr.json`` counts 6192 frames, a raised ``shape`` counts frames that
were never recorded, a shard written and logged just before a ``kill -9`` is not counted, the
frame interval was never measured, the closing event is missing. :func:`recover_store` fixes
exactly those, from the scans of :mod:`tem_acq.store.check`:

- each array's length (``zarr.json``'s ``shape``) becomes what its files and the log support:
  a tail of frames with neither a row nor data is dropped, frames whole on disk with their rows
  are added, damaged frames in between stay counted (so ``info --check`` keeps naming them);
- an unknown frame interval is measured from the frames' rows (header, NGFF ``t`` scales);
- the OME-XML is rewritten with the true ``SizeT``;
- a closing event ``{"complete": false, "recovered": true, "changes": [...]}`` is appended.

It writes only metadata documents (each atomically) and appends to the log: frame data (every
shard and chunk file) is never opened for writing, moved or removed. Run it when no writer is
using the store.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tem_acq.errors import StoreError
from tem_acq.store._files import EventLog, SpaceReserve, read_json, write_atomic, write_json_atomic
from tem_acq.store.check import (
    AcquisitionScan,
    PairsScan,
    StoreCheck,
    check_store,
    scan_acquisition,
    scan_pairs,
)
from tem_acq.store.layout import (
    DENOISED,
    EVENT_LOG,
    LEVEL,
    OME_XML,
    RAW,
    ome_xml,
    time_scale_documents,
)
from tem_acq.store.pairs import PairsMetadata
from tem_acq.store.root import open_root, store_kind


@dataclass
class Recovery:
    """What :func:`recover_store` changed, and the check of the store afterwards."""

    path: Path
    kind: str
    changes: list[str]
    check: StoreCheck

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``tem-acq recover --json``)."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "changes": list(self.changes),
            "check": self.check.as_dict(),
        }

    def lines(self) -> list[str]:
        """The report as text lines."""
        head = [f"recovered {self.path} ({self.kind})"]
        if not self.changes:
            head = [f"{self.path}: its metadata already agrees with its frames; nothing changed"]
        return [*head, *(f"  - {change}" for change in self.changes), *self.check.lines()]


def recover_store(path: str | os.PathLike[str]) -> Recovery:
    """Bring the metadata of the store at ``path`` in line with its frames (see the module).

    Raises
    ------
    StoreError
        If ``path`` is not a readable tem-acq store, or its metadata cannot be written (a
        read-only or full disk: the documents already rewritten are whole, each atomically).
    """
    path = Path(path)
    kind = store_kind(path)
    try:
        if kind == "pairs":
            changes = _recover_pairs(scan_pairs(path))
        else:
            changes = _recover_acquisition(scan_acquisition(path))
    except OSError as exc:
        raise StoreError(
            f"cannot recover {path}: writing its metadata failed ({exc.strerror or exc}); "
            "nothing of its frames was changed: make the disk writable (or free space) and "
            "run tem-acq recover again"
        ) from exc
    return Recovery(path, kind, changes, check_store(path))


def _recover_acquisition(scan: AcquisitionScan) -> list[str]:
    store = scan.store
    path, length = store.path, scan.new_length
    changes = []
    if length != scan.length:
        _set_length(path / RAW / LEVEL, length)
        changes.append(_length_change(RAW, scan.length, length))
    images = [(RAW, store.raw.files.dtype)]
    if store.denoised is not None:
        images.append((DENOISED, store.denoised.files.dtype))
        if scan.denoised_end != scan.denoised_length:
            _set_length(path / DENOISED / LEVEL, scan.denoised_end)
            changes.append(_length_change(DENOISED, scan.denoised_length, scan.denoised_end))
    metadata = store.metadata
    measured = scan.measured_interval_ms()
    if metadata.frame_interval_ms is None and measured is not None:
        metadata = metadata.model_copy(update={"frame_interval_ms": measured})
        for key, doc in time_scale_documents(metadata, [name for name, _ in images]).items():
            write_json_atomic(path / key, doc)
        changes.append(f"frame_interval_ms and the t scales: {measured:.4g} ms (measured)")
    if changes or scan.xml_sizes != [max(length, 1)] * len(images):
        xml = ome_xml(metadata, images, store.frame_shape, length)
        write_atomic(path / "OME" / OME_XML, [xml])
        changes.append(f"OME/{OME_XML}: SizeT={max(length, 1)}")
    if changes or scan.closed is None:
        denoised = [i for i in scan.denoised_events if i < min(scan.denoised_end, length)]
        _close(path, changes, frames=length, denoised_frames=len(denoised))
    return changes


def _recover_pairs(scan: PairsScan) -> list[str]:
    path, n = scan.path, scan.log.extent
    changes = []
    for name, files in scan.arrays.items():
        shorter_but_whole = files.length < n and not files.verify(range(files.length, n))
        if files.length > n or shorter_but_whole:
            _set_length(files.directory, n)
            changes.append(_length_change(name, files.length, n, unit="pairs"))
    images = [(name, files.dtype) for name, files in scan.arrays.items()]
    if changes or scan.xml_sizes != [max(n, 1)] * len(images):
        metadata = open_root(path, PairsMetadata)
        frame_shape = read_json(scan.arrays["low"].directory / "zarr.json")["shape"][1:]
        xml = ome_xml(metadata, images, (int(frame_shape[0]), int(frame_shape[1])), n)
        write_atomic(path / "OME" / OME_XML, [xml])
        changes.append(f"OME/{OME_XML}: SizeT={max(n, 1)}")
    if changes or not scan.log.closed:
        _close(path, changes, pairs=n)
    return changes


def _set_length(directory: Path, length: int) -> None:
    """Rewrite an array's ``zarr.json`` with ``length`` along its first axis (nothing else)."""
    doc = read_json(directory / "zarr.json")
    doc["shape"] = [length, *doc["shape"][1:]]
    write_json_atomic(directory / "zarr.json", doc)


def _length_change(name: str, old: int, new: int, unit: str = "frames") -> str:
    if new < old:
        return (
            f"{name}/{LEVEL}/zarr.json: {old} -> {new} {unit} (the {old - new} beyond were "
            "never recorded; any data there stays on disk)"
        )
    return f"{name}/{LEVEL}/zarr.json: {old} -> {new} {unit} (whole on disk with their rows)"


def _close(path: Path, changes: list[str], **counts: int) -> None:
    """Append the closing event of a recovered store (incomplete: its writer did not close it)."""
    event = {
        "event": "closed",
        "time": datetime.now(UTC).isoformat(),
        **counts,
        "complete": False,
        "recovered": True,
        "changes": list(changes),
    }
    changes.append(f"{EVENT_LOG}: closing event (complete: false, recovered: true)")
    log = EventLog(path / EVENT_LOG)
    try:
        log.append([json.dumps(event)])
    finally:
        log.close()
    SpaceReserve(path).release()  # a crashed writer's reserve: the store is closed now
