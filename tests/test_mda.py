"""Live recording on pymmcore-plus' MDA engine: real UniMMCore, real useq sequences.

Every run goes through ``core.mda.run(sequence, output=recorder)`` on the simulated microscope
(``stack="pymmcore-plus"``), 64x64 px frames, ``real_time=False`` unless pacing is the point.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import useq

from acquisition_hooks.mda import MDARecorder
from acquisition_hooks.session import simulated_microscope
from tem_acq.pipeline import SKIP_BUSY
from tem_acq.store import open_store

SIZE = 64


@pytest.fixture
def scope() -> Iterator[Any]:
    with simulated_microscope(stack="pymmcore-plus", size=SIZE, real_time=False, seed=3) as s:
        yield s


def recorder(scope: Any, path: Path, **settings: Any) -> MDARecorder:
    """An MDARecorder on the session's core with the simulated camera's settings."""
    kwargs = {**scope.recorder_settings(), "exposure_ms": 2.0, "quality_every_s": None}
    kwargs.update(settings)
    return MDARecorder(path, core=scope.core, camera_tags=scope.camera.last_frame_tags, **kwargs)


class SlowDenoiser:
    """A real (trivial) denoiser that takes ``seconds`` per call: electrons = counts / cpe."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def denoise(self, frames: np.ndarray, *, counts_per_electron: float = 1.0) -> np.ndarray:
        time.sleep(self.seconds)
        self.calls += 1
        return np.asarray(frames, dtype=np.float32) / counts_per_electron


def test_a_time_and_grid_sequence_records_every_frame_with_its_place(
    scope: Any, tmp_path: Path
) -> None:
    sequence = useq.MDASequence(
        time_plan={"interval": 0, "loops": 3},
        grid_plan={"rows": 1, "columns": 2, "fov_width": 4.0, "fov_height": 4.0},
        z_plan={"range": 2.0, "step": 1.0},
        axis_order="tgz",
    )
    path = tmp_path / "tgz.ome.zarr"
    with recorder(scope, path, model=SlowDenoiser(0.0)) as live:
        scope.core.mda.run(sequence, output=live)
    store = open_store(path)
    assert store.complete and store.n_frames == 18 == len(list(sequence))
    meta = store.metadata
    assert meta.protocol.backend == "pymmcore-plus"
    assert meta.software.pymmcore_plus and "useq-schema" in meta.software.other
    assert meta.axes is not None and meta.axes.sizes == {"t": 3, "g": 2, "z": 3}
    assert meta.axes.sequence is not None and meta.axes.sequence["time_plan"]["loops"] == 3
    rows = store.frames
    events = list(sequence)
    assert [row.axes for row in rows] == [dict(e.index) for e in events]  # acquisition order
    for row, event in zip(rows, events, strict=True):
        assert row.stage_x_um == pytest.approx(event.x_pos, abs=0.01)  # the grid's positions
        assert row.stage_z_um == pytest.approx(event.z_pos, abs=0.01)
        assert row.exposure_ms == 2.0 and row.dose_e_per_px is not None
        assert "sim_frame_id" in row.extra  # the camera's own tags, also for snaps
    assert len({row.stage_x_um for row in rows}) == 2
    elapsed = [row.elapsed_ms for row in rows]
    assert all(b >= a for a, b in itertools.pairwise(elapsed))
    view = store.hyperstack()
    assert view.dims == ("t", "g", "z", "y", "x") and view.shape == (3, 2, 3, SIZE, SIZE)
    index = next(i for i, e in enumerate(events) if dict(e.index) == {"t": 2, "g": 1, "z": 0})
    np.testing.assert_array_equal(view[2, 1, 0], store.raw[index])
    den = store.hyperstack("denoised")
    assert np.isfinite(den[2, 1, 0]).all() or store.frames[index].skipped
    info = store.info()
    assert info["axes"] == {"t": 3, "g": 2, "z": 3} and info["frames_placed"] == 18


def test_a_position_plan_records_names(scope: Any, tmp_path: Path) -> None:
    sequence = useq.MDASequence(
        stage_positions=[{"x": 0, "y": 0, "name": "hole"}, {"x": 5, "y": 5, "name": "film"}],
        time_plan={"interval": 0, "loops": 2},
    )
    path = tmp_path / "pt.ome.zarr"
    with recorder(scope, path) as live:
        scope.core.mda.run(sequence, output=live)
    store = open_store(path)
    assert [row.position_name for row in store.frames] == [e.pos_name for e in sequence]
    assert store.info()["positions"] == ["film", "hole"]
    assert store.hyperstack().shape[:2] == (2, 2)


def test_skip_keeps_every_raw_frame_and_never_holds_the_camera(scope: Any, tmp_path: Path) -> None:
    slow = SlowDenoiser(0.05)
    sequence = useq.MDASequence(time_plan={"interval": 0, "loops": 60})  # a hardware sequence
    path = tmp_path / "skip.ome.zarr"
    with recorder(scope, path, model=slow, policy="skip") as live:
        started = time.perf_counter()
        scope.core.mda.run(sequence, output=live)
        run_s = time.perf_counter() - started
    store = open_store(path)
    assert store.n_frames == 60 and store.complete
    assert len(store.skipped) > 20 and set(store.skipped.values()) == {SKIP_BUSY}
    assert run_s < 60 * slow.seconds / 2  # the camera did not wait for the denoiser
    ids = [int(row.extra["sim_frame_id"]) for row in store.frames]
    assert ids == list(range(ids[0], ids[0] + 60))  # no raw frame lost, in order


def test_block_makes_snaps_wait_and_denoises_every_frame(scope: Any, tmp_path: Path) -> None:
    slow = SlowDenoiser(0.03)
    # a grid plan: every frame a snap at its own position, so the camera can wait
    sequence = useq.MDASequence(
        grid_plan={"rows": 4, "columns": 5, "fov_width": 1.0, "fov_height": 1.0}
    )
    path = tmp_path / "block.ome.zarr"
    with recorder(scope, path, model=slow, policy="block") as live:
        started = time.perf_counter()
        scope.core.mda.run(sequence, output=live)
        run_s = time.perf_counter() - started
    store = open_store(path)
    assert store.n_frames == 20 and store.denoised_frames == 20 and not store.skipped
    assert live.summary.denoised == 20 and slow.calls == 20
    # the runner waited for the denoiser: the run took (nearly) all the denoising time
    assert run_s > (20 - 8) * slow.seconds


def test_abort_cancels_the_run_and_keeps_every_frame_taken(tmp_path: Path) -> None:
    with simulated_microscope(stack="pymmcore-plus", size=SIZE, real_time=True) as scope:
        sequence = useq.MDASequence(time_plan={"interval": 0, "loops": 2000})
        path = tmp_path / "abort.ome.zarr"
        with recorder(scope, path) as live:
            def abort_when_running() -> None:  # after 20 frames, however slow the start
                deadline = time.perf_counter() + 30.0
                while live.summary.frames < 20 and time.perf_counter() < deadline:
                    time.sleep(0.005)
                aborted_at.append(time.perf_counter())
                live.abort()

            aborted_at: list[float] = []

            timer = threading.Thread(target=abort_when_running)
            timer.start()
            scope.core.mda.run(sequence, output=live)
            stopped_s = time.perf_counter() - aborted_at[0]
            timer.join()
        taken = scope.camera.last_frame_tags()
    store = open_store(path)
    assert store.aborted and store.closed and 10 < store.n_frames < 2000
    assert stopped_s < 1.0  # from the abort to the end of the run (2000 frames take 4 s)
    ids = [int(row.extra["sim_frame_id"]) for row in store.frames]
    assert ids == list(range(ids[0], ids[0] + store.n_frames))
    assert ids[-1] == int(taken["TEM-FrameId"])  # up to the camera's last frame


def test_a_second_sequence_is_refused_after_the_first_is_recorded(
    scope: Any, tmp_path: Path
) -> None:
    from tem_acq.errors import AcquisitionError

    path = tmp_path / "two.ome.zarr"
    live = recorder(scope, path)
    scope.core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 3}), output=live)
    scope.core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 3}), output=live)
    with pytest.raises(AcquisitionError, match="one sequence"):
        live.close()
    assert open_store(path).n_frames >= 3
