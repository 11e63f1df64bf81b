"""Adapting in the background of an acquisition: a separate process, fed with raw frames.

:class:`BackgroundAdapter` collects the raw frames handed to it (copies: the caller's frames
are never changed) until it has enough of one static field, saves them beside its work folder
and starts :func:`tem_acq.adapt.adapt` in a separate **process** (``spawn``), so the live
denoiser keeps its own threads and, on a GPU machine, its cores. When the process ends,
:meth:`BackgroundAdapter.poll` offers a :class:`Candidate`: the package (written only when it
beat the base model on held-out frames) and both estimates. Whoever runs the live denoiser
decides whether to swap it in.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq.adapt.run import DEFAULT_STEPS
from tem_acq.errors import ConfigError, TemAcqError

#: Frames collected before an adaptation starts (24 pairs: about 5 held back).
DEFAULT_FRAMES = 48
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class Candidate:
    """What one background adaptation produced.

    Attributes
    ----------
    package
        The adapted package, or ``None`` (it did not improve, or the run failed).
    improved
        Whether it beat the base model on the held-out frames (the adapt rule).
    before, after, gain_over_base_db
        The estimates of the base and adapted model, and the adapted model's gain (dB).
    steps
        Optimiser steps done.
    pid
        The process that trained it.
    error
        The one-line error of a failed run, else ``None``.
    """

    package: Path | None
    improved: bool
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    gain_over_base_db: dict[str, Any] = field(default_factory=dict)
    steps: int = 0
    pid: int = 0
    error: str | None = None


class BackgroundAdapter:
    """Adapt ``init`` to the frames handed to :meth:`submit`, in a separate process.

    Parameters
    ----------
    init
        The model being used live (name or folder).
    work_dir
        A new (or empty) folder for the collected frames and the candidate packages.
    counts_per_electron
        The camera's conversion factor.
    frames
        Frames of one static field to collect before adapting (at least 4).
    max_steps, minutes, device, seed
        As for :func:`tem_acq.adapt.adapt`.
    """

    def __init__(
        self,
        init: str | os.PathLike[str],
        work_dir: str | os.PathLike[str],
        *,
        counts_per_electron: float,
        frames: int = DEFAULT_FRAMES,
        max_steps: int = DEFAULT_STEPS,
        minutes: float | None = None,
        device: str = "auto",
        seed: int = 0,
    ) -> None:
        if frames < 4:
            raise ConfigError(f"a background adaptation needs at least 4 frames, got {frames}")
        if not (np.isfinite(counts_per_electron) and counts_per_electron > 0):
            raise ConfigError(f"counts_per_electron must be > 0, got {counts_per_electron}")
        self.work_dir = Path(work_dir)
        if self.work_dir.exists() and any(self.work_dir.iterdir()):
            raise ConfigError(f"{self.work_dir} is not empty: give a new folder for adapting")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.settings = {
            "init": str(init),
            "counts_per_electron": float(counts_per_electron),
            "max_steps": int(max_steps),
            "minutes": minutes,
            "device": device,
            "seed": int(seed),
        }
        self.frames_needed = frames
        self._buffer: list[np.ndarray] = []
        self._context = multiprocessing.get_context("spawn")
        self._stop = self._context.Event()
        self._process: Any = None
        self._round = 0

    @property
    def running(self) -> bool:
        """Whether an adaptation process is running now."""
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        """The process id of the adaptation started last, until :meth:`poll` collects it."""
        return None if self._process is None else self._process.pid

    def submit(self, frame: np.ndarray, *, stage_moved: bool = False) -> None:
        """Hand over one raw frame (copied); starts an adaptation once enough are collected.

        A frame after a stage move starts the collection afresh (one static field only);
        frames arriving while an adaptation runs are not collected.
        """
        if self.running or self._process is not None:
            return
        if stage_moved:
            self._buffer.clear()
        self._buffer.append(np.array(frame, copy=True))
        if len(self._buffer) >= self.frames_needed:
            self._start()

    def _start(self) -> None:
        self._round += 1
        folder = self.work_dir / f"round-{self._round}"
        folder.mkdir()
        frames = folder / "frames.npy"
        np.save(frames, np.stack(self._buffer))
        self._buffer.clear()
        self._process = self._context.Process(
            target=_adapt_in_child,
            args=(
                str(frames),
                str(folder / f"adapted-round-{self._round}"),
                self.settings,
                self._stop,
            ),
            name="tem-acq-adapt",
            daemon=True,
        )
        self._process.start()

    def poll(self) -> Candidate | None:
        """The candidate of the adaptation that just ended, once; ``None`` until then."""
        if self._process is None or self._process.is_alive():
            return None
        self._process.join()
        folder = self.work_dir / f"round-{self._round}"
        pid, code = self._process.pid, self._process.exitcode
        self._process = None
        result = folder / RESULT_FILE
        if not result.is_file():
            return Candidate(None, False, pid=pid, error=f"the process ended with code {code}")
        data = json.loads(result.read_text(encoding="utf-8"))
        if data.get("error"):
            return Candidate(None, False, pid=pid, error=str(data["error"]))
        return Candidate(
            package=Path(data["package"]) if data.get("package") else None,
            improved=bool(data["improved"]),
            before=data["before"],
            after=data["after"],
            gain_over_base_db=data["gain_over_base_db"],
            steps=int(data["steps"]),
            pid=pid,
        )

    def wait(self, timeout: float) -> Candidate | None:
        """Wait up to ``timeout`` seconds for the running adaptation; then :meth:`poll`."""
        if self._process is not None:
            self._process.join(timeout)
        return self.poll()

    def close(self, timeout: float = 60.0) -> None:
        """Ask a running adaptation to stop (it ends after its current step), wait, then end it."""
        self._stop.set()
        if self._process is not None:
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5.0)

    def __enter__(self) -> BackgroundAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _adapt_in_child(frames: str, out: str, settings: dict[str, Any], stop: Any) -> None:
    """The adaptation process: adapt, then write ``result.json`` beside the candidate."""
    from tem_acq.adapt.run import adapt

    result_path = Path(out).parent / RESULT_FILE
    try:
        result = adapt(
            [frames],
            settings["init"],
            out,
            counts_per_electron=settings["counts_per_electron"],
            max_steps=settings["max_steps"],
            minutes=settings["minutes"],
            device=settings["device"],
            seed=settings["seed"],
            progress=False,
            stop=stop.is_set,
        )
        data: dict[str, Any] = {**result.to_dict(), "pid": os.getpid()}
    except TemAcqError as exc:
        data = {"error": str(exc), "pid": os.getpid()}
    tmp = result_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(result_path)
