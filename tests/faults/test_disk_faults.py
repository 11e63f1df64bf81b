"""Faulty disks (issue 12, cases 4 and 6): a full disk, a read-only disk, a failing fsync.

What a user checks afterwards: the frames committed before the fault read back exactly, the
store says what went wrong (never "errors none"), ``tem-acq info --check`` verifies what is
there, and once the disk is fixed ``close()`` or ``tem-acq recover`` brings the store in line.
The full disk is a real tmpfs, the failing disk a real ext4 that the kernel turns read-only;
the failing fsync is a mock (see :mod:`faults.disks`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faults.damage import SHAPE, raw_frame
from faults.disks import ext4_disk, failing_fsync, fill, free_bytes, tmpfs
from pycromanager import Acquisition

from acquisition_hooks import LiveRecorder, simulated_microscope
from tem_acq.cli import main as cli
from tem_acq.errors import StoreError
from tem_acq.store import AcquisitionMetadata, AcquisitionWriter, open_store


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def metadata() -> AcquisitionMetadata:
    return AcquisitionMetadata.model_validate(
        {
            "instrument": {"voltage_kV": 200, "pixel_size_A": 29.88},
            "camera": {"name": "Gatan OneView", "counts_per_electron": 44},
            "exposure_ms": 3.3,
        }
    )


def wait_for(condition: Any, what: str, timeout_s: float = 120.0) -> None:
    """A hang guard, not a timing threshold: fail only if ``condition`` never comes true."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_full_disk_with_a_model_running_records_the_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_pkg: Path
) -> None:
    """The issue's finding: a full disk with a model running recorded "errors none".

    The disk is filled to its last byte once the first shard is committed, so that no later
    write (shard, row or error line) finds room: only the store's space reserve can say why.
    """
    with tmpfs(tmp_path / "disk", "16m") as disk:
        store = disk / "run.ome.zarr"
        filled: list[Path] = []

        def committed() -> int:
            return open_store(store).n_frames if (store / "zarr.json").exists() else 0

        events = [{"axes": {"time": i}, "exposure": 2.0} for i in range(64)]
        with simulated_microscope(size=256, seed=3, dose_rate=2500.0) as scope:
            # the processor's error stops the acquisition, or close() raises it: either way
            with pytest.raises(Exception, match=r"the disk is full"):
                with LiveRecorder(
                    store,
                    model=fast_pkg,
                    device="cpu",
                    exposure_ms=2.0,
                    **scope.recorder_settings(),
                ) as live:

                    def process(image: np.ndarray, md: dict[str, Any]) -> Any:
                        if md["Axes"]["time"] == 24 and not filled:
                            wait_for(lambda: committed() >= 16, "the first shard's commit")
                            filled.append(fill(disk))
                        return live.process(image, md)

                    kwargs = {**live.acquisition_kwargs(), "image_process_fn": process}
                    with Acquisition(directory=None, show_display=False, **kwargs) as acq:
                        acq.acquire(events)
        assert free_bytes(disk) < 64 * 1024  # still full: nothing was freed for the error
        s = open_store(store)
        assert s.n_frames >= 16 and not s.complete
        assert np.asarray(s.raw).shape[0] == s.n_frames  # every committed frame reads
        assert any("the disk is full" in error for error in s.errors), s.errors
        code, out, _ = run_cli(capsys, "info", str(store))
        assert "errors      none" not in out and "the disk is full" in out
        code, out, _ = run_cli(capsys, "info", str(store), "--check", "--json")
        report = json.loads(out)
        assert code == 3 and {f["part"] for f in report["findings"]} == {"metadata"}
        filled[0].unlink()  # space is freed: recovery brings the metadata in line
        code, _, _ = run_cli(capsys, "recover", str(store))
        assert code == 0


#: A writing process on a disk that fails: 16 frames committed, 5 more appended, then the
#: kernel turns the file system read-only (a disk error), and the writer goes on.
WRITER_ON_A_FAILING_DISK = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from faults.damage import SHAPE, raw_frame
    from faults.disks import fail_ext4
    from tem_acq.errors import StoreError
    from tem_acq.store import AcquisitionWriter, AcquisitionMetadata

    store, device = Path(sys.argv[1]), sys.argv[2]
    metadata = AcquisitionMetadata.model_validate(
        {"instrument": {"voltage_kV": 200, "pixel_size_A": 29.88},
         "camera": {"name": "Gatan OneView", "counts_per_electron": 44}, "exposure_ms": 3.3}
    )
    writer = AcquisitionWriter(store, metadata, SHAPE, shard_frames=16, flush_interval_s=None)
    for i in range(21):
        writer.append_raw(raw_frame(i))
    fail_ext4(device)
    for step in (lambda: [writer.append_raw(raw_frame(i)) for i in range(21, 40)], writer.close):
        try:
            step()
        except StoreError as exc:
            print(exc)
    """
)


def test_a_disk_turning_read_only_keeps_what_was_committed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real ext4 turned read-only by the kernel mid-acquisition (open files included)."""
    with ext4_disk(tmp_path / "disk.img", tmp_path / "disk") as disk:
        store = disk.mount / "run.ome.zarr"
        tests = Path(__file__).resolve().parents[1]
        run = subprocess.run(
            [sys.executable, "-c", WRITER_ON_A_FAILING_DISK, str(store), disk.device],
            capture_output=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(tests)},
        )
        assert run.returncode == 0, run.stderr.decode()
        told = run.stdout.decode()
        assert "Read-only file system" in told and "raw frames 0-15 are safely stored" in told
        s = open_store(store)  # read-only: it still opens and reads
        np.testing.assert_array_equal(s.raw[:], np.stack([raw_frame(i) for i in range(16)]))
        assert not s.complete
        code, out, _ = run_cli(capsys, "info", str(store), "--check", "--json")
        assert code == 3 and json.loads(out)["verified"]["raw"] == 16
        code, out, err = run_cli(capsys, "recover", str(store))
        assert code == 2 and "Read-only file system" in err and "Traceback" not in err
        disk.repair()  # what a user does next: fsck, mount again
        s = open_store(store)
        np.testing.assert_array_equal(s.raw[:], np.stack([raw_frame(i) for i in range(16)]))
        code, _, _ = run_cli(capsys, "recover", str(store))
        assert code == 0
        assert open_store(store).recovered


def test_a_failing_fsync_never_commits_frames_that_may_not_be_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mock fsync failure (EIO): the commit waits for a durable write, never assumes one."""
    store = tmp_path / "run.ome.zarr"
    writer = AcquisitionWriter(store, metadata(), SHAPE, shard_frames=16)
    for i in range(16):
        writer.append_raw(raw_frame(i))
    with failing_fsync(monkeypatch):
        with pytest.raises(StoreError, match=r"Input/output error.*frames 0-15 are safely"):
            for i in range(16, 32):
                writer.append_raw(raw_frame(i))
        assert open_store(store).n_frames == 16
    writer.close()
    s = open_store(store)
    assert s.complete and s.n_frames == 32
    assert any("Input/output error" in error for error in s.errors)
