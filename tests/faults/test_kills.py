"""kill -9 of a real acquiring process, at random moments: what was handed over is safe.

A child process records a real pycro-manager acquisition of the simulated camera (rendering
as fast as it can, so the camera outruns the disk and frames queue up for the writer) and
appends the SHA-1 of every frame to a file before handing it to the recorder: one
``os.write`` per frame, which the kernel keeps when the process is killed. The test kills it
with SIGKILL once a random number of frames has been produced, after a random extra delay,
and checks what the README promises: the store opens and is not complete; every frame it
counts has its row and reads back identical to what the camera produced; and at most
``BOUND`` frames that were handed over are missing (the shard being filled, less one frame,
plus the frames waiting for the writer).
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tem_acq.pipeline import MAX_UNWRITTEN_FRAMES
from tem_acq.store import open_store
from tem_acq.store.writer import MAX_SHARD_FRAMES

#: Most frames handed over that a kill may lose: a shard less one frame (the writer commits a
#: full shard before taking the next frame), plus the frames waiting for the writer.
BOUND = MAX_SHARD_FRAMES - 1 + MAX_UNWRITTEN_FRAMES
HANG_S = 120.0  # only a hang guard: the child produces frames within seconds
SIZE = 128

CHILD = textwrap.dedent(
    """
    import hashlib, os, sys
    from pycromanager import Acquisition
    from acquisition_hooks import LiveRecorder, simulated_microscope

    store, hashes, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fd = os.open(hashes, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with simulated_microscope(size=size, seed=9, real_time=False) as scope:
        rec = LiveRecorder(store, exposure_ms=5.0, **scope.recorder_settings())

        def hand_over(image, metadata):
            # recorded before the hand-over: a frame the store holds always has its hash
            os.write(fd, (hashlib.sha1(image.tobytes()).hexdigest() + "\\n").encode())
            return rec.process(image, metadata)

        with Acquisition(directory=None, show_display=False, image_process_fn=hand_over) as acq:
            acq.acquire([{"axes": {"time": i}, "exposure": 5.0} for i in range(5000)])
    """
)


@dataclass(frozen=True)
class Kill:
    """When to kill: once ``frames`` frames were produced, ``delay_s`` later."""

    frames: int
    delay_s: float

    def __str__(self) -> str:
        return f"{self.frames}f+{self.delay_s * 1000:.0f}ms"


def random_kills(seed: int, n: int, lowest: int = 20) -> list[Kill]:
    """``n`` kill moments drawn with ``seed``: 20-600 frames in (of 5000), plus 0-50 ms."""
    rng = random.Random(seed)
    return [Kill(rng.randint(lowest, 600), rng.uniform(0.0, 0.05)) for _ in range(n)]


def produced_hashes(path: Path) -> list[str]:
    """The hashes of the frames the camera produced, whole lines only."""
    if not path.exists():
        return []
    return path.read_text().split("\n")[:-1]


def run_and_kill(tmp_path: Path, kill: Kill) -> tuple[Path, list[str]]:
    """Start the child, SIGKILL it at ``kill``; the store's path and the frames' hashes."""
    store, hashes, script = tmp_path / "k.ome.zarr", tmp_path / "hashes.txt", tmp_path / "c.py"
    script.write_text(CHILD)
    with (tmp_path / "stderr.txt").open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(script), str(store), str(hashes), str(SIZE)], stderr=stderr
        )
        deadline = time.monotonic() + HANG_S
        while hashes.stat().st_size // 41 < kill.frames if hashes.exists() else True:
            assert child.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "the child produced too few frames"
            time.sleep(0.001)
        time.sleep(kill.delay_s)  # a random moment within the run, not a synchronisation
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    return store, produced_hashes(hashes)


def check_after_kill(store: Path, produced: list[str]) -> int:
    """The README's promise after a kill; returns the frames lost."""
    assert store.exists(), f"{len(produced)} frames produced and no store"
    s = open_store(store)
    assert s.complete is False and s.errors == []
    n = s.n_frames
    assert n <= len(produced)
    assert [row.index for row in s.frames] == list(range(n))
    raw = s.raw[:]
    for i in range(n):
        assert hashlib.sha1(raw[i].tobytes()).hexdigest() == produced[i], f"frame {i} changed"
    # the last frame produced may not have been handed over yet (its hash goes first)
    lost = len(produced) - 1 - n
    assert lost <= BOUND, f"{lost} frames handed over were lost (bound {BOUND})"
    return lost


@pytest.mark.parametrize("kill", random_kills(seed=1, n=2), ids=str)
def test_sigkill_loses_at_most_the_stated_bound(tmp_path: Path, kill: Kill) -> None:
    check_after_kill(*run_and_kill(tmp_path, kill))


@pytest.mark.slow
@pytest.mark.parametrize("kill", random_kills(seed=2, n=20), ids=str)
def test_sigkill_at_random_moments(tmp_path: Path, kill: Kill) -> None:
    check_after_kill(*run_and_kill(tmp_path, kill))


@pytest.mark.slow
def test_sigkill_before_the_first_shard(tmp_path: Path) -> None:
    """Killed at once: no store yet, or one that opens; at most the bound handed over."""
    store, produced = run_and_kill(tmp_path, Kill(1, 0.0))
    if store.exists():
        check_after_kill(store, produced)
    else:
        assert len(produced) - 1 <= MAX_UNWRITTEN_FRAMES
