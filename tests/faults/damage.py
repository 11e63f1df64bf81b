"""Store damage done to real stores on disk: what a failing disk, a bad copy or a slip does.

Each function damages one thing of a store written by tem-acq and returns the frames (pairs)
that a truthful ``tem-acq info --check`` must name, so that a test compares exactly. The stores
themselves come from :func:`acquisition_store` and :func:`pairs_store`: real writers, frames of
Poisson counts (they compress like a camera's), every frame distinct.

Frame data files are the shards (acquisition stores, 16 frames each) and the per-pair chunk
files (pairs stores); :func:`frame_files` snapshots them byte for byte, so that a test proves
``tem-acq recover`` never changed one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np

from tem_acq.store import (
    AcquisitionMetadata,
    AcquisitionWriter,
    Camera,
    FrameRecord,
    Instrument,
    PairRecord,
    PairsMetadata,
    PairsWriter,
)

#: The store's event log (named here, not imported, like every rule of the format below).
EVENT_LOG = "tem_acq_log.jsonl"

SHAPE = (32, 40)
FRAMES = 40  # two whole shards of 16 and a partial one of 8
PAIRS = 6  # three fields of two pairs
INTERVAL_MS = 100.0


def raw_frame(index: int) -> np.ndarray:
    """Frame ``index`` of :func:`acquisition_store`: Poisson counts, distinct per frame."""
    return np.random.default_rng(index).poisson(40.0, SHAPE).astype(np.uint16)


def denoised(index: int) -> bool:
    """Whether :func:`acquisition_store` denoised frame ``index`` (the others are skipped)."""
    return index % 3 != 0


def acquisition_store(path: Path, *, close: bool = True) -> Path:
    """A real acquisition store of :data:`FRAMES` frames, 100 ms apart, two thirds denoised."""
    metadata = AcquisitionMetadata(
        instrument=Instrument(voltage_kV=200, pixel_size_A=29.88),
        camera=Camera(name="Gatan OneView", counts_per_electron=44),
        exposure_ms=3.3,
        dose_e_per_px=0.9,
    )
    writer = AcquisitionWriter(path, metadata, SHAPE, shard_frames=16)
    start = np.datetime64("2026-01-01T00:00:00.000")
    for i in range(FRAMES):
        stamp = str(start + np.timedelta64(int(i * INTERVAL_MS), "ms")) + "Z"
        index = writer.append_raw(raw_frame(i), FrameRecord(timestamp=stamp, stage_x_um=i))
        if denoised(index):
            writer.write_denoised(index, raw_frame(i).astype(np.float32) / 44, latency_ms=5.0)
        else:
            writer.mark_skipped(index, "denoiser busy")
    if close:
        writer.close()
    return path


def pairs_store(path: Path) -> Path:
    """A real pairs store of :data:`PAIRS` pairs (three fields of two), with truth."""
    metadata = PairsMetadata(
        instrument=Instrument(voltage_kV=200, pixel_size_A=2.0),
        camera=Camera(name="sim", counts_per_electron=1.0),
        short_exposure_ms=2.0,
        long_exposure_ms=200.0,
        n_short=2,
        planned_fields=PAIRS // 2,
    )
    writer = PairsWriter(path, metadata, SHAPE, truth=True)
    for field in range(PAIRS // 2):
        rng = np.random.default_rng(field)
        low = rng.poisson(5.0, (2, *SHAPE)).astype(np.uint16)
        high = rng.poisson(500.0, (2, *SHAPE)).astype(np.float32)
        records = [pair_record(field, k) for k in range(2)]
        writer.append_field(field, low=low, high=high, truth=high / 100, records=records)
    writer.close()
    return path


def pair_record(field: int, pair_in_field: int, **overrides: Any) -> PairRecord:
    """The row of one pair of a test pairs store: 2 ms / 200 ms, 5 / 500 e-/px, 1 count/e-."""
    values: dict[str, Any] = {
        "field": field,
        "pair_in_field": pair_in_field,
        "low_exposure_ms": 2.0,
        "high_exposure_ms": 200.0,
        "low_dose_e_per_px": 5.0,
        "high_dose_e_per_px": 500.0,
        "counts_per_electron": 1.0,
        "shift_dy_px": 0.0,
        "shift_dx_px": 0.0,
    }
    return PairRecord(**(values | overrides))


# -- frame files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameFiles:
    """Where an array keeps its frames, read from its zarr.json by this library itself.

    (Not through :mod:`tem_acq.store.chunks`: the damage is done by the format's own rules, so
    that the code under test is not the one deciding what it damages.)
    """

    directory: Path
    length: int
    shard_frames: int | None  # None: a file per frame (pairs stores)
    separator: str

    def file_of(self, frame: int) -> Path:
        number = frame if self.shard_frames is None else frame // self.shard_frames
        sep = self.separator
        return self.directory / f"c{sep}{number}{sep}0{sep}0"


def files_of(store: Path, array: str) -> FrameFiles:
    """Where ``array`` of ``store`` keeps its frames."""
    directory = store / array / "0"
    doc = json.loads((directory / "zarr.json").read_text())
    sharded = doc["codecs"][0]["name"] == "sharding_indexed"
    encoding = doc.get("chunk_key_encoding", {}).get("configuration", {})
    return FrameFiles(
        directory=directory,
        length=doc["shape"][0],
        shard_frames=doc["chunk_grid"]["configuration"]["chunk_shape"][0] if sharded else None,
        separator=encoding.get("separator", "/"),
    )


def frames_in_file(store: Path, array: str, frame: int) -> list[int]:
    """The committed frames stored in the same file as ``frame`` (its shard, or just it)."""
    files = files_of(store, array)
    if files.shard_frames is None:
        return [frame]
    first = frame // files.shard_frames * files.shard_frames
    return list(range(first, min(first + files.shard_frames, files.length)))


def ome_sizes(store: Path) -> list[int]:
    """The ``SizeT`` of every image in the store's OME-XML."""
    root = ElementTree.fromstring((store / "OME" / "METADATA.ome.xml").read_bytes())
    return [int(e.attrib["SizeT"]) for e in root.iter() if e.tag.endswith("}Pixels")]


def frame_files(store: Path) -> dict[str, bytes]:
    """Every frame data file of ``store`` (shards, chunk files) and its bytes, by path."""
    return {
        path.relative_to(store).as_posix(): path.read_bytes()
        for level in sorted(store.glob("*/0"))
        for path in sorted(level.rglob("*"))
        if path.is_file() and path.name != "zarr.json"
    }


# -- damage -----------------------------------------------------------------------------------


def delete_frame_file(store: Path, array: str, frame: int) -> list[int]:
    """Delete the file holding ``frame``; the frames it held."""
    lost = frames_in_file(store, array, frame)
    files_of(store, array).file_of(frame).unlink()
    return lost


def truncate_frame_file(store: Path, array: str, frame: int) -> list[int]:
    """Cut the file holding ``frame`` to half its length; the frames it held."""
    lost = frames_in_file(store, array, frame)
    path = files_of(store, array).file_of(frame)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return lost


def corrupt_chunk(store: Path, array: str, frame: int) -> list[int]:
    """Flip one byte in the middle of ``frame``'s chunk (its shard index stays whole): [frame]."""
    files = files_of(store, array)
    path = files.file_of(frame)
    data = bytearray(path.read_bytes())
    if files.shard_frames is None:
        offset, size = 0, len(data)
    else:
        # the sharding_indexed index at the end: (offset, nbytes) uint64 pairs, then a crc32c
        index = data[len(data) - (16 * files.shard_frames + 4) : -4]
        table = np.frombuffer(bytes(index), dtype="<u8").reshape(-1, 2)
        offset, size = (int(v) for v in table[frame % files.shard_frames])
        assert offset != 2**64 - 1, f"frame {frame} of {array} has no chunk to corrupt"
    data[offset + size // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    return [frame]


def change_length(store: Path, array: str, by: int) -> list[int]:
    """Raise (``by > 0``) or lower ``array``'s ``shape`` in its zarr.json; the frames affected."""
    path = store / array / "0" / "zarr.json"
    doc = json.loads(path.read_text())
    old = doc["shape"][0]
    doc["shape"][0] = old + by
    path.write_text(json.dumps(doc))
    return list(range(min(old, old + by), max(old, old + by)))


def corrupt_json(path: Path) -> None:
    """Replace a JSON document with bytes that are not JSON."""
    path.write_bytes(b'{"zarr_format": 3, "node_type": "arr\x00\xff')


def tear_last_log_line(store: Path) -> dict[str, object]:
    """Cut the log's last line in half (what a crash mid-append leaves); the event it was."""
    log = store / EVENT_LOG
    lines = log.read_bytes().rstrip(b"\n").split(b"\n")
    event = json.loads(lines[-1])
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    log.write_bytes(b"\n".join(lines))
    return dict(event)


def corrupt_log_line(store: Path, event: str, index: int) -> int:
    """Garble the log line of ``event`` (``"frame"``, ``"pair"``) ``index``; its line number."""
    log = store / EVENT_LOG
    lines = log.read_bytes().split(b"\n")
    for number, line in enumerate(lines):
        if line.startswith(b"{") and json.loads(line).get("event") == event:
            if json.loads(line).get("index") == index:
                lines[number] = b"\x00garbled by the disk\xff"
                log.write_bytes(b"\n".join(lines))
                return number + 1
    raise AssertionError(f"no {event} {index} in {log}")


@dataclass(frozen=True)
class FrameDamage:
    """A kind of damage to one frame's file: its name and what it does."""

    name: str
    apply: Callable[[Path, str, int], list[int]]


#: The damage a frame file can take, for the matrices of the tests.
FRAME_DAMAGE = [
    FrameDamage("deleted", delete_frame_file),
    FrameDamage("truncated", truncate_frame_file),
    FrameDamage("corrupted", corrupt_chunk),
]
