"""Faulty denoisers through the real recorder into real stores: raw frames are never lost.

Each faulty denoiser of :mod:`faults.denoisers` runs behind a :class:`LiveRecorder` (the real
pipeline and store writer). The fast tests feed it frames from a thread standing in for the
camera; the slow matrix runs each fault under both policies through real pycro-manager
acquisitions on a real ``UniMMCore``, snapping and as a hardware sequence. Every case checks
what a user would: every frame handed over is in the store, in order and unchanged; the store
opens and was closed; every frame is either denoised (with the right values) or skipped with
a reason, never neither; a failing denoiser's error is in the store and ``close`` raised
``DenoiserFailedError``; and ``close`` returned (a hang guard, generous: no timing threshold).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faults.denoisers import FAULTS, FaultyDenoiser, Hangs, good_result

from acquisition_hooks import LiveRecorder, simulated_microscope
from tem_acq.errors import DenoiserFailedError
from tem_acq.pipeline import SKIP_ABORTED, SKIP_BUSY, SKIP_FAILED, SKIP_SEQUENCE, SKIP_STUCK
from tem_acq.store import open_store

HANG_S = 60.0  # only a hang guard: every call below returns long before
TIMEOUT_S = 2.0  # denoiser_timeout_s here: how long a hanging denoiser costs a test
SHAPE = (8, 10)
CPE = 4.0
N_FRAMES = 40
REASONS = {SKIP_BUSY, SKIP_SEQUENCE, SKIP_FAILED, SKIP_STUCK, SKIP_ABORTED}


def camera_frame(index: int) -> np.ndarray:
    """A distinct raw frame per index (what the stand-in camera produces)."""
    return np.random.default_rng(index).poisson(20.0, SHAPE).astype(np.uint16)


def guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a thread; its result (or exception, raised here) once it returned.

    Fails if it has not returned within the hang guard: the call hung.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_S)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)} never returned"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


@pytest.fixture(params=sorted(FAULTS))
def fault(request: pytest.FixtureRequest) -> Iterator[FaultyDenoiser]:
    denoiser = FAULTS[request.param]()
    yield denoiser
    denoiser.release()  # a stuck call may return now: its result must be ignored


def close_checked(live: LiveRecorder, fault: FaultyDenoiser) -> None:
    """Close (hang-guarded): ``DenoiserFailedError`` naming the fault exactly when it fails."""
    if fault.fails:
        with pytest.raises(DenoiserFailedError, match="raw frames were recorded"):
            guarded(live.close)
    else:
        guarded(live.close)


def check_store(path: Path, handed_over: list[np.ndarray], fault: FaultyDenoiser) -> None:
    """What a user checks afterwards (see the module docstring)."""
    store = open_store(path)
    assert store.complete
    n = len(handed_over)
    np.testing.assert_array_equal(store.raw[:], np.stack(handed_over))
    rows = store.frames
    assert [row.index for row in rows] == list(range(n))
    for row in rows:
        assert row.denoised != (row.skipped is not None), f"frame {row.index}: {row}"
        assert row.skipped is None or row.skipped in REASONS
    assert store.denoised is not None
    for row in rows:
        if row.denoised:
            expected = good_result(store.raw[row.index][None], CPE)[0]
            np.testing.assert_array_equal(store.denoised[row.index], expected)
    if fault.fails:
        assert any(fault.error_text in error for error in store.errors), store.errors
        failed = [row.skipped for row in rows if row.skipped in (SKIP_FAILED, SKIP_STUCK)]
        assert failed, "the frames after the failure say why they were not denoised"
    else:
        assert store.errors == []
        assert any(row.denoised for row in rows)


@pytest.mark.parametrize("policy", ["skip", "block"])
def test_a_faulty_denoiser_never_stops_raw_recording(
    tmp_path: Path, fault: FaultyDenoiser, policy: str
) -> None:
    path = tmp_path / "run.ome.zarr"
    live = LiveRecorder(
        path,
        pixel_size_A=30.0,
        counts_per_electron=CPE,
        exposure_ms=1.0,
        model=fault,
        policy=policy,  # type: ignore[arg-type]
        denoiser_timeout_s=TIMEOUT_S,
    )
    handed_over: list[np.ndarray] = []

    def camera() -> None:
        for i in range(N_FRAMES):
            frame = camera_frame(i)
            live.process(frame, {"Axes": {"time": i}})
            handed_over.append(frame)

    guarded(camera)  # under "block" a hung denoiser holds the camera only until abandoned
    close_checked(live, fault)
    check_store(path, handed_over, fault)
    assert live.summary.frames == N_FRAMES
    assert live.summary.denoised + live.summary.skipped == N_FRAMES


def test_a_stuck_call_that_returns_late_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "late.ome.zarr"
    hangs = Hangs(good_calls=1)
    live = LiveRecorder(
        path,
        pixel_size_A=30.0,
        counts_per_electron=CPE,
        exposure_ms=1.0,
        model=hangs,
        policy="block",
        denoiser_timeout_s=TIMEOUT_S,
    )
    frames = [camera_frame(i) for i in range(6)]
    guarded(lambda: [live.process(f, {}) for f in frames])
    with pytest.raises(DenoiserFailedError, match=r"denoiser stopped answering.*abandoned"):
        guarded(live.close)
    assert hangs.stuck.is_set()
    before = (path / "tem_acq_log.jsonl").read_bytes()
    hangs.release()  # the abandoned call returns a result now: nobody may use it
    denoiser_threads = [t for t in threading.enumerate() if t.name == "tem-acq denoiser"]
    for thread in denoiser_threads:
        thread.join(HANG_S)
        assert not thread.is_alive()
    assert (path / "tem_acq_log.jsonl").read_bytes() == before
    check_store(path, frames, hangs)
    rows = open_store(path).frames
    assert [row.denoised for row in rows] == [True] + [False] * 5
    assert {row.skipped for row in rows[1:]} == {SKIP_STUCK}


# -- the full matrix, through real pycro-manager acquisitions --------------------------------


def acquisition_events(mode: str, n: int) -> list[dict[str, Any]]:
    """``sequence``: one exposure, merged into a hardware sequence; ``snap``: alternating."""
    if mode == "sequence":
        return [{"axes": {"time": i}, "exposure": 2.0} for i in range(n)]
    return [{"axes": {"time": i}, "exposure": 2.0 if i % 2 else 2.5} for i in range(n)]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:tem-acq. policy 'block' cannot hold")
@pytest.mark.parametrize("mode", ["snap", "sequence"])
@pytest.mark.parametrize("policy", ["skip", "block"])
def test_a_faulty_denoiser_in_a_real_acquisition(
    tmp_path: Path, fault: FaultyDenoiser, policy: str, mode: str
) -> None:
    from pycromanager import Acquisition

    path = tmp_path / "acq.ome.zarr"
    handed_over: list[np.ndarray] = []
    with simulated_microscope(size=32, seed=3, dose_rate=2500.0) as scope:
        settings = {**scope.recorder_settings(), "counts_per_electron": CPE}
        live = LiveRecorder(
            path,
            exposure_ms=2.0,
            model=fault,
            policy=policy,  # type: ignore[arg-type]
            denoiser_timeout_s=TIMEOUT_S,
            **settings,
        )

        def process(image: np.ndarray, metadata: Any) -> Any:
            out = live.process(image, metadata)
            handed_over.append(np.array(image))
            return out

        hooks = {**live.acquisition_kwargs(), "image_process_fn": process}

        def acquire() -> None:
            with Acquisition(directory=None, show_display=False, **hooks) as acq:
                acq.acquire(acquisition_events(mode, N_FRAMES))

        guarded(acquire)
        close_checked(live, fault)
    assert len(handed_over) == N_FRAMES
    check_store(path, handed_over, fault)
