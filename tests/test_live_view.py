"""Live mode: the live view (a continuous sequence acquisition) denoised on both stacks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from acquisition_hooks import LiveRecorder, simulated_microscope
from acquisition_hooks.live_view import live_view
from acquisition_hooks.session import Stack
from tem_acq.cli import main as cli
from tem_acq.store import open_store

STACKS: tuple[Stack, ...] = ("pycromanager", "pymmcore-plus")


@pytest.mark.parametrize("stack", STACKS)
def test_live_view_records_every_frame_the_camera_took(stack: Stack, tmp_path: Path) -> None:
    store = tmp_path / "live.ome.zarr"
    with simulated_microscope(stack=stack, size=64, exposure_ms=5.0) as scope:
        with LiveRecorder(store, exposure_ms=5.0, **scope.recorder_settings()) as rec:
            with live_view(scope, recorder=rec) as view:
                time.sleep(1.0)
                t0 = time.perf_counter()
            stopped_s = time.perf_counter() - t0
        assert scope.camera is not None
        taken = scope.camera.frame_log[-1].frame_id + 1
    s = view.stats
    assert stopped_s < 0.5
    assert s.seen == s.recorded == taken > 50
    with open_store(store) as opened:
        assert opened.n_frames == taken
        ids = [r.extra["sim_frame_id"] for r in opened.frames]
    assert ids == list(range(taken))  # none lost, in order


@pytest.mark.parametrize("stack", STACKS)
def test_live_view_without_recording_denoises_the_newest_frame(
    stack: Stack, tmp_path: Path, fast_pkg: Path
) -> None:
    got: list[tuple[int, np.ndarray]] = []
    lock = threading.Lock()

    def show(index: int, frame: np.ndarray) -> None:
        with lock:
            got.append((index, frame))

    with simulated_microscope(stack=stack, size=64, exposure_ms=5.0) as scope:
        with live_view(scope, model=str(fast_pkg), device="cpu", on_denoised=show) as view:
            time.sleep(1.0)
            t0 = time.perf_counter()
        stopped_s = time.perf_counter() - t0
        assert not scope.core.isSequenceRunning()
    s = view.stats
    assert stopped_s < 0.5
    assert s.denoised == len(got) > 5 and s.recorded == 0
    assert s.seen >= s.denoised
    assert all(f.shape == (64, 64) and f.dtype == np.float32 for _, f in got)
    assert [i for i, _ in got] == sorted(i for i, _ in got)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_live_command_records_and_reports(
    tmp_path: Path, fast_pkg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "l.ome.zarr"
    args = ["live", "--simulated", "--stack", "pymmcore-plus", "--seconds", "1", "--size", "64"]
    code = cli([*args, "--exposure-ms", "10", "--model", str(fast_pkg), "--out", str(out)])
    assert code == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "frames seen" in line and "recorded" in line and "fps" in line
    seen = int(line.split(": ")[1].split(" frames seen")[0])
    with open_store(out) as opened:
        assert opened.n_frames == seen > 20


class _SlowDenoiser:
    """A model that takes a second per frame (a big network on a small CPU)."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def denoise(self, frame: np.ndarray, **_: object) -> np.ndarray:
        self.started.set()
        time.sleep(1.0)
        return np.asarray(frame, np.float32)


def test_stop_stops_the_camera_at_once_even_while_a_slow_model_runs() -> None:
    slow = _SlowDenoiser()
    with simulated_microscope(stack="pymmcore-plus", size=64, exposure_ms=5.0) as scope:
        with live_view(scope, model=slow, counts_per_electron=1.0) as view:
            assert slow.started.wait(5.0)  # the model is in the middle of a frame now
            stopper = threading.Thread(target=view.stop)
            t0 = time.perf_counter()
            stopper.start()
            while scope.core.isSequenceRunning():
                time.sleep(0.005)
            camera_stopped = time.perf_counter() - t0
            stopper.join()
        assert camera_stopped < 0.25  # the camera did not wait for the model's second


def test_a_block_policy_recorder_never_holds_the_live_camera(tmp_path: Path) -> None:
    from acquisition_hooks.live_view import LiveViewRecorder

    class Slow:
        def denoise(self, frames: np.ndarray, **_: object) -> np.ndarray:
            time.sleep(0.1)
            return np.asarray(frames, np.float32)

    store = tmp_path / "live.ome.zarr"
    with simulated_microscope(stack="pymmcore-plus", size=64, exposure_ms=5.0) as scope:
        settings = scope.recorder_settings()
        with LiveViewRecorder(store, exposure_ms=5.0, model=Slow(), policy="block",
                              quality_every_s=None, **settings) as rec:  # fmt: skip
            with pytest.warns(RuntimeWarning, match="cannot hold"):
                with live_view(scope, recorder=rec) as view:
                    time.sleep(1.0)
        taken = int(scope.camera.last_frame_tags()["TEM-FrameId"]) + 1
    summary = rec.summary
    assert view.stats.recorded == taken and open_store(store).n_frames == taken  # every frame
    assert summary.skipped > 0  # the denoiser fell behind: frames skipped, the camera not held
    assert open_store(store).metadata.protocol.backend == "live view"
