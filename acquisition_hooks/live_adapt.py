"""Adapting the live model to the specimen during the acquisition, in another process.

:class:`LiveAdapt` is what ``LiveRecorder(adapt=AdaptLive(out=...))`` runs. The camera's
thread hands each raw frame to :meth:`LiveAdapt.offer`, which only puts it in a small bounded
queue (a full queue drops the frame *for adaptation* and counts it; recording never depends on
it). A feeder thread passes the frames to a :class:`tem_acq.adapt.BackgroundAdapter` (a separate
**process**, so live denoising keeps its cores); a stage move starts its collection afresh.

When the adapter offers a candidate, it is swapped into the live pipeline only when its paired
gain over the model now in use, judged on frames held back from its training, has its 95 %
interval above ``min_gain_db`` (0 dB by default: the rule of ``tem-acq adapt``). The swap is
:meth:`tem_acq.pipeline.FramePipeline.swap_denoiser`: applied between denoiser batches, recorded
as a ``model_swap`` event on the first frame the new model denoised; every denoised row names
its own model. The candidates live in the folder the user gives (``out``), never in the store.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from tem_acq.adapt.background import DEFAULT_FRAMES, BackgroundAdapter, Candidate
from tem_acq.adapt.run import DEFAULT_STEPS
from tem_acq.errors import ConfigError
from tem_acq.schema import StrictModel

from .live_quality import _stage_moved

log = logging.getLogger(__name__)

#: A swap callback: ``swap(denoiser, model_id, details, on_applied)``.
Swap = Callable[[Any, dict[str, str], dict[str, Any], Callable[[int], None]], None]


class AdaptLive(StrictModel):
    """Settings of the live adaptation (``LiveRecorder(adapt=...)``, ``--adapt-out``).

    Attributes
    ----------
    out
        A new (or empty) folder for the collected frames and the candidate packages; not
        inside the store.
    frames
        Raw frames of one static field collected before a round of adaptation starts.
    max_steps, minutes
        Training limits of each round (as for ``tem-acq adapt``).
    rounds
        Rounds of adaptation at most (each starts from the model in use then).
    min_gain_db
        A candidate is swapped in only when the low end of its gain's 95 % interval over the
        model in use exceeds this (dB).
    device
        Where the adapter trains (``"auto"``: CUDA if present).
    queue_frames
        Frames waiting for the feeder thread at most; more are dropped for adaptation.
    stop_timeout_s
        At close, how long the adapter process may take to stop before it is terminated.
    seed
        Seeds training and the estimate.
    """

    out: Path
    frames: int = Field(default=DEFAULT_FRAMES, ge=4)
    max_steps: int = Field(default=DEFAULT_STEPS, ge=1)
    minutes: float | None = Field(default=None, gt=0)
    rounds: int = Field(default=1, ge=1)
    min_gain_db: float = 0.0
    device: str = "auto"
    queue_frames: int = Field(default=8, ge=1)
    stop_timeout_s: float = Field(default=30.0, gt=0)
    seed: int = 0


class LiveAdapt:
    """Feeds raw frames to a background adapter; swaps in candidates that beat the live model.

    Parameters
    ----------
    options
        The settings.
    init
        The live model's package folder (the first round starts from it).
    model_id
        The live model's ``{"name", "sha256"}``.
    counts_per_electron, pixel_size_A
        The camera's conversion factor; the pixel size (a stage move of more than one pixel
        restarts the collection).
    load
        ``load(package) -> denoiser``, loaded and warmed up for the live frames (called in
        the feeder thread, never in the denoiser's).
    swap
        Hands a denoiser to the pipeline (``FramePipeline.swap_denoiser``).
    report_error
        Records a one-line message in the store.
    """

    def __init__(
        self,
        options: AdaptLive,
        *,
        init: Path,
        model_id: dict[str, str],
        counts_per_electron: float,
        pixel_size_A: float,
        load: Callable[[Path], Any],
        swap: Swap,
        report_error: Callable[[str], None],
    ) -> None:
        self._options = options
        self._pixel_um = pixel_size_A * 1e-4
        self._load, self._swap, self._report_error = load, swap, report_error
        self._adapter = BackgroundAdapter(
            init,
            options.out,
            counts_per_electron=counts_per_electron,
            frames=options.frames,
            max_steps=options.max_steps,
            minutes=options.minutes,
            device=options.device,
            seed=options.seed,
        )
        self._queue: queue.Queue[tuple[np.ndarray, Any]] = queue.Queue(options.queue_frames)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._judged = threading.Condition(self._lock)
        self._decisions = 0  # candidates judged and, when accepted, handed to the pipeline
        self._current = dict(model_id)
        self._last_record: Any = None
        self._counts = {"frames_fed": 0, "frames_dropped": 0, "candidates": 0, "refused": 0}
        self._rounds: list[dict[str, Any]] = []
        self._swaps: list[dict[str, Any]] = []
        self._pids: list[int] = []
        self._feeder = threading.Thread(target=self._feed, name="tem-acq adapt", daemon=True)
        self._feeder.start()

    # -- the camera's side: return at once -------------------------------------------------

    def offer(self, frame: np.ndarray, record: Any) -> None:
        """Queue a raw frame for adaptation, or count it dropped; never waits."""
        try:
            self._queue.put_nowait((frame, record))
        except queue.Full:
            with self._lock:
                self._counts["frames_dropped"] += 1

    # -- the feeder thread -----------------------------------------------------------------

    def _feed(self) -> None:
        while not self._stop.is_set():
            try:
                frame, record = self._queue.get(timeout=0.1)
            except queue.Empty:
                frame = None
            try:
                if frame is not None and self._wants_frames():
                    moved = self._last_record is not None and _stage_moved(
                        self._last_record, record, self._pixel_um
                    )
                    self._last_record = record
                    self._adapter.submit(frame, stage_moved=moved)  # copies it
                    with self._lock:
                        self._counts["frames_fed"] += 1
                    self._note_started()
                candidate = self._adapter.poll()
                if candidate is not None:
                    try:
                        self._judge(candidate)
                    finally:
                        with self._lock:
                            self._decisions += 1
                            self._judged.notify_all()
            except Exception as exc:  # adaptation must never disturb recording
                log.exception("live adaptation failed")
                self._report_error(f"live adaptation stopped: {exc!r}")
                return

    def _wants_frames(self) -> bool:
        """Collecting: no round running and rounds left."""
        return not self._adapter.running and len(self._rounds) < self._options.rounds

    def _note_started(self) -> None:
        pid = self._adapter.pid
        if pid is not None and pid not in self._pids:
            with self._lock:
                self._pids.append(pid)
                self._rounds.append({"round": len(self._rounds) + 1, "base": dict(self._current)})

    def _judge(self, candidate: Candidate) -> None:
        """Swap the candidate in when it beats the live model by the rule; record why not."""
        with self._lock:
            self._counts["candidates"] += 1
            done = self._rounds[-1]
            done.update(_round_result(candidate))
        lo = (candidate.gain_over_base_db.get("ci") or [None])[0]
        if candidate.error is not None:
            self._report_error(f"live adaptation round {done['round']} failed: {candidate.error}")
        beats = lo is not None and lo > self._options.min_gain_db
        if candidate.package is None or not candidate.improved or not beats:
            with self._lock:
                self._counts["refused"] += 1
                done["swapped"] = False
            return
        denoiser = self._load(candidate.package)
        model_id = {
            "name": denoiser.card.name,
            "sha256": denoiser.package_hash.removeprefix("sha256:"),
        }
        details = {
            "round": done["round"],
            "package": str(candidate.package),
            "replaces": dict(self._current),
            "gain_over_base_db": candidate.gain_over_base_db,
            "steps": candidate.steps,
        }
        self._swap(denoiser, model_id, details, lambda index: self._applied(index, model_id))
        with self._lock:
            self._current = model_id
            done["swapped"] = True
        self._adapter.settings["init"] = str(candidate.package)  # the next round starts here

    def _applied(self, index: int, model_id: dict[str, str]) -> None:
        with self._lock:
            self._swaps.append({"first_frame": index, "model": model_id})

    # -- results and closing ---------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """The adapter processes started so far."""
        with self._lock:
            return list(self._pids)

    def wait_for_round(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` until every round started so far has been decided.

        A candidate swapped in is then handed to the pipeline (applied at its next batch).
        """
        with self._lock:
            return self._judged.wait_for(
                lambda: bool(self._rounds) and self._decisions == len(self._rounds),
                timeout_s,
            )

    def close(self, timeout_s: float | None = None) -> None:
        """Stop the feeder and the adapter process (bounded wait, then terminate).

        The process may end its current step and judge it for ``timeout_s`` (default
        ``stop_timeout_s``); then it is terminated.
        """
        wait = self._options.stop_timeout_s if timeout_s is None else timeout_s
        self._stop.set()
        self._feeder.join(wait)
        self._adapter.close(timeout=wait)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: frames fed and dropped, candidates, refusals, rounds, swaps."""
        with self._lock:
            return {
                "out": str(self._options.out),
                **self._counts,
                "rounds": [dict(r) for r in self._rounds],
                "swaps": [dict(s) for s in self._swaps],
                "model": dict(self._current),
            }


def _round_result(candidate: Candidate) -> dict[str, Any]:
    """What the summary keeps of one round's candidate."""
    return {
        "improved": candidate.improved,
        "gain_over_base_db": candidate.gain_over_base_db,
        "steps": candidate.steps,
        "package": None if candidate.package is None else str(candidate.package),
        "error": candidate.error,
    }


def check_out(out: Path, store: Path) -> None:
    """Refuse an adaptation folder inside the store (the store holds recorded data only)."""
    folder, root = out.resolve(), store.resolve()
    if folder == root or root in folder.parents:
        raise ConfigError(
            f"the adaptation folder {out} is inside the store {store}: give a folder beside it"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} is not an empty folder: give a new folder for adapting")
