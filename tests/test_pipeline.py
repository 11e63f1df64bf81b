"""FramePipeline on its own: fake sinks and denoisers, every policy, slow disks, failures.

No camera and no sleeps: each fake waits at a gate the test opens, and a test that needs the
submitting thread to be waiting checks that it is parked in a wait (``wait_until_parked``)
before it lets anything move. Timeouts are hang guards only.
"""

from __future__ import annotations

import math
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acquisition_hooks import LiveRecorder
from tem_acq.errors import AcquisitionError, DenoiserFailedError, StoreError
from tem_acq.pipeline import SKIP_NOT_STORED, FramePipeline
from tem_acq.store import AcquisitionWriter, FrameRecord, open_store

HANG_S = 30.0  # only a hang guard: every wait below ends on an event long before
SHAPE = (4, 6)
CPE = 4.0
BUSY = "denoiser busy: newer frame shown"
SEQUENCE = "denoiser busy during a sequence"
FAILED = "denoiser failed"


def frame(index: int) -> np.ndarray:
    """A raw frame whose pixels hold its index (so a fake denoiser can tell which it got)."""
    return np.full(SHAPE, index, dtype=np.uint16)


def indices(frames: np.ndarray) -> list[int]:
    return [int(f[0, 0]) for f in frames]


def transform(frames: np.ndarray, counts_per_electron: float) -> np.ndarray:
    """What every fake denoiser returns: known, and different from the raw frame."""
    return frames.astype(np.float32) / counts_per_electron + 0.5


class Gate:
    """Lets a fake proceed only as often as the test allows (``allow``), or always (``open``)."""

    def __init__(self) -> None:
        self._permits = 0.0
        self._changed = threading.Condition()

    def allow(self, n: int = 1) -> None:
        with self._changed:
            self._permits += n
            self._changed.notify_all()

    def open(self) -> None:
        with self._changed:
            self._permits = math.inf
            self._changed.notify_all()

    def pass_(self) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self._permits > 0, HANG_S), "gate never opened"
            self._permits -= 1


class MemorySink:
    """An in-memory sink with the writer's interface and the store's checks.

    Like :class:`tem_acq.store.AcquisitionWriter`, it refuses a result for a frame not yet
    appended or already resolved; with a ``disk`` gate every raw write waits for a permit
    (a disk as slow as the test wants).
    """

    def __init__(self, disk: Gate | None = None) -> None:
        self.raw: list[np.ndarray] = []
        self.records: list[Any] = []
        self.denoised: dict[int, np.ndarray] = {}
        self.latencies: dict[int, float] = {}
        self.skipped: dict[int, str] = {}
        self.errors: list[str] = []
        self.closed = False
        self.aborted = False
        self.error_recorded = threading.Event()
        self._disk = disk

    def append_raw(self, frame: np.ndarray, record: Any) -> int:
        assert not self.closed
        if self._disk is not None:
            self._disk.pass_()
        self.raw.append(frame.copy())
        self.records.append(record)
        return len(self.raw) - 1

    def write_denoised(self, index: int, frame: np.ndarray, latency_ms: float) -> None:
        self._resolve(index)
        self.denoised[index] = np.array(frame)
        self.latencies[index] = latency_ms

    def mark_skipped(self, index: int, reason: str) -> None:
        self._resolve(index)
        self.skipped[index] = reason

    def record_error(self, message: str) -> None:
        self.errors.append(message)
        self.error_recorded.set()

    def close(self, *, aborted: bool = False) -> None:
        self.closed = True
        self.aborted = aborted

    def _resolve(self, index: int) -> None:
        assert 0 <= index < len(self.raw), f"frame {index} resolved before it was appended"
        assert index not in self.denoised and index not in self.skipped, f"{index} resolved twice"


class InstantDenoiser:
    """Returns the known transform at once; remembers each call's frames and factor."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.factors: list[float] = []

    def denoise(self, frames: np.ndarray, *, counts_per_electron: float = 1.0) -> np.ndarray:
        self.calls.append(indices(frames))
        self.factors.append(counts_per_electron)
        return transform(frames, counts_per_electron)


class SlowDenoiser(InstantDenoiser):
    """A denoiser as slow as the test wants: each call announces its frames, then waits.

    ``next_call()`` returns the frames of the next call once it has started; ``gate.allow()``
    lets one call finish, ``gate.open()`` all of them.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate = Gate()
        self._started: list[list[int]] = []
        self._changed = threading.Condition()

    def denoise(self, frames: np.ndarray, *, counts_per_electron: float = 1.0) -> np.ndarray:
        with self._changed:
            self._started.append(indices(frames))
            self._changed.notify_all()
        self.gate.pass_()
        return super().denoise(frames, counts_per_electron=counts_per_electron)

    def next_call(self) -> list[int]:
        with self._changed:
            assert self._changed.wait_for(lambda: self._started, HANG_S), "denoiser never called"
            return self._started.pop(0)


class RaisingDenoiser(InstantDenoiser):
    """Fails on its second call, as a GPU running out of memory would."""

    def denoise(self, frames: np.ndarray, *, counts_per_electron: float = 1.0) -> np.ndarray:
        if len(self.calls) == 1:
            raise RuntimeError("CUDA out of memory (injected)")
        return super().denoise(frames, counts_per_electron=counts_per_electron)


class Call(threading.Thread):
    """Runs ``fn(*args)`` on a thread of its own: a camera thread that may be kept waiting."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        super().__init__(daemon=True)
        self._fn, self._args = fn, args
        self._result: Any = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._result = self._fn(*self._args)
        except BaseException as exc:
            self._error = exc

    def outcome(self) -> Any:
        """The call's result (or its exception, raised here) once it has returned."""
        self.join(HANG_S)
        assert not self.is_alive(), "the call never returned"
        if self._error is not None:
            raise self._error
        return self._result


def submit(pipeline: FramePipeline, index: int) -> int:
    """Submit frame ``index`` and return at once (hang-guarded: fails if the call waits)."""
    return Call(pipeline.submit, frame(index), {"i": index}).outcome()  # type: ignore[no-any-return]


def wait_until_parked(call: Call) -> None:
    """Return once ``call``'s thread is parked in a ``threading`` wait (a condition or event).

    Unlike a sleep this is certain: the test then knows the call is waiting, not merely not
    yet finished. Fails at once if the call returns instead.
    """
    deadline = time.monotonic() + HANG_S
    while time.monotonic() < deadline:
        if not call.is_alive():
            call.outcome()  # raises what it raised
            raise AssertionError("the call returned instead of waiting")
        top = sys._current_frames().get(call.ident or -1)
        if top is not None and top.f_code.co_name == "wait":
            if top.f_code.co_filename == threading.__file__:
                return
        time.sleep(0.001)
    raise AssertionError("the call neither waited nor returned")


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG_S
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        time.sleep(0.001)


def assert_every_raw_frame_in_order(sink: MemorySink, n: int) -> None:
    assert len(sink.raw) == n
    for i, raw in enumerate(sink.raw):
        np.testing.assert_array_equal(raw, frame(i))
    assert sink.records == [{"i": i} for i in range(n)]
    assert sink.closed


def assert_denoised_correctly(sink: MemorySink) -> None:
    for index, denoised in sink.denoised.items():
        np.testing.assert_array_equal(denoised, transform(frame(index)[None], CPE)[0])
        assert sink.latencies[index] >= 0


# -- policy "skip" ----------------------------------------------------------------------------


@pytest.mark.parametrize("max_batch", [1, 3])
def test_skip_writes_every_raw_frame_in_order_and_resolves_each_once(max_batch: int) -> None:
    sink, denoiser = MemorySink(), InstantDenoiser()
    pipeline = FramePipeline(
        sink, denoiser=denoiser, counts_per_electron=CPE, policy="skip", max_batch=max_batch
    )
    for i in range(40):
        assert pipeline.submit(frame(i), {"i": i}) == i
    summary = pipeline.close()
    assert_every_raw_frame_in_order(sink, 40)
    assert set(sink.denoised) | set(sink.skipped) == set(range(40))  # disjoint: the sink checks
    assert summary.frames == 40
    assert summary.denoised == len(sink.denoised) and summary.skipped == len(sink.skipped)
    assert summary.denoised + summary.skipped == summary.frames
    assert 39 in sink.denoised  # the newest frame is always shown
    assert set(sink.skipped.values()) <= {BUSY}
    assert_denoised_correctly(sink)
    assert denoiser.factors and set(denoiser.factors) == {CPE}
    assert all(1 <= len(call) <= max_batch for call in denoiser.calls)
    assert summary.errors == [] and sink.errors == []
    assert summary.latency_ms_p50 is not None and summary.latency_ms_p95 is not None


def test_skip_with_a_slow_denoiser_denoises_the_newest_frames_and_marks_the_rest(
    tmp_path: Path, metadata: Callable[..., Any]
) -> None:
    """Against the real store writer: the per-frame table says which frames were skipped."""
    path = tmp_path / "run.ome.zarr"
    writer = AcquisitionWriter(path, metadata(), SHAPE)
    denoiser = SlowDenoiser()
    pipeline = FramePipeline(
        writer, denoiser=denoiser, counts_per_electron=CPE, policy="skip", max_batch=2
    )
    pipeline.submit(frame(0), FrameRecord(extra={"i": 0}))
    assert denoiser.next_call() == [0]
    for i in range(1, 7):  # the camera runs on while frame 0 is being denoised
        pipeline.submit(frame(i), FrameRecord(extra={"i": i}))
    denoiser.gate.open()
    summary = pipeline.close()
    assert denoiser.calls == [[0], [5, 6]]  # the newest two; 1-4 are stale by then
    assert (summary.frames, summary.denoised, summary.skipped) == (7, 3, 4)
    assert summary.max_pending_frames == 6
    store = open_store(path)
    assert store.complete and store.errors == []
    np.testing.assert_array_equal(store.raw[:], np.stack([frame(i) for i in range(7)]))
    assert [row.extra for row in store.frames] == [{"i": i} for i in range(7)]
    assert [row.skipped for row in store.frames] == [None, BUSY, BUSY, BUSY, BUSY, None, None]
    assert [row.denoised for row in store.frames] == [True, False, False, False, False, True, True]
    assert all(row.denoise_latency_ms is not None for row in store.frames if row.denoised)
    assert store.denoised is not None
    for i in (0, 5, 6):
        np.testing.assert_array_equal(store.denoised[i], transform(frame(i)[None], CPE)[0])
    assert np.isnan(store.denoised[1:5]).all()


# -- policy "block" ---------------------------------------------------------------------------


def block_pipeline(denoiser: InstantDenoiser, **settings: Any) -> tuple[FramePipeline, MemorySink]:
    """A ``"block"`` pipeline from ``denoiser`` into a new memory sink."""
    sink = MemorySink()
    pipeline = FramePipeline(
        sink, denoiser=denoiser, counts_per_electron=CPE, policy="block", **settings
    )
    return pipeline, sink


def busy_block_pipeline(
    max_pending_frames: int,
) -> tuple[FramePipeline, MemorySink, SlowDenoiser]:
    """A ``"block"`` pipeline whose slow denoiser has started on frame 0 and waits."""
    denoiser = SlowDenoiser()
    pipeline, sink = block_pipeline(denoiser, max_pending_frames=max_pending_frames)
    assert submit(pipeline, 0) == 0
    assert denoiser.next_call() == [0]
    return pipeline, sink, denoiser


def test_block_denoises_every_frame_in_order() -> None:
    denoiser = InstantDenoiser()
    pipeline, sink = block_pipeline(denoiser, max_batch=4, max_pending_frames=2)
    for i in range(30):
        pipeline.submit(frame(i), {"i": i})
    summary = pipeline.close()
    assert_every_raw_frame_in_order(sink, 30)
    assert (summary.frames, summary.denoised, summary.skipped) == (30, 30, 0)
    assert sink.skipped == {} and sorted(sink.denoised) == list(range(30))
    assert [i for call in denoiser.calls for i in call] == list(range(30))  # oldest first
    assert_denoised_correctly(sink)


def test_block_makes_the_submitting_thread_wait_for_the_denoiser() -> None:
    pipeline, sink, denoiser = busy_block_pipeline(max_pending_frames=2)
    assert [submit(pipeline, 1), submit(pipeline, 2)] == [1, 2]  # room for two waiting frames
    assert pipeline.summary.backpressure_waits == 0
    third = Call(pipeline.submit, frame(3), {"i": 3})
    wait_until_parked(third)
    assert pipeline.summary.backpressure_waits >= 1
    assert third.is_alive() and sink.denoised == {}  # nothing freed a place yet
    denoiser.gate.allow()  # frame 0 done; frame 1 goes to the denoiser: room for frame 3
    assert denoiser.next_call() == [1]
    assert third.outcome() == 3
    denoiser.gate.open()
    summary = pipeline.close()
    assert denoiser.calls == [[0], [1], [2], [3]]
    assert (summary.frames, summary.denoised, summary.skipped) == (4, 4, 0)
    assert_every_raw_frame_in_order(sink, 4)
    assert_denoised_correctly(sink)


def test_block_writes_raw_frames_while_the_submitter_waits() -> None:
    """A stuck denoiser parks the camera under block, but never the raw frames already in."""
    pipeline, sink, denoiser = busy_block_pipeline(max_pending_frames=2)
    submit(pipeline, 1)
    submit(pipeline, 2)
    third = Call(pipeline.submit, frame(3), {"i": 3})
    wait_until_parked(third)
    wait_for(lambda: len(sink.raw) == 4)  # frame 3 too: it is queued before the wait
    assert third.is_alive() and sink.denoised == {}
    denoiser.gate.open()
    assert third.outcome() == 3
    pipeline.close()
    assert_every_raw_frame_in_order(sink, 4)


def test_block_falls_back_to_skipping_while_a_hardware_sequence_runs() -> None:
    pipeline, sink, denoiser = busy_block_pipeline(max_pending_frames=2)
    pipeline.set_camera_can_wait(False)  # what the recorder's hook says for a sequence
    with pytest.warns(RuntimeWarning) as caught:
        # none of these waits (``submit`` fails if one does): the oldest waiting frame goes
        assert [submit(pipeline, i) for i in range(1, 6)] == [1, 2, 3, 4, 5]
    assert len(caught) == 1  # three frames skipped, one warning
    assert "policy 'block' cannot hold a hardware sequence" in str(caught[0].message)
    wait_for(lambda: len(sink.skipped) == 3)  # the writer thread marks them
    assert sink.skipped == {1: SEQUENCE, 2: SEQUENCE, 3: SEQUENCE}
    pipeline.set_camera_can_wait(True)  # the sequence ended: snaps can wait again
    sixth = Call(pipeline.submit, frame(6), {"i": 6})
    wait_until_parked(sixth)
    denoiser.gate.open()
    assert sixth.outcome() == 6
    summary = pipeline.close()
    assert denoiser.calls == [[0], [4], [5], [6]]
    assert (summary.frames, summary.denoised, summary.skipped) == (7, 4, 3)
    assert sink.skipped == {1: SEQUENCE, 2: SEQUENCE, 3: SEQUENCE}
    assert_every_raw_frame_in_order(sink, 7)
    assert_denoised_correctly(sink)


def test_block_warns_once_for_all_the_sequences_of_a_run() -> None:
    pipeline, sink, denoiser = busy_block_pipeline(max_pending_frames=1)
    with pytest.warns(RuntimeWarning) as caught:
        for sequence in range(2):
            pipeline.set_camera_can_wait(False)
            for i in range(1 + 3 * sequence, 4 + 3 * sequence):
                submit(pipeline, i)
            pipeline.set_camera_can_wait(True)
    assert [str(w.message).count("cannot hold a hardware sequence") for w in caught] == [1]
    denoiser.gate.open()
    summary = pipeline.close()
    assert (summary.frames, summary.denoised, summary.skipped) == (7, 2, 5)
    assert sink.skipped == {i: SEQUENCE for i in range(1, 6)}


def test_the_recorders_hardware_hook_switches_block_to_skipping_and_back(
    tmp_path: Path,
) -> None:
    """How the pipeline learns of a sequence: pycro-manager hands the hook a list of events."""
    path = tmp_path / "seq.ome.zarr"
    denoiser = SlowDenoiser()
    live = LiveRecorder(
        path, pixel_size_A=30.0, counts_per_electron=CPE, exposure_ms=1.0, model=denoiser,
        policy="block", max_batch=1,
    )
    sequence = [{"axes": {"time": 0}}, {"axes": {"time": 1}}]
    assert live.post_hardware_hook(sequence) is sequence
    live.process(frame(0), {})
    assert denoiser.next_call() == [0]
    waiting_room = 8  # the recorder's pipeline holds 8 frames for the denoiser
    with pytest.warns(RuntimeWarning, match=r"cannot hold a hardware sequence"):
        for i in range(1, waiting_room + 3):
            Call(live.process, frame(i), {}).outcome()  # never waits during the sequence
    snap = {"axes": {"time": 0}}
    assert live.post_hardware_hook(snap) is snap
    waiting = Call(live.process, frame(waiting_room + 3), {})
    wait_until_parked(waiting)  # a snap: the camera waits for the denoiser again
    denoiser.gate.open()
    waiting.outcome()
    summary = live.close()
    assert (summary.frames, summary.denoised, summary.skipped) == (12, 10, 2)
    rows = open_store(path).frames
    assert [row.index for row in rows if row.skipped] == [1, 2]
    assert {row.skipped for row in rows if row.skipped} == {SEQUENCE}


# -- a slow disk ------------------------------------------------------------------------------


def test_a_slow_disk_slows_the_submitter_drops_nothing_and_warns_once() -> None:
    disk = Gate()
    sink = MemorySink(disk)
    pipeline = FramePipeline(sink, max_pending_bytes=2 * frame(0).nbytes)
    with pytest.warns(RuntimeWarning) as caught:
        assert [submit(pipeline, 0), submit(pipeline, 1)] == [0, 1]  # within the limit
        third = Call(pipeline.submit, frame(2), {"i": 2})
        wait_until_parked(third)
        assert sink.raw == [] and pipeline.pending_frames == 2  # the disk has not moved
        disk.allow()  # frame 0 reaches the disk: room for frame 2
        assert third.outcome() == 2
        fourth = Call(pipeline.submit, frame(3), {"i": 3})
        wait_until_parked(fourth)  # the disk is stuck on frame 1 now
        disk.allow()
        assert fourth.outcome() == 3
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and all(w.category is RuntimeWarning for w in caught)
    assert "the store writer cannot keep up with the camera" in messages[0]
    assert "slowed to keep every raw frame" in messages[0]
    disk.open()
    summary = pipeline.close()
    assert summary.backpressure_waits == 2
    assert summary.frames == 4
    assert_every_raw_frame_in_order(sink, 4)


def test_a_failing_disk_stops_the_run_with_a_clear_error() -> None:
    class FullDisk(MemorySink):
        def append_raw(self, frame: np.ndarray, record: Any) -> int:
            if self.raw:
                raise StoreError("disk full (injected)")
            return super().append_raw(frame, record)

    sink = FullDisk()
    pipeline = FramePipeline(sink)
    pipeline.submit(frame(0), {"i": 0})
    pipeline.submit(frame(1), {"i": 1})
    with pytest.raises(AcquisitionError, match=r"after 1 raw frames were written.*disk full"):
        pipeline.close()
    assert len(sink.raw) == 1 and sink.closed  # closed best effort: frame 0 stays readable
    with pytest.raises(AcquisitionError, match="closed"):
        pipeline.submit(frame(2), {"i": 2})


# -- a denoiser that fails --------------------------------------------------------------------


def test_a_denoiser_that_raises_stops_denoising_never_raw_recording() -> None:
    pipeline, sink = block_pipeline(RaisingDenoiser(), max_pending_frames=100)
    for i in range(3):
        pipeline.submit(frame(i), {"i": i})
    assert sink.error_recorded.wait(HANG_S)  # the second call (frame 1) failed
    for i in range(3, 6):  # the camera goes on: raw frames are still recorded
        pipeline.submit(frame(i), {"i": i})
    with pytest.raises(DenoiserFailedError, match=r"CUDA out of memory.*all 6 raw frames") as info:
        pipeline.close()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert_every_raw_frame_in_order(sink, 6)  # closed before raising: every raw frame is safe
    assert list(sink.denoised) == [0]
    assert sink.skipped == {i: FAILED for i in range(1, 6)}
    message = "denoiser failed on frame 1: RuntimeError('CUDA out of memory (injected)')"
    assert sink.errors == [message]
    summary = pipeline.summary
    assert (summary.frames, summary.denoised, summary.skipped) == (6, 1, 5)
    assert summary.errors == [message]
    assert_denoised_correctly(sink)


def test_skip_holds_only_the_newest_frames_while_the_denoiser_is_busy() -> None:
    """A denoiser that stops answering under "skip" holds no more frames than its room."""
    denoiser = SlowDenoiser()
    sink = MemorySink()
    pipeline = FramePipeline(
        sink, denoiser=denoiser, counts_per_electron=CPE, policy="skip", max_pending_frames=3
    )
    submit(pipeline, 0)
    assert denoiser.next_call() == [0]  # busy from now on
    for i in range(1, 11):
        submit(pipeline, i)  # never waits
    wait_for(lambda: len(sink.skipped) == 7)
    assert sink.skipped == {i: BUSY for i in range(1, 8)}  # skipped as they fell out of room
    assert pipeline.summary.max_pending_frames == 3
    denoiser.gate.open()
    summary = pipeline.close()
    assert denoiser.calls == [[0], [10]]
    assert (summary.frames, summary.denoised, summary.skipped) == (11, 2, 9)
    assert_every_raw_frame_in_order(sink, 11)


def test_a_sink_refusing_a_denoised_frame_stops_denoising_never_raw_recording() -> None:
    class RefusesFrame2(MemorySink):
        def write_denoised(self, index: int, frame: np.ndarray, latency_ms: float) -> None:
            if index == 2:
                raise StoreError("denoised frame 2 is (3, 6) float32 (injected)")
            super().write_denoised(index, frame, latency_ms)

    sink = RefusesFrame2()
    pipeline = FramePipeline(sink, denoiser=InstantDenoiser(), policy="block", max_batch=1)
    for i in range(3):
        pipeline.submit(frame(i), {"i": i})
    assert sink.error_recorded.wait(HANG_S)
    for i in range(3, 6):
        pipeline.submit(frame(i), {"i": i})
    with pytest.raises(DenoiserFailedError, match=r"injected.*all 6 raw frames"):
        pipeline.close()
    assert_every_raw_frame_in_order(sink, 6)
    assert sorted(sink.denoised) == [0, 1]
    assert sink.skipped[2] == SKIP_NOT_STORED
    assert set(sink.denoised) | set(sink.skipped) == set(range(6))
    assert len(sink.errors) == 1 and "storing a denoised entry failed" in sink.errors[0]


def test_frames_waiting_for_the_writer_are_bounded_without_a_warning() -> None:
    """The bound that keeps a crash's loss small: submit waits, silently, for the writer."""
    disk = Gate()
    sink = MemorySink(disk)
    pipeline = FramePipeline(sink, max_unwritten_frames=2)
    assert [submit(pipeline, 0), submit(pipeline, 1)] == [0, 1]
    third = Call(pipeline.submit, frame(2), {"i": 2})
    wait_until_parked(third)  # two frames wait for the disk: the third must wait too
    assert pipeline.pending_frames == 2
    disk.allow()
    assert third.outcome() == 2
    disk.open()
    summary = pipeline.close()  # pytest turns a warning into an error: there was none
    assert summary.backpressure_waits == 1
    assert_every_raw_frame_in_order(sink, 3)


def test_a_failing_live_view_callback_is_recorded_not_raised() -> None:
    def show(index: int, electrons: np.ndarray) -> None:
        raise ValueError("display closed")

    pipeline, sink = block_pipeline(InstantDenoiser(), on_denoised=show)
    for i in range(3):
        pipeline.submit(frame(i), {"i": i})
    summary = pipeline.close()
    assert summary.denoised == 3
    assert sink.errors == ["live-view callback failed: ValueError('display closed')"] * 3


def test_the_sink_is_created_from_the_first_frame() -> None:
    made: list[np.ndarray] = []
    sink = MemorySink()

    def factory(first: np.ndarray) -> MemorySink:
        made.append(first)
        return sink

    pipeline = FramePipeline(factory)
    for i in range(3):
        pipeline.submit(frame(i), {"i": i})
    assert pipeline.close().frames == 3
    assert len(made) == 1
    np.testing.assert_array_equal(made[0], frame(0))
    assert_every_raw_frame_in_order(sink, 3)


# -- bad settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"policy": "drop"}, "policy must be 'skip' or 'block', got 'drop'"),
        ({"max_batch": 0}, "max_batch and max_pending_frames must be at least 1"),
        ({"max_pending_frames": 0}, "max_batch and max_pending_frames must be at least 1"),
        ({"counts_per_electron": 0.0}, "counts_per_electron must be > 0, got 0.0"),
        ({"counts_per_electron": -44.0}, "counts_per_electron must be > 0, got -44.0"),
        ({"counts_per_electron": math.nan}, "counts_per_electron must be > 0, got nan"),
        ({"max_unwritten_frames": 0}, "max_unwritten_frames must be at least 1, got 0"),
        ({"denoiser_timeout_s": 0.0}, "denoiser_timeout_s must be > 0 s, got 0.0"),
        ({"denoiser_timeout_s": math.inf}, "denoiser_timeout_s must be > 0 s, got inf"),
        ({"denoiser_timeout_s": math.nan}, "denoiser_timeout_s must be > 0 s, got nan"),
    ],
)
def test_bad_settings_are_refused_before_any_thread_starts(
    settings: dict[str, Any], message: str
) -> None:
    before = set(threading.enumerate())
    with pytest.raises(ValueError, match=re.escape(message)):
        FramePipeline(MemorySink(), denoiser=InstantDenoiser(), **settings)
    started = [t.name for t in set(threading.enumerate()) - before if t.name.startswith("tem-acq")]
    assert started == []
