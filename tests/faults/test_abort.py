"""Ctrl-C stops the beam: acquisitions abort at once, every frame taken is kept, stores say so.

The commands run as real subprocesses (``tem-acq acquire`` / ``collect-pairs --simulated``)
asked for far more frames than a test waits for; the test sends SIGINT once the store's
event log counts enough committed frames (it watches the log, never a clock), then checks
what a user would: exit code 130, the store opens, says aborted and holds every frame the
log had counted, and the camera stopped at once (the frames after the signal are those
already handed over plus about a second's worth at most; without the fix the run went on to
its end). ``LiveRecorder.abort`` is checked in-process against the camera's own count: every
frame the camera finished is in the store.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycromanager import Acquisition

from acquisition_hooks import LiveRecorder, simulated_microscope
from tem_acq.cli import main as cli
from tem_acq.pipeline import MAX_UNWRITTEN_FRAMES
from tem_acq.store import open_pairs, open_store
from tem_acq.store.writer import MAX_SHARD_FRAMES

HANG_S = 120.0  # only a hang guard
TEM_ACQ = str(Path(sys.executable).with_name("tem-acq"))
EXPOSURE_MS = 5.0
#: Frames taken after the signal, at most: those already handed over but not yet committed
#: (the crash bound), plus two seconds of the camera (stop within one, and room for a loaded
#: machine).
AFTER_SIGNAL = MAX_SHARD_FRAMES - 1 + MAX_UNWRITTEN_FRAMES + int(2000 / EXPOSURE_MS)


def logged(store: Path, kind: str) -> list[dict[str, Any]]:
    """The events of ``kind`` in a store's log so far (a torn last line is not one yet)."""
    log = store / "tem_acq_log.jsonl"
    if not log.exists():
        return []
    events = []
    for line in log.read_bytes().split(b"\n"):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == kind:
            events.append(event)
    return events


def interrupt_when(child: subprocess.Popen[str], ready: Any) -> tuple[str, str, float]:
    """SIGINT ``child`` once ``ready()`` is true; its stdout, stderr and seconds to exit."""
    deadline = time.monotonic() + HANG_S
    while not ready():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the child never got that far"
        time.sleep(0.005)
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=HANG_S)
    return out, err, time.monotonic() - sent


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [TEM_ACQ, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_ctrl_c_stops_tem_acq_acquire_and_keeps_every_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "a.ome.zarr"
    child = start(
        "acquire", "--simulated", "--frames", "5000", "--size", "64",
        "--exposure-ms", str(EXPOSURE_MS), "--out", str(store),
    )  # fmt: skip
    counted: list[int] = []

    def ready() -> bool:
        counted[:] = [len(logged(store, "frame"))]
        return counted[0] >= 2 * MAX_SHARD_FRAMES

    out, err, took = interrupt_when(child, ready)
    assert child.returncode == 130, err
    assert "stopped by Ctrl-C" in err and "marked aborted" in err, err
    s = open_store(store)
    assert s.complete and s.aborted and s.errors == []
    n = s.n_frames
    assert counted[0] <= n < counted[0] + AFTER_SIGNAL, (counted, n, took)
    assert [row.index for row in s.frames] == list(range(n))
    assert (s.raw[:].reshape(n, -1).sum(axis=1) > 0).all()
    assert f"recorded {n} frames" in out
    assert cli(["info", str(store)]) == 0
    assert "ABORTED" in capsys.readouterr().out
    assert cli(["info", str(store), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["aborted"] is True


def test_ctrl_c_stops_collect_pairs_and_resume_starts_at_the_dropped_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "p.ome.zarr"
    fields = 12
    args = [
        "collect-pairs", "--simulated", "--fields", str(fields), "--n-short", "2",
        "--short-exposure-ms", "2", "--long-exposure-ms", "200", "--size", "64",
        "--out", str(store),
    ]  # fmt: skip
    child = start(*args)
    counted: list[int] = []

    def ready() -> bool:
        counted[:] = [len({e["record"]["field"] for e in logged(store, "pair")})]
        return counted[0] >= 2

    _, err, _ = interrupt_when(child, ready)
    assert child.returncode == 130, err
    assert "stopped by Ctrl-C" in err and "--resume" in err, err
    before = open_pairs(store)
    assert before.aborted and not before.complete
    done = before.fields
    assert counted[0] <= len(done) < fields  # every field logged is kept; the run stopped
    assert done == list(range(len(done)))  # whole fields only: the one in progress was dropped
    assert len(before.pairs) == 2 * len(done)
    kept = np.array(before.low[:])
    assert cli(["info", str(store)]) == 0
    assert "ABORTED" in capsys.readouterr().out

    assert cli([*args, "--resume"]) == 0
    capsys.readouterr()
    after = open_pairs(store)
    assert after.complete and not after.aborted
    assert after.fields == list(range(fields))  # each field once: resumed at the dropped one
    assert len(after.pairs) == 2 * fields
    np.testing.assert_array_equal(np.array(after.low[: len(kept)]), kept)


@pytest.mark.parametrize("mode", ["sequence", "snap"])
def test_live_recorder_abort_stops_the_camera_and_keeps_every_frame_taken(
    tmp_path: Path, mode: str
) -> None:
    store = tmp_path / "r.ome.zarr"
    exposures = [EXPOSURE_MS] * 2 if mode == "sequence" else [EXPOSURE_MS, EXPOSURE_MS + 0.5]
    events = [{"axes": {"time": i}, "exposure": exposures[i % 2]} for i in range(5000)]
    with simulated_microscope(size=32, seed=4) as scope:
        live = LiveRecorder(store, exposure_ms=EXPOSURE_MS, **scope.recorder_settings())
        handed_over = threading.Semaphore(0)
        process = live.process

        def counting(image: np.ndarray, metadata: Any) -> Any:
            out = process(image, metadata)
            handed_over.release()
            return out

        hooks = {**live.acquisition_kwargs(), "image_process_fn": counting}
        with Acquisition(directory=None, show_display=False, **hooks) as acq:
            acq.acquire(events)
            for _ in range(40):
                assert handed_over.acquire(timeout=HANG_S)
            button = threading.Thread(target=live.abort, args=(acq,))  # a GUI's stop button
            button.start()
            button.join(HANG_S)
        assert live.aborted
        assert not scope.core.isSequenceRunning()
        assert scope.camera is not None
        taken = scope.camera.frame_log[-1].frame_id + 1
        live.close()  # inside the session: frames left in the core's buffer are recorded too
    s = open_store(store)
    assert s.complete and s.aborted
    assert 40 <= s.n_frames < 40 + AFTER_SIGNAL
    assert s.n_frames == taken  # every frame the camera finished is in the store
    assert [row.extra["sim_frame_id"] for row in s.frames] == list(range(taken))


@pytest.mark.slow
def test_ctrl_c_stops_the_demo(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    child = start(
        "demo", "--out", str(out), "--frames", "2000", "--size", "64", "--model", "fast",
        "--interval-ms", "10", "--json",
    )  # fmt: skip
    store = out / "demo.ome.zarr"
    stdout, err, _ = interrupt_when(child, lambda: len(logged(store, "frame")) >= MAX_SHARD_FRAMES)
    assert child.returncode == 130, err
    result = json.loads(stdout)
    assert result["aborted"] is True and 0 < result["frames"] < 2000
    s = open_store(store)
    assert s.aborted and s.n_frames == result["frames"]
    assert all(row.denoised or row.skipped for row in s.frames)
    os.stat(result["picture"])  # the picture was still made from what was recorded


def test_frames_left_by_an_earlier_aborted_acquisition_stay_out_of_a_later_store(
    tmp_path: Path,
) -> None:
    from acquisition_hooks._engine import abort_acquisition

    events = [{"axes": {"time": i}, "exposure": EXPOSURE_MS} for i in range(5000)]
    with simulated_microscope(size=32, seed=5) as scope:
        assert scope.camera is not None
        seen = threading.Semaphore(0)
        first = Acquisition(
            directory=None, show_display=False, image_process_fn=lambda i, m: seen.release()
        )
        with first:  # aborted with no recorder to take what it leaves in the core
            first.acquire(events)
            assert seen.acquire(timeout=HANG_S)
            abort_acquisition(first)
        start = scope.camera.frame_log[-1].frame_id + 1
        store = tmp_path / "later.ome.zarr"
        with LiveRecorder(store, exposure_ms=EXPOSURE_MS, **scope.recorder_settings()) as live:
            handed_over = threading.Semaphore(0)
            process = live.process

            def counting(image: np.ndarray, metadata: Any) -> Any:
                handed_over.release()
                return process(image, metadata)

            hooks = {**live.acquisition_kwargs(), "image_process_fn": counting}
            with Acquisition(directory=None, show_display=False, **hooks) as acq:
                acq.acquire(events)
                assert handed_over.acquire(timeout=HANG_S)
                live.abort(acq)
            taken = scope.camera.frame_log[-1].frame_id + 1
    ids = [row.extra["sim_frame_id"] for row in open_store(store).frames]
    assert ids == list(range(start, taken))
