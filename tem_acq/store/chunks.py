"""The files behind a store's frame arrays, checked: which file holds each frame, and is it whole.

Every array tem-acq reads or checks is ``(t or pair, y, x)`` with one chunk per frame: either
inside shard files of up to 16 frames (acquisition stores, written by hand in zarr's
``sharding_indexed`` format) or one file per frame (pairs stores, written by zarr-python). Since
schema-1.1 stores written from this version on, every chunk ends in its crc32c (zarr's
``crc32c`` codec), so a damaged frame is found without decoding it; older chunks are checked
by decoding them.

:class:`ArrayFiles` reads an array's ``zarr.json`` and answers two questions: the cheap one
(:meth:`~ArrayFiles.missing`: is every file there and at least as long as a shard index?) and
the thorough one (:meth:`~ArrayFiles.verify`: does every chunk pass its checksum?).
:class:`CheckedArray` is what readers hand out instead of a bare ``zarr.Array``: the same
slicing, ``shape``, ``dtype`` and ``np.asarray``, but a damaged or missing frame raises one
clear :class:`~tem_acq.errors.StoreError` naming the frame and the fix, never zeros (zarr's fill
value for a missing shard) and never a codec traceback.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tem_acq.errors import StoreError
from tem_acq.store._files import (
    checksum_ok,
    read_json,
    shard_index,
    shard_index_size,
    split_shard,
)

if TYPE_CHECKING:
    import zarr

#: Bytes of a blosc chunk's header, which holds its compressed size.
_BLOSC_HEADER = 16

#: What a reader's damage message tells the user to do.
FIX = (
    "run `tem-acq info --check {store}` to list every damaged frame and `tem-acq recover "
    "{store}` to bring the store's metadata in line (other frames still read)"
)


@dataclass(frozen=True)
class ArrayFiles:
    """Where one frame array of a store keeps its frames, as its ``zarr.json`` says.

    Attributes
    ----------
    store
        The store's directory (names in messages are relative to it).
    name
        The image's name (``raw``, ``denoised``, ``low``, ``high``, ``truth``).
    directory
        The array's directory (``<store>/<name>/0``).
    length
        Frames along the first axis, as ``zarr.json`` counts them.
    dtype
        The frames' dtype.
    frame_bytes
        Bytes of one decoded frame.
    shard_frames
        Frames per shard file, or ``None`` when each frame has a file of its own.
    checksummed
        Each chunk ends in its crc32c.
    compressed
        Chunks are blosc-compressed.
    separator
        The chunk key separator (``.`` or ``/``).
    """

    store: Path
    name: str
    directory: Path
    length: int
    dtype: np.dtype[Any]
    frame_bytes: int
    shard_frames: int | None
    checksummed: bool
    compressed: bool
    separator: str

    @classmethod
    def open(cls, store: Path, name: str) -> ArrayFiles:
        """Read ``<store>/<name>/0/zarr.json``.

        Raises
        ------
        StoreError
            If it is unreadable or is not a one-chunk-per-frame array of 3 dimensions.
        """
        directory = store / name / "0"
        try:
            doc = read_json(directory / "zarr.json")
            return cls._from_doc(store, name, directory, doc)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise StoreError(
                f"{store} has no readable {name}/0/zarr.json ({type(exc).__name__}: {exc}): the "
                f"store is damaged; {FIX.format(store=store)}"
            ) from None

    @classmethod
    def _from_doc(cls, store: Path, name: str, directory: Path, doc: Any) -> ArrayFiles:
        shape = [int(n) for n in doc["shape"]]
        chunk_shape = [int(n) for n in doc["chunk_grid"]["configuration"]["chunk_shape"]]
        codecs = doc["codecs"]
        shard_frames = None
        if codecs[0]["name"] == "sharding_indexed":
            inner = codecs[0]["configuration"]
            shard_frames, chunk_shape = chunk_shape[0], inner["chunk_shape"]
            codecs = inner["codecs"]
        if len(shape) != 3 or chunk_shape[0] != 1 or list(chunk_shape[1:]) != shape[1:]:
            raise ValueError(f"shape {shape} with chunks {chunk_shape} is not one chunk per frame")
        names = [codec["name"] for codec in codecs]
        encoding = doc.get("chunk_key_encoding") or {}
        dtype = np.dtype(doc["data_type"])
        return cls(
            store=store,
            name=name,
            directory=directory,
            length=shape[0],
            dtype=dtype,
            frame_bytes=shape[1] * shape[2] * dtype.itemsize,
            shard_frames=shard_frames,
            checksummed=names[-1] == "crc32c",
            compressed="blosc" in names,
            separator=(encoding.get("configuration") or {}).get("separator", "/"),
        )

    def file_of(self, frame: int) -> Path:
        """The file that holds ``frame`` (its shard, or its own chunk file)."""
        number = frame if self.shard_frames is None else frame // self.shard_frames
        sep = self.separator
        return self.directory / f"c{sep}{number}{sep}0{sep}0"

    def relative(self, path: Path) -> str:
        """``path`` as named in messages: relative to the store."""
        return path.relative_to(self.store).as_posix()

    def _by_file(self, frames: Iterable[int]) -> dict[Path, list[int]]:
        groups: dict[Path, list[int]] = defaultdict(list)
        for frame in frames:
            groups[self.file_of(int(frame))].append(int(frame))
        return groups

    def missing(self, frames: Iterable[int]) -> dict[int, str]:
        """Frames whose file is missing or truncated (a few bytes read per file, no more).

        The cheap check of every open and read: a missing shard would otherwise read as zeros.
        A shard's index (at its end) is read and checked; a chunk file's header says its size.
        A damaged byte inside a chunk is found by :meth:`verify` (and when it is read).
        """
        problems: dict[int, str] = {}
        for path, members in self._by_file(frames).items():
            problems.update(self._file_problems(path, members))
        return problems

    def _file_problems(self, path: Path, frames: list[int]) -> dict[int, str]:
        """The cheap check of one file holding ``frames`` (see :meth:`missing`)."""
        name = self.relative(path)
        try:
            with path.open("rb") as file:
                size = os.fstat(file.fileno()).st_size
                if self.shard_frames is None:
                    problem = self._chunk_header_problem(file.read(_BLOSC_HEADER), size)
                    return {} if problem is None else dict.fromkeys(frames, f"{name} {problem}")
                index_size = shard_index_size(self.shard_frames)
                if size < index_size:
                    problem = f"{name} is truncated ({size} bytes, shorter than its index)"
                    return dict.fromkeys(frames, problem)
                file.seek(size - index_size)
                entries = shard_index(file.read(index_size), size, self.shard_frames, name)
        except FileNotFoundError:
            return dict.fromkeys(frames, f"{name} is missing")
        except OSError as exc:
            return dict.fromkeys(frames, f"{name} cannot be read ({exc.strerror or exc})")
        except ValueError as exc:
            return dict.fromkeys(frames, str(exc))
        absent = f"its chunk is absent from {name}"
        return {f: absent for f in frames if entries[f % self.shard_frames] is None}

    def _chunk_header_problem(self, head: bytes, size: int) -> str | None:
        """What a chunk file's size says is wrong (from the blosc header), or ``None``."""
        expected = self.frame_bytes
        if self.compressed:
            if len(head) < _BLOSC_HEADER:
                return f"is truncated ({size} bytes)"
            expected = _blosc_sizes(head)[1]
        expected += 4 if self.checksummed else 0
        return None if size == expected else f"is truncated ({size} of {expected} bytes)"

    def verify(self, frames: Iterable[int]) -> dict[int, str]:
        """Frames whose chunk is missing, damaged or undecodable (each file read once).

        Pass only frames that must hold data (a denoised frame that was skipped has none).
        """
        problems: dict[int, str] = {}
        for path, members in self._by_file(frames).items():
            problems.update(self._verify_file(path, members))
        return problems

    def _verify_file(self, path: Path, frames: list[int]) -> dict[int, str]:
        name = self.relative(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return dict.fromkeys(frames, f"{name} is missing")
        except OSError as exc:
            return dict.fromkeys(frames, f"{name} cannot be read ({exc.strerror or exc})")
        if self.shard_frames is None:
            problem = self.chunk_problem(data)
            return {} if problem is None else dict.fromkeys(frames, f"{name} {problem}")
        try:
            chunks = split_shard(data, self.shard_frames, name)
        except ValueError as exc:
            return dict.fromkeys(frames, str(exc))
        problems = {}
        for frame in frames:
            chunk = chunks[frame % self.shard_frames]
            if chunk is None:
                problems[frame] = f"its chunk is absent from {name}"
                continue
            problem = self.chunk_problem(chunk)
            if problem is not None:
                problems[frame] = f"its chunk in {name} {problem}"
        return problems

    def chunk_problem(self, chunk: bytes) -> str | None:
        """What is wrong with one encoded chunk, or ``None`` when it is whole."""
        if self.checksummed:
            if not checksum_ok(chunk):
                return "fails its checksum (damaged bytes)"
            chunk = chunk[:-4]
            if self.compressed:
                return None
        if not self.compressed:
            return None if len(chunk) == self.frame_bytes else "has the wrong size (truncated)"
        return _blosc_problem(chunk, self.frame_bytes)


def _blosc_sizes(head: bytes) -> tuple[int, int]:
    """(decoded, encoded) bytes of a blosc chunk, from its 16-byte header (little-endian)."""
    nbytes, _, cbytes = np.frombuffer(head[4:_BLOSC_HEADER], dtype="<u4").tolist()
    return int(nbytes), int(cbytes)


def _blosc_problem(chunk: bytes, frame_bytes: int) -> str | None:
    """Decode a blosc chunk that has no checksum (stores written before chunks had one)."""
    from numcodecs import Blosc

    if len(chunk) < _BLOSC_HEADER or _blosc_sizes(chunk) != (frame_bytes, len(chunk)):
        return "has the wrong size (truncated)"
    try:
        Blosc().decode(chunk)
    except (RuntimeError, ValueError, TypeError):
        return "does not decode (damaged bytes)"
    return None


def frame_ranges(frames: Iterable[int]) -> str:
    """Frames as short ranges: ``"3, 16-31, 40"``."""
    ordered = sorted(set(frames))
    parts: list[str] = []
    start = prev = None
    for frame in [*ordered, None]:
        if frame is not None and prev is not None and frame == prev + 1:
            prev = frame
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = frame
    return ", ".join(parts)


def group_problems(problems: dict[int, str]) -> list[tuple[list[int], str]]:
    """Frames sharing each problem, in the order of their first frame."""
    groups: dict[str, list[int]] = defaultdict(list)
    for frame in sorted(problems):
        groups[problems[frame]].append(frame)
    return [(frames, problem) for problem, frames in groups.items()]


def describe_problems(name: str, problems: dict[int, str], limit: int = 3) -> list[str]:
    """One line per problem: ``"raw frames 16-31: raw/0/c.1.0.0 is missing"``."""
    lines = []
    groups = group_problems(problems)
    for frames, problem in groups[:limit]:
        word = "frame" if len(frames) == 1 else "frames"
        lines.append(f"{name} {word} {frame_ranges(frames)}: {problem}")
    if len(groups) > limit:
        rest = sum(len(frames) for frames, _ in groups[limit:])
        lines.append(f"{name}: {rest} more damaged frames")
    return lines


class CheckedArray:
    """A store's frame array that never returns a damaged or missing frame as data.

    Slicing, ``shape``, ``dtype``, ``len`` and ``np.asarray`` behave as on the zarr array (limited
    to ``length`` frames where the store commits fewer than the array holds); any other
    attribute is the zarr array's. Before reading, the files of the frames asked for are looked
    up (one ``stat`` each: a missing shard would read as zeros); a frame that fails to decode
    is verified and named.

    Parameters
    ----------
    array
        The zarr array.
    files
        Its files (:class:`ArrayFiles`).
    length
        Frames visible (default: the array's length).
    expected
        Which frames must hold data (default: all); others may be absent (a skipped denoised
        frame reads as NaN).
    """

    def __init__(
        self,
        array: zarr.Array,
        files: ArrayFiles,
        *,
        length: int | None = None,
        expected: Callable[[int], bool] | None = None,
    ) -> None:
        self.array = array
        self.files = files
        n = int(array.shape[0]) if length is None else int(length)
        self.shape: tuple[int, ...] = (n, *(int(s) for s in array.shape[1:]))
        self.dtype = array.dtype
        self.ndim = array.ndim
        self._expected = expected

    def __len__(self) -> int:
        return self.shape[0]

    def __getattr__(self, name: str) -> Any:
        if name in ("array", "files", "_expected"):
            raise AttributeError(name)
        return getattr(self.array, name)

    def __repr__(self) -> str:
        return f"<CheckedArray {self.files.relative(self.files.directory)} shape={self.shape}>"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out.astype(dtype) if dtype is not None else out

    def __getitem__(self, key: Any) -> np.ndarray:
        frames, key = _leading_frames(key, self.shape[0], self.ndim)
        wanted = [int(f) for f in frames if self._expected is None or self._expected(int(f))]
        missing = self.files.missing(wanted)
        if missing:
            raise self.damage_error(missing)
        try:
            return np.asarray(self.array[key])
        except (IndexError, TypeError):
            raise
        except Exception as exc:  # zarr and its codecs raise several types for damaged bytes
            problems = self.files.verify(wanted)
            if not problems:
                raise
            raise self.damage_error(problems) from exc

    def damage_error(self, problems: dict[int, str]) -> StoreError:
        """The one-line error for damaged frames, naming them and the fix."""
        store = self.files.store
        what = "; ".join(describe_problems(self.files.name, problems, limit=2))
        return StoreError(f"{store}: cannot read {what}: {FIX.format(store=store)}")


def _leading_frames(key: Any, length: int, ndim: int) -> tuple[Any, tuple[Any, ...]]:
    """The frames along the first axis that ``key`` selects, and the key for the zarr array."""
    if not isinstance(key, tuple):
        key = (key,)
    if key and key[0] is Ellipsis:
        fill = max(ndim - (len(key) - 1), 1)
        key = (slice(None),) * fill + key[1:]
    if not key:
        key = (slice(None),)
    first, rest = key[0], key[1:]
    if isinstance(first, int | np.integer):
        if not -length <= first < length:
            raise IndexError(f"frame {first} out of range for {length} frames")
        first = int(first) % length
        return [first], (first, *rest)
    if isinstance(first, slice):
        first = slice(*first.indices(length))
        return range(length)[first], (first, *rest)
    frames = np.arange(length)[first]
    return frames.ravel(), (frames, *rest)
