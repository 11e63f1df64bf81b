"""Crash safety: a writer process killed with SIGKILL at any moment leaves a store that reads.

A child process writes frames whose pixels encode their index, resolving denoised frames out of
order, and prints after every frame how many it appended and how many were committed. The test
kills it, reopens the store and checks every counted frame, the per-frame table and the bound on
lost frames (at most one shard).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaozarrs

from tem_acq.store import open_store

CHILD = textwrap.dedent(
    """
    import importlib, itertools, os, random, signal, sys
    import numpy as np

    # DIE_AT=module:function:n:before|after kills this process at the n-th call of a function
    # the writer uses, to land the crash exactly between two steps of a commit.
    if os.environ.get("DIE_AT"):
        module_name, name, nth, when = os.environ["DIE_AT"].split(":")
        owner = importlib.import_module(module_name)
        *outer, name = name.split(".")  # "Class.method" patches the method on its class
        for part in outer:
            owner = getattr(owner, part)
        original, calls = getattr(owner, name), itertools.count(1)
        def dying(*args, **kwargs):
            call = next(calls)  # atomic: the writer's I/O threads call some of these at once
            if call == int(nth) and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args, **kwargs)
            if call == int(nth) and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        setattr(owner, name, dying)

    from tem_acq.store import (AcquisitionMetadata, AcquisitionWriter, Camera, FrameRecord,
                               Instrument)

    path, shard, height, width, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), \\
        int(sys.argv[4]), int(sys.argv[5])
    rng = random.Random(seed)
    metadata = AcquisitionMetadata(
        instrument=Instrument(voltage_kV=200, pixel_size_A=30.0),
        camera=Camera(name="crash test", counts_per_electron=44),
        exposure_ms=3.3, dose_e_per_px=4.6,
    )
    base = np.arange(height * width, dtype=np.int64).reshape(height, width)
    writer = AcquisitionWriter(path, metadata, (height, width), shard_frames=shard,
                               flush_interval_s=None, max_pending_denoised_shards=2)
    print("created", flush=True)
    pending = []
    for i in range(100000):
        frame = ((base + 1000 * i) % 65536).astype(np.uint16)
        writer.append_raw(frame, FrameRecord(extra={"i": i}))
        pending.append(i)
        # The denoiser lags and answers out of order; some frames are skipped.
        while pending and rng.random() < 0.6:
            j = pending.pop(rng.randrange(len(pending)))
            if j % 9 == 4:
                writer.mark_skipped(j, "behind")
            else:
                writer.write_denoised(j, np.full((height, width), j + 0.5, np.float32), 1.0)
        if i % 23 == 22:
            writer.flush()  # commits a partly filled shard, to be rewritten when it fills
        print(writer.frames, writer.committed_frames, flush=True)
    """
)


def expected_raw(index: int, shape: tuple[int, int]) -> np.ndarray:
    base = np.arange(shape[0] * shape[1], dtype=np.int64).reshape(shape)
    return ((base + 1000 * index) % 65536).astype(np.uint16)


def run_and_kill(
    tmp_path: Path,
    kill_after_frames: int,
    shard: int,
    shape: tuple[int, int],
    seed: int,
    die_at: str | None = None,
) -> tuple[Path, int, int]:
    """Start the writer, SIGKILL it once it reported ``kill_after_frames`` frames.

    With ``die_at`` the child kills itself at that call instead (see CHILD). Returns the store
    path and the highest appended and committed counts the child printed.
    """
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    path = tmp_path / "crash.zarr"
    args = [sys.executable, str(script), str(path), str(shard), *map(str, shape), str(seed)]
    env = {**os.environ, "DIE_AT": die_at or ""}
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None
    appended = committed = 0
    try:
        for line in child.stdout:
            if line.startswith("created"):
                if kill_after_frames == 0:
                    break
                continue
            if not line.endswith("\n"):
                break  # cut short by the child's death
            appended, committed = map(int, line.split())
            if appended >= kill_after_frames:
                break
        # Land the kill at a random point of the child's next frame.
        time.sleep(random.Random(seed).random() * 0.005)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
        # Read the rest through the same text stream: iterating it above may have buffered
        # lines it did not hand out yet (communicate() would read past them, and the frames
        # they report would look lost).
        rest = child.stdout.read()
        child.stdout.close()
        child.wait(timeout=60)
    for line in rest.splitlines(keepends=True):  # lines printed before the signal landed
        # A line cut short by the kill is not trusted (the frame before it is counted).
        if line.endswith("\n") and not line.startswith("created"):
            appended, committed = map(int, line.split())
    assert child.returncode == -signal.SIGKILL
    return path, appended, committed


def check_crashed_store(
    path: Path, appended: int, committed: int, shard: int, shape: tuple[int, int]
) -> int:
    if not path.exists():  # killed while creating it: no half-made store is left behind
        assert appended == 0
        return 0
    store = open_store(path)
    assert not store.complete
    n = store.raw.shape[0]
    # Every commit the writer reported is on disk; at most one shard (plus the frame being
    # appended when the signal landed) is lost.
    assert committed <= n <= appended + 1
    assert n >= appended - shard
    raw = store.raw[:]
    for i in range(n):
        np.testing.assert_array_equal(raw[i], expected_raw(i, shape), err_msg=f"frame {i}")
    rows = store.frames
    assert [row.index for row in rows] == list(range(n))
    assert [row.extra["i"] for row in rows] == list(range(n))
    assert not [e for e in store.errors if "no row" in e]
    # Every frame reported denoised has its data on disk.
    if store.denoised is not None:
        assert store.denoised.shape[0] <= n
        denoised = store.denoised[:, 0, 0]
        for row in rows:
            if row.denoised:
                assert denoised[row.index] == row.index + 0.5, row.index
            if row.skipped:
                assert row.index % 9 == 4
    info = store.info()
    assert info["frames"] == n and info["complete"] is False
    yaozarrs.validate_zarr_store(str(path))
    return n


def test_sigkill_mid_acquisition_loses_at_most_one_shard(tmp_path: Path) -> None:
    shape = (96, 80)
    path, appended, committed = run_and_kill(tmp_path, 45, 16, shape, seed=1)
    n = check_crashed_store(path, appended, committed, 16, shape)
    assert n >= 32


# Calls of these functions happen at every step of a commit (see AcquisitionWriter._commit):
# shard and zarr.json data, the log append, renames, directory fsyncs.
STEPS = [
    "tem_acq.store._files:_write_all",
    "tem_acq.store._files:EventLog.append",
    "tem_acq.store.writer:fsync_dir",
    "os:replace",
]


def die_at(step: str, nth: int, when: str) -> str:
    return f"{step}:{nth}:{when}"


@pytest.mark.parametrize(
    ("step", "nth", "when"),
    [("os:replace", 9, "before"), ("tem_acq.store.writer:fsync_dir", 14, "after")],
)
def test_sigkill_between_commit_steps(tmp_path: Path, step: str, nth: int, when: str) -> None:
    shape = (32, 40)
    path, appended, committed = run_and_kill(tmp_path, 10**6, 4, shape, 2, die_at(step, nth, when))
    check_crashed_store(path, appended, committed, 4, shape)


@pytest.mark.slow
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("nth", [7, 10, 13, 18, 25, 33, 47])
@pytest.mark.parametrize("when", ["before", "after"])
def test_sigkill_at_every_commit_step(tmp_path: Path, step: str, nth: int, when: str) -> None:
    shape = (32, 40)
    path, appended, committed = run_and_kill(tmp_path, 10**6, 4, shape, 3, die_at(step, nth, when))
    check_crashed_store(path, appended, committed, 4, shape)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(12))
def test_sigkill_at_random_moments(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    shard = rng.choice([1, 4, 16])
    shape = rng.choice([(64, 64), (256, 256), (512, 512)])
    kill_after = rng.choice([0, 1, rng.randrange(2, 200)])
    path, appended, committed = run_and_kill(tmp_path, kill_after, shard, shape, seed)
    check_crashed_store(path, appended, committed, shard, shape)


@pytest.mark.slow
def test_sigkill_while_creating_leaves_no_half_store(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    for attempt in range(8):
        path = tmp_path / f"early{attempt}.zarr"
        args = [sys.executable, str(script), str(path), "4", "32", "32", "0"]
        child = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        time.sleep(0.25 + 0.05 * attempt)  # around import and store creation
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        if path.exists():
            open_store(path)  # whole or absent, never half-made
