"""Faulty disks for the fault-injection suite: a full disk, a disk that turns read-only, an
fsync that fails.

The first two are real file systems (they need root, mount rights and, for the second, loop
devices; the tests skip elsewhere): a tmpfs filled to its last byte, and an ext4 that the
kernel turns read-only on an error while files are open (what ``errors=remount-ro`` does when a
disk fails). The third is a mock: no file system here fails fsync on demand, so
:func:`failing_fsync` replaces ``os.fsync`` and ``os.fdatasync`` inside the writing process
(this test's process) with functions that raise ``EIO``, the way a dying disk reports a lost
write.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest


@contextmanager
def tmpfs(mount: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A real tmpfs of ``size`` (``"4m"``) mounted at ``mount`` (``ro`` when ``read_only``).

    Skips the test where mounting is not possible (it needs root and ``mount``).
    """
    mount.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount")
    options = f"ro,size={size}" if read_only else f"size={size}"
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    """Fill the file system of ``mount`` to its last byte; the filler file (delete to free it)."""
    filler = mount / "filler"
    block = bytes(64 * 1024)
    with filler.open("ab", buffering=0) as file:
        for size in (len(block), 4096, 1):
            try:
                while True:
                    file.write(block[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def free_bytes(mount: Path) -> int:
    """Bytes still free on the file system of ``mount``."""
    stat = os.statvfs(mount)
    return stat.f_bavail * stat.f_frsize


@dataclass
class Ext4Disk:
    """A real ext4 file system on a loop device, mounted ``errors=remount-ro``.

    :meth:`fail` makes the kernel report a file-system error on it, which turns it read-only
    at once, open files included, as a dying disk does (a tmpfs cannot: ``mount -o
    remount,ro`` refuses, "busy", while a writer holds a file open for writing).
    """

    device: str
    mount: Path

    def fail(self) -> None:
        """The kernel's own error path: the file system is read-only from now on."""
        fail_ext4(self.device)

    def repair(self) -> None:
        """Unmount, check and repair (e2fsck), and mount again writable."""
        _run("umount", str(self.mount))
        subprocess.run(["e2fsck", "-fy", self.device], capture_output=True, check=False)
        _run("mount", "-o", "errors=remount-ro", self.device, str(self.mount))


def fail_ext4(device: str) -> None:
    """Raise an error on the ext4 file system of ``device`` (``/dev/loopN``)."""
    trigger = Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error"
    trigger.write_text("tem-acq fault injection\n")


@contextmanager
def ext4_disk(image: Path, mount: Path, size_mb: int = 32) -> Iterator[Ext4Disk]:
    """A fresh :class:`Ext4Disk` in the file ``image``, mounted at ``mount``.

    Skips the test without root, e2fsprogs, a free loop device or ext4's ``trigger_fs_error``.
    """
    tools = ("mkfs.ext4", "losetup", "e2fsck", "mount")
    if os.geteuid() != 0 or any(shutil.which(tool) is None for tool in tools):
        pytest.skip("a loop-device ext4 needs root and e2fsprogs")
    with image.open("wb") as file:
        file.truncate(size_mb * 2**20)
    _run("mkfs.ext4", "-q", "-F", str(image))
    attach = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True)
    if attach.returncode != 0:
        pytest.skip(f"no loop device here: {attach.stderr.decode().strip()}")
    device = attach.stdout.decode().strip()
    mount.mkdir(parents=True, exist_ok=True)
    try:
        _run("mount", "-o", "errors=remount-ro", device, str(mount))
        if not (Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error").exists():
            pytest.skip("this kernel's ext4 has no trigger_fs_error")
        yield Ext4Disk(device, mount)
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, check=False)
        subprocess.run(["losetup", "-d", device], capture_output=True, check=False)


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.decode().strip()}")


@contextmanager
def failing_fsync(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A mock: every fsync and fdatasync of this process fails with EIO inside the block."""

    def fail(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    from tem_acq.store import _files

    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", fail)
        patch.setattr(os, "fdatasync", fail, raising=False)
        patch.setattr(_files, "fdatasync", fail)  # the name the event log bound at import
        yield
