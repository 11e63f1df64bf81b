"""Durable file operations and the zarr v3 shard format, written by hand for speed and safety.

Shards are encoded here rather than through zarr-python's array API for two reasons measured in
``docs/design/storage.md`` and ``benchmarks/bench_store.py``: each frame can be compressed as it
arrives (no burst of work at shard boundaries), and each shard can be replaced atomically (temp
file, fsync, rename), so a crash never leaves a half-written shard where a committed one was.
The bytes are those of zarr's ``sharding_indexed`` codec (chunks, then an index of
(offset, nbytes) uint64 pairs plus a crc32c), so every zarr v3 reader decodes them. Each chunk
ends in its own crc32c too (zarr's ``crc32c`` codec, :func:`with_checksum`), so that a damaged
frame is found by any reader rather than decoded into wrong pixels.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

#: Index entry of a chunk that is not in a shard (zarr v3 sharding spec).
EMPTY = 2**64 - 1


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (new or renamed files) to disk.

    Windows cannot open a directory for fsync; NTFS journals its metadata, so this is a no-op
    there.
    """
    if os.name == "nt":  # pragma: no cover - not tested on Windows here
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: fdatasync (data and size, not timestamps) where the platform has it.
fdatasync = getattr(os, "fdatasync", os.fsync)


def write_atomic(path: Path, parts: Sequence[bytes | memoryview], *, sync_dir: bool = True) -> None:
    """Replace ``path`` with ``parts`` concatenated, so readers see the old or new file whole.

    Writes a temporary file beside it, fsyncs it, renames it over ``path`` and fsyncs the
    directory. On failure the temporary file is removed and ``path`` is untouched.
    """
    tmp = temp_path(path)
    write_synced(tmp, parts)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(path.parent)


def temp_path(path: Path) -> Path:
    """The temporary name a file is written under before it replaces ``path``."""
    return path.with_name(f".{path.name}.tmp")


def write_synced(path: Path, parts: Sequence[bytes | memoryview]) -> None:
    """Write ``path`` (created or truncated) and fsync it; remove it again on failure.

    The caller fsyncs the directory, so that a new name is durable too.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            _write_all(fd, parts)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _write_all(fd: int, parts: Sequence[bytes | memoryview]) -> None:
    # os.writev avoids joining megabytes of chunks into one buffer; loop for short writes.
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    if not hasattr(os, "writev"):  # pragma: no cover - Windows
        for view in views:
            while view:
                view = view[os.write(fd, view) :]
        return
    max_iov = 1024
    while views:
        written = os.writev(fd, views[:max_iov])
        if written == 0:  # pragma: no cover - writev returning 0 for a non-empty buffer
            raise OSError(errno.EIO, "write returned 0 bytes")
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def write_json_atomic(path: Path, doc: Any) -> None:
    """Atomically replace ``path`` with ``doc`` as indented JSON."""
    write_atomic(path, [json.dumps(doc, indent=2, allow_nan=True).encode()])


def read_json(path: Path) -> Any:
    """Read a JSON file (zarr metadata allows ``NaN`` as a fill value)."""
    return json.loads(path.read_bytes())


def crc32c(data: bytes) -> bytes:
    """The crc32c of ``data`` as zarr's ``crc32c`` codec stores it (4 bytes, little-endian)."""
    return np.array([google_crc32c.value(data)], dtype="<u4").tobytes()


def with_checksum(chunk: bytes) -> bytes:
    """``chunk`` followed by its crc32c: the output of zarr's ``crc32c`` codec."""
    return chunk + crc32c(chunk)


def checksum_ok(chunk: bytes) -> bool:
    """True when ``chunk`` ends in the crc32c of the bytes before it (see :func:`with_checksum`)."""
    return len(chunk) >= 4 and crc32c(chunk[:-4]) == chunk[-4:]


def encode_shard_index(sizes: Sequence[int | None], n_chunks: int) -> tuple[bytes, list[int]]:
    """Build a shard index for chunks laid out one after another.

    Parameters
    ----------
    sizes
        Encoded size of each chunk in shard order, ``None`` where a chunk is absent.
    n_chunks
        Chunks per shard (the index always lists all of them).

    Returns
    -------
    index, offsets
        The index bytes (little-endian uint64 (offset, nbytes) pairs plus a crc32c) and the
        offset of each present chunk.
    """
    table = np.full((n_chunks, 2), EMPTY, dtype="<u8")
    offset = 0
    offsets = []
    for i, size in enumerate(sizes):
        if size is None:
            continue
        table[i] = (offset, size)
        offsets.append(offset)
        offset += size
    raw = table.tobytes()
    return raw + crc32c(raw), offsets


def shard_parts(chunks: Sequence[bytes | None], n_chunks: int) -> list[bytes]:
    """Return the byte parts of a shard holding ``chunks`` (``None`` for absent chunks)."""
    index, _ = encode_shard_index([None if c is None else len(c) for c in chunks], n_chunks)
    return [c for c in chunks if c is not None] + [index]


def shard_index_size(n_chunks: int) -> int:
    """Bytes of the index at the end of a shard of ``n_chunks`` chunks (with its crc32c)."""
    return n_chunks * 16 + 4


def read_shard_chunks(path: Path, n_chunks: int) -> list[bytes | None]:
    """Read the encoded chunks of a shard file written by :func:`shard_parts`.

    Raises
    ------
    OSError
        If the file cannot be read (it is missing, say).
    ValueError
        If the shard's index is damaged: shorter than an index, failing its checksum, or
        pointing beyond the chunks' bytes (a truncated shard).
    """
    return split_shard(path.read_bytes(), n_chunks, path.name)


def split_shard(data: bytes, n_chunks: int, name: str = "shard") -> list[bytes | None]:
    """The encoded chunks of the shard bytes ``data`` (``None`` for absent chunks).

    Raises
    ------
    ValueError
        See :func:`read_shard_chunks`.
    """
    index_size = shard_index_size(n_chunks)
    if len(data) < index_size:
        raise ValueError(f"{name} is truncated ({len(data)} bytes, shorter than its index)")
    entries = shard_index(data[-index_size:], len(data), n_chunks, name)
    return [None if e is None else data[e[0] : e[0] + e[1]] for e in entries]


def shard_index(
    index: bytes, file_size: int, n_chunks: int, name: str = "shard"
) -> list[tuple[int, int] | None]:
    """The (offset, nbytes) of each chunk of a shard, from the index at its end.

    Parameters
    ----------
    index
        The last :func:`shard_index_size` bytes of the shard.
    file_size
        The shard's size (every chunk must end before its index).

    Raises
    ------
    ValueError
        If the index fails its checksum or points beyond the chunks' bytes (a truncated shard).
    """
    raw, crc = index[:-4], index[-4:]
    if crc32c(raw) != crc:
        raise ValueError(f"{name} has a damaged index (checksum mismatch)")
    body = file_size - len(index)
    entries: list[tuple[int, int] | None] = []
    for offset, size in np.frombuffer(raw, dtype="<u8").reshape(n_chunks, 2).tolist():
        if offset == EMPTY:
            entries.append(None)
        elif offset + size > body:
            raise ValueError(f"{name} has an index pointing beyond its chunks (truncated)")
        else:
            entries.append((offset, size))
    return entries


class EventLog:
    """An append-only JSON-lines file whose every append is durable (fsynced) or undone.

    A failed append (e.g. a full disk) truncates the file back to where it was, so a later retry
    never leaves a torn line in the middle of the log. An existing log (a collection being
    resumed) is first made to end where :func:`read_event_log` ends: a torn last line that a
    crash left is cut off, so that appends never merge with it into damage mid-log.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._size = os.fstat(self._fd).st_size
        if self._size:
            self._end_last_line()

    def _end_last_line(self) -> None:
        """Cut off a torn last line, or end a whole one that lacks its newline."""
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        start = data.rfind(b"\n") + 1
        if parse_event(data[start:]) is None:
            self.truncate(start)  # what the reader drops silently: no event is lost
            return
        _write_all(self._fd, [b"\n"])  # a whole event without its newline: keep it
        fdatasync(self._fd)
        self._size += 1

    @property
    def size(self) -> int:
        """Bytes durably in the log."""
        return self._size

    def append(self, lines: Sequence[str]) -> None:
        """Append ``lines`` (each one JSON document, no newline) and fsync."""
        if not lines:
            return
        data = ("\n".join(lines) + "\n").encode()
        try:
            _write_all(self._fd, [data])
            fdatasync(self._fd)  # the data and the file size; cheaper than fsync
        except BaseException:
            self.truncate(self._size)
            raise
        self._size += len(data)

    def truncate(self, size: int) -> None:
        """Cut the log back to ``size`` bytes (best effort: used to undo a failed step)."""
        try:
            os.ftruncate(self._fd, size)
            fdatasync(self._fd)
            self._size = size
        except OSError:
            pass

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class SpaceReserve:
    """A small file kept in a store so that, when its disk is full, the error can be recorded.

    A full disk fails the shard write and, often, the log append of the error that says so:
    the store would then say "errors none". Releasing the reserve (deleting the file) frees
    room for that line; it is made again once writes succeed.
    """

    #: Bytes held back: room for a few hundred error lines.
    SIZE = 64 * 1024
    NAME = ".tem_acq_reserve"

    def __init__(self, store: Path) -> None:
        self.path = store / self.NAME

    def make(self) -> bool:
        """Create (or re-create) the reserve; False when there is no room for it."""
        try:
            write_synced(self.path, [bytes(self.SIZE)])
        except OSError:
            return False
        return True

    def release(self) -> bool:
        """Delete the reserve; True when that freed its space."""
        try:
            self.path.unlink()
        except OSError:
            return False
        return True

    @property
    def held(self) -> bool:
        """The reserve is on disk."""
        return self.path.is_file()


def parse_event(line: bytes) -> dict[str, Any] | None:
    """One line of an event log as its event, or ``None`` if it is not a JSON object."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def read_event_log(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Read an event log (of any store kind), skipping lines a crash or a disk left unreadable.

    The one rule: a torn last line is what a crash leaves (the commit it belonged to never
    happened) and is dropped silently; an unreadable line anywhere else is damage and is
    reported.

    Returns
    -------
    events, problems
        The parsed events in order, and one message per unreadable line that was not the last.

    Raises
    ------
    OSError
        If the file cannot be read.
    """
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    lines = path.read_bytes().split(b"\n")
    last = len(lines) - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    for number, line in enumerate(lines[: last + 1], start=1):
        if not line.strip():
            continue
        event = parse_event(line)
        if event is not None:
            events.append(event)
        elif number - 1 != last:
            problems.append(f"{path.name} line {number} is unreadable and was skipped")
    return events, problems
