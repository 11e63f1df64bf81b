"""Verify a store: every committed frame against its log and its checksums (``info --check``).

:func:`check_store` reads every frame file a store's committed length needs and names each
damaged frame: a missing, truncated or corrupted shard (each chunk's crc32c, each shard index's
crc32c), a frame without its row in the per-frame table, lengths that count frames which were
never recorded, metadata that disagrees with what is on disk. Each finding says whether
*recorded* data is damaged (raw frames, the long exposures of pairs, their rows: lost, no
command brings them back) or only *derived* data and metadata (denoised frames, which
``tem-acq denoise`` regenerates; lengths, sizes and closing events, which ``tem-acq recover``
brings in line). The exit codes of ``tem-acq info --check`` follow: :data:`EXIT_OK`,
:data:`EXIT_RECORDED_DAMAGE`, :data:`EXIT_DERIVED_DAMAGE`.

The scans (:func:`scan_acquisition`, :func:`scan_pairs`) are shared with
:mod:`tem_acq.store.recover`, so that what the check reports is what recovery acts on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tem_acq.store._files import read_event_log
from tem_acq.store.chunks import ArrayFiles, frame_ranges, group_problems
from tem_acq.store.layout import DENOISED, EVENT_LOG, LEVEL, OME_XML, RAW, ome_xml_sizes
from tem_acq.store.metadata import FrameRecord
from tem_acq.store.pairs import HIGH, LOW, TRUTH, PairsLog, read_pairs_log
from tem_acq.store.reader import AcquisitionStore
from tem_acq.store.root import store_kind
from tem_acq.store.timing import FrameClock, differs

#: Every committed frame verified and the metadata in line with it.
EXIT_OK = 0
#: Recorded data is damaged or lost: raw frames, pairs' low or high frames, their rows.
EXIT_RECORDED_DAMAGE = 1
#: Recorded data is whole; derived data (denoised frames, truth) or metadata is not.
EXIT_DERIVED_DAMAGE = 3

_RECOVER = "tem-acq recover fixes it"


@dataclass
class Finding:
    """One problem found: where, what, which frames, and whether recorded data is hit."""

    part: str
    problem: str
    frames: list[int] = field(default_factory=list)
    recorded: bool = True

    def line(self, unit: str = "frame") -> str:
        """The finding as one line (``raw frames 16-31: raw/0/c.1.0.0 is missing``)."""
        if not self.frames:
            return f"{self.part}: {self.problem}"
        word = unit if len(self.frames) == 1 else f"{unit}s"
        return f"{self.part} {word} {frame_ranges(self.frames)}: {self.problem}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "part": self.part,
            "problem": self.problem,
            "frames": list(self.frames),
            "recorded": self.recorded,
        }


@dataclass
class StoreCheck:
    """The result of :func:`check_store`.

    Attributes
    ----------
    path, kind
        The store and its kind.
    frames
        Committed frames (pairs) according to the store's arrays.
    verified
        Frames verified (checksum or decoding), by array.
    findings
        Everything found, recorded-data damage first.
    notes
        Facts worth knowing that are not damage (chunks without checksums, say).
    """

    path: Path
    kind: str
    frames: int
    verified: dict[str, int]
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    @property
    def unit(self) -> str:
        """What the store counts: ``"frame"`` or ``"pair"``."""
        return "pair" if self.kind == "pairs" else "frame"

    @property
    def exit_code(self) -> int:
        """:data:`EXIT_OK`, :data:`EXIT_RECORDED_DAMAGE` or :data:`EXIT_DERIVED_DAMAGE`."""
        if any(f.recorded for f in self.findings):
            return EXIT_RECORDED_DAMAGE
        return EXIT_DERIVED_DAMAGE if self.findings else EXIT_OK

    def damaged(self, part: str) -> list[int]:
        """Every frame of ``part`` (``raw``, ``denoised``, ``table``, ...) named damaged."""
        return sorted({i for f in self.findings if f.part == part for i in f.frames})

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``tem-acq info --check --json``)."""
        return {
            "path": str(self.path),
            "kind": self.kind,
            "frames": self.frames,
            "verified": dict(self.verified),
            "ok": not self.findings,
            "exit_code": self.exit_code,
            "findings": [f.as_dict() for f in self.findings],
            "notes": list(self.notes),
        }

    def lines(self) -> list[str]:
        """The report as aligned text lines."""
        verified = ", ".join(f"{name} {n}" for name, n in self.verified.items())
        rows = [
            ("store", f"{self.path} ({self.kind}, {self.frames} {self.unit}s)"),
            ("verified", f"{verified} (each against {EVENT_LOG} and its checksum)"),
        ]
        for i, finding in enumerate(self.findings):
            tag = "recorded data lost" if finding.recorded else "derived data or metadata"
            rows.append(("damage" if i == 0 else "", f"{finding.line(self.unit)} [{tag}]"))
        rows += [("note", note) for note in self.notes]
        rows.append(("result", self._verdict()))
        width = max(len(key) for key, _ in rows)
        return [f"{key:<{width}}  {value}" for key, value in rows]

    def _verdict(self) -> str:
        code = self.exit_code
        if code == EXIT_OK:
            return f"ok: every committed {self.unit} verified (exit {code})"
        if code == EXIT_RECORDED_DAMAGE:
            return (
                f"RECORDED DATA DAMAGED (exit {code}): no command restores it; tem-acq recover "
                "brings the metadata in line, and every other frame still reads"
            )
        return (
            f"recorded data whole; derived data or metadata out of line (exit {code}): run "
            f"tem-acq recover {self.path} (denoised frames: tem-acq denoise regenerates them)"
        )


def check_store(path: str | os.PathLike[str]) -> StoreCheck:
    """Verify every committed frame of the store at ``path`` (any kind); see the module.

    Raises
    ------
    StoreError
        If ``path`` is not a readable tem-acq store (its root or an array's zarr.json is
        unreadable, say): the message says what is wrong.
    """
    path = Path(path)
    if store_kind(path) == "pairs":
        return _check_pairs(scan_pairs(path))
    return _check_acquisition(scan_acquisition(path))


# -- acquisition stores -----------------------------------------------------------------------


@dataclass
class AcquisitionScan:
    """What is on disk in an acquisition store, frame by frame (see :func:`scan_acquisition`).

    Attributes
    ----------
    store
        The store, opened.
    rows
        Every frame row of the log, by index (committed or not).
    denoised_events
        Every frame with a ``denoised`` event.
    closed
        The last closing event, or ``None``.
    log_problems
        Unreadable log lines.
    length, denoised_length
        Frames counted by ``raw/0/zarr.json`` and ``denoised/0/zarr.json``.
    raw_problems
        Frames below ``length`` whose data is missing or damaged.
    recorded_end
        ``length`` less its tail of frames that were never recorded (no row, no data).
    extension_end
        ``length`` plus the frames after it that are whole on disk with their rows (a crash
        between writing a shard and counting it).
    denoised_problems
        Denoised frames (with an event, below ``denoised_length``) whose data is damaged.
    denoised_end
        The denoised length that agrees with what is on disk.
    xml_sizes
        ``SizeT`` of each image in the OME-XML (``None``: unreadable).
    """

    store: AcquisitionStore
    rows: dict[int, dict[str, Any]]
    denoised_events: set[int]
    closed: dict[str, Any] | None
    log_problems: list[str]
    length: int
    raw_problems: dict[int, str]
    recorded_end: int
    extension_end: int
    denoised_length: int = 0
    denoised_problems: dict[int, str] = field(default_factory=dict)
    denoised_end: int = 0
    xml_sizes: list[int] | None = None

    @property
    def new_length(self) -> int:
        """The raw length that agrees with what is on disk."""
        return self.extension_end if self.extension_end > self.length else self.recorded_end

    def measured_interval_ms(self) -> float | None:
        """The mean frame interval of the committed frames' own clocks (their rows)."""
        clock = FrameClock()
        indices = [i for i in self.rows if i < self.new_length]
        for index in {min(indices), max(indices)} if indices else set():
            try:
                clock.add(index, FrameRecord.model_validate(self.rows[index]))
            except ValueError:
                return None
        return clock.interval_ms


def scan_acquisition(path: Path) -> AcquisitionScan:
    """Read every frame file and the log of the acquisition store at ``path``.

    Raises
    ------
    StoreError
        If the store cannot be opened.
    """
    store = AcquisitionStore(path)
    rows, denoised, closed, problems = _read_acquisition_log(path)
    files = store.raw.files
    length = files.length
    raw_problems = files.verify(range(length))
    scan = AcquisitionScan(
        store=store,
        rows=rows,
        denoised_events=denoised,
        closed=closed,
        log_problems=problems,
        length=length,
        raw_problems=raw_problems,
        recorded_end=_recorded_end(length, rows, raw_problems),
        extension_end=_extension_end(files, rows),
        xml_sizes=ome_xml_sizes(path / "OME" / OME_XML),
    )
    if store.denoised is not None:
        _scan_denoised(scan, store.denoised.files)
    return scan


def _read_acquisition_log(
    path: Path,
) -> tuple[dict[int, dict[str, Any]], set[int], dict[str, Any] | None, list[str]]:
    """Frame rows by index, denoised frames, the last closing event, unreadable lines."""
    try:
        events, problems = read_event_log(path / EVENT_LOG)
    except OSError as exc:
        return {}, set(), None, [f"{EVENT_LOG} cannot be read ({exc.strerror or exc})"]
    rows: dict[int, dict[str, Any]] = {}
    denoised: set[int] = set()
    closed = None
    for event in events:
        kind, index = event.get("event"), event.get("index")
        if kind == "frame" and isinstance(index, int):
            record = event.get("record")
            rows[index] = record if isinstance(record, dict) else {}
        elif kind == "denoised" and isinstance(index, int):
            denoised.add(index)
        elif kind == "closed":
            closed = event
    return rows, denoised, closed, problems


def _recorded_end(length: int, rows: dict[int, Any], problems: dict[int, str]) -> int:
    """``length`` less its tail of frames with neither a row nor data (a raised ``shape``)."""
    end = length
    while end > 0 and end - 1 not in rows and end - 1 in problems:
        end -= 1
    return end


def _extension_end(files: ArrayFiles, rows: dict[int, Any]) -> int:
    """One past the last frame, from ``files.length`` on, whole on disk and with its row."""
    end = files.length
    candidates: list[int] = []
    while end + len(candidates) in rows:
        candidates.append(end + len(candidates))
    problems = files.verify(candidates)
    for frame in candidates:
        if frame in problems:
            break
        end = frame + 1
    return end


def _scan_denoised(scan: AcquisitionScan, files: ArrayFiles) -> None:
    """Fill in the denoised fields of ``scan``: problems, and the length to write."""
    scan.denoised_length = files.length
    new_length = scan.new_length
    wanted = sorted(i for i in scan.denoised_events if i < new_length)
    problems = files.verify(wanted)
    scan.denoised_problems = {i: p for i, p in problems.items() if i < files.length}
    whole = [i for i in wanted if i not in problems]
    scan.denoised_end = min(new_length, max(files.length, max(whole, default=-1) + 1))


def _check_acquisition(scan: AcquisitionScan) -> StoreCheck:
    findings = _raw_findings(scan) + _denoised_findings(scan)
    findings += [Finding("log", problem) for problem in scan.log_problems]
    findings += _acquisition_metadata_findings(scan)
    findings.sort(key=lambda f: not f.recorded)
    store = scan.store
    verified = {RAW: scan.length - len(scan.raw_problems)}
    notes = []
    if not store.raw.files.checksummed:
        notes.append("chunks have no checksums (written before tem-acq added them): decoded")
    if store.denoised is not None:
        checked = [i for i in scan.denoised_events if i < min(scan.denoised_length, scan.length)]
        verified[DENOISED] = len(checked) - len(scan.denoised_problems)
    return StoreCheck(store.path, "acquisition", scan.length, verified, findings, notes)


def _raw_findings(scan: AcquisitionScan) -> list[Finding]:
    """Damaged raw frames, frames without rows, and frames that were never recorded."""
    damaged = {i: p for i, p in scan.raw_problems.items() if i < scan.recorded_end}
    findings = [Finding(RAW, problem, frames) for frames, problem in group_problems(damaged)]
    unrecorded = [i for i in range(scan.recorded_end) if i not in scan.rows]
    if unrecorded:
        lost = "its timestamp, exposure, dose and stage position are lost"
        findings.append(Finding("table", f"no row in {EVENT_LOG} ({lost})", unrecorded))
    if scan.recorded_end < scan.length:
        frames = list(range(scan.recorded_end, scan.length))
        problem = (
            f"counted by {RAW}/{LEVEL}/zarr.json ({scan.length}) but never recorded (no row, "
            f"no data); {_RECOVER}"
        )
        findings.append(Finding("metadata", problem, frames, recorded=False))
    if scan.extension_end > scan.length:
        frames = list(range(scan.length, scan.extension_end))
        problem = (
            "whole on disk with their rows but not counted (a crash before their commit); "
            "tem-acq recover adds them"
        )
        findings.append(Finding("metadata", problem, frames, recorded=False))
    return findings


def _denoised_findings(scan: AcquisitionScan) -> list[Finding]:
    regenerate = "derived data: tem-acq denoise regenerates it"
    findings = [
        Finding(DENOISED, f"{problem} ({regenerate})", frames, recorded=False)
        for frames, problem in group_problems(scan.denoised_problems)
    ]
    if scan.denoised_length > scan.length:
        problem = (
            f"{DENOISED}/{LEVEL}/zarr.json counts {scan.denoised_length} frames, raw "
            f"{scan.length}; {_RECOVER}"
        )
        findings.append(Finding("metadata", problem, recorded=False))
    return findings


def _acquisition_metadata_findings(scan: AcquisitionScan) -> list[Finding]:
    """The OME-XML's sizes, the closing event and the frame interval against the frames."""
    problems = _xml_and_closing_problems(scan.xml_sizes, scan.length, scan.closed, "frames")
    metadata = scan.store.metadata
    measured = scan.measured_interval_ms()
    if metadata.frame_interval_ms is None and differs(measured, None):
        problems.append(
            f"frame_interval_ms is unknown (the t scale is the exposure) while the frames' "
            f"clocks say {measured:.4g} ms; {_RECOVER}"
        )
    return [Finding("metadata", problem, recorded=False) for problem in problems]


def _xml_and_closing_problems(
    sizes: list[int] | None, length: int, closed: dict[str, Any] | None, count: str
) -> list[str]:
    problems = []
    if sizes is None:
        problems.append(f"OME/{OME_XML} is unreadable; {_RECOVER}")
    elif any(size != max(length, 1) for size in sizes):
        problems.append(
            f"OME/{OME_XML} says SizeT={sizes[0]} while zarr.json counts {length}; {_RECOVER}"
        )
    if closed is None:
        problems.append(
            "no closing event: the writer crashed or is still writing; tem-acq recover "
            "closes it (marked incomplete) once no writer runs"
        )
    elif isinstance(closed.get(count), int) and closed[count] != length:
        problems.append(
            f"closed with {closed[count]} {count}, zarr.json counts {length}; {_RECOVER}"
        )
    return problems


# -- pairs stores -----------------------------------------------------------------------------


@dataclass
class PairsScan:
    """What is on disk in a pairs store (see :func:`scan_pairs`).

    Attributes
    ----------
    path
        The store.
    log
        Its event log.
    arrays
        The files of each array present (``low``, ``high``, ``truth``).
    problems
        By array: committed pairs whose frame is missing or damaged.
    xml_sizes
        ``SizeT`` of each image in the OME-XML (``None``: unreadable).
    """

    path: Path
    log: PairsLog
    arrays: dict[str, ArrayFiles]
    problems: dict[str, dict[int, str]]
    xml_sizes: list[int] | None


def scan_pairs(path: Path) -> PairsScan:
    """Read every frame file and the log of the pairs store at ``path``.

    Raises
    ------
    StoreError
        If the store cannot be opened.
    """
    from tem_acq.store.pairs import PairsStore

    PairsStore(path)  # the root, its kind and its arrays' metadata must read
    log = read_pairs_log(path)
    arrays = {
        name: ArrayFiles.open(path, name)
        for name in (LOW, HIGH, TRUTH)
        if (path / name / LEVEL / "zarr.json").is_file()
    }
    problems = {}
    for name, files in arrays.items():
        wanted = [i for i in range(min(log.extent, files.length)) if _expected(log, name, files)(i)]
        problems[name] = files.verify(wanted)
    return PairsScan(path, log, arrays, problems, ome_xml_sizes(path / "OME" / OME_XML))


def _expected(log: PairsLog, name: str, files: ArrayFiles) -> Callable[[int], bool]:
    """Which pairs must have a chunk (see ``PairsStore._has_signal``)."""
    if files.checksummed:
        return lambda index: True
    dose = {
        row.index: row.high_dose_e_per_px if name == HIGH else row.low_dose_e_per_px
        for row in log.rows
    }
    return lambda index: dose.get(index, 1.0) > 0


def _check_pairs(scan: PairsScan) -> StoreCheck:
    log, n = scan.log, scan.log.extent
    findings: list[Finding] = []
    for name, files in scan.arrays.items():
        recorded = name != TRUTH  # the simulator's truth can be simulated again
        findings += [
            Finding(name, problem, frames, recorded)
            for frames, problem in group_problems(scan.problems[name])
        ]
        if files.length < n:
            findings.append(_uncounted_pairs(name, files, n, recorded))
        elif files.length > n:
            problem = (
                f"{name}/{LEVEL}/zarr.json counts {files.length} pairs, the table {n} (an "
                f"unfinished field); {_RECOVER}"
            )
            findings.append(Finding("metadata", problem, recorded=False))
    if log.unrecorded:
        findings.append(Finding("table", f"no row in {EVENT_LOG}", log.unrecorded))
    findings += [Finding("log", problem) for problem in log.problems]
    findings += [
        Finding("metadata", problem, recorded=False)
        for problem in _xml_and_closing_problems(scan.xml_sizes, n, _pairs_closing(log), "pairs")
    ]
    findings.sort(key=lambda f: not f.recorded)
    verified = {
        name: min(n, files.length) - len(scan.problems[name]) for name, files in scan.arrays.items()
    }
    notes = []
    if not scan.arrays[LOW].checksummed:
        notes.append("chunks have no checksums (written before tem-acq added them): decoded")
    return StoreCheck(scan.path, "pairs", n, verified, findings, notes)


def _uncounted_pairs(name: str, files: ArrayFiles, n: int, recorded: bool) -> Finding:
    """Pairs with a row beyond ``name``'s length: lost, or whole on disk and only uncounted."""
    beyond = list(range(files.length, n))
    if not files.verify(beyond):
        problem = f"whole on disk but not counted by {name}/{LEVEL}/zarr.json; {_RECOVER}"
        return Finding("metadata", problem, beyond, recorded=False)
    return Finding(name, f"not in {name}/{LEVEL} ({files.length} counted)", beyond, recorded)


def _pairs_closing(log: PairsLog) -> dict[str, Any] | None:
    """A pairs store's closing state as a closing event (its pair count is not compared)."""
    return {"complete": log.complete} if log.closed else None
