"""Run a real ``tem-acq`` command and check what a user would: nothing outside its output changed.

The fault-injection tests of the command boundary (issue 12, cases 1, 7 and 8) use this:

- :func:`digest_tree` hashes every file (and names every folder and link) under a folder;
  :func:`assert_only_outputs_changed` compares two digests, allowing changes only under the
  command's own outputs, so "the store stayed byte-identical" is a checked fact;
- :func:`run_command` runs the installed CLI in a subprocess (the real entry point, as a user
  types it) and :meth:`CommandRun.one_error_line` checks the one-line error contract: exit 2,
  exactly one line on stderr, no traceback;
- builders make the inputs on disk: an acquisition store, a pairs store, a model package;
- :func:`read_only_folder` mounts a real read-only tmpfs (root and mount rights; skips without).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from faults.damage import pair_record
from faults.disks import tmpfs

#: Runs ``tem_acq.cli.main`` in a fresh interpreter: the real command line, without a shell.
_CLI = "import sys; from tem_acq.cli import main; sys.exit(main(sys.argv[1:]))"

#: The metadata of the stores built here (a Gatan OneView run, as the store tests use).
STORE_METADATA = {
    "instrument": {"voltage_kV": 200, "pixel_size_A": 29.88},
    "camera": {"name": "Gatan OneView", "counts_per_electron": 44},
    "exposure_ms": 3.3,
}


def digest_tree(root: Path) -> dict[str, str]:
    """Every entry under ``root`` by relative path: a file's sha256, ``dir``, or a link's target."""
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                found[rel] = f"link:{os.readlink(path)}"
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def changed_entries(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """Paths added, removed or changed between two digests."""
    return {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}


def assert_only_outputs_changed(
    before: dict[str, str], after: dict[str, str], outputs: Iterable[str] = ()
) -> None:
    """Fail naming every change outside ``outputs`` (paths relative to the digested folder)."""
    allowed = tuple(outputs)
    outside = sorted(
        p
        for p in changed_entries(before, after)
        if not any(p == out or p.startswith(f"{out}/") for out in allowed)
    )
    assert outside == [], f"the command changed what is not its output: {outside}"


@dataclass(frozen=True)
class CommandRun:
    """What a finished command left: its exit code and output."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def one_error_line(self) -> str:
        """The command's one error line, once the one-line contract is checked.

        Exit code 2, no traceback, and stderr is exactly one line, the error.
        """
        assert "Traceback" not in self.stderr, self.stderr
        lines = self.stderr.strip().splitlines()
        assert self.returncode == 2, (self.returncode, self.stderr)
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("tem-acq ") and ": error: " in lines[0], lines[0]
        return lines[0]


def run_command(*args: str, cwd: Path, timeout: float = 240) -> CommandRun:
    """Run ``tem-acq ARGS`` in a subprocess in ``cwd`` and wait for it (bounded, a hang guard)."""
    done = subprocess.run(
        [sys.executable, "-c", _CLI, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CommandRun(tuple(args), done.returncode, done.stdout, done.stderr)


def run_and_compare(
    root: Path, *args: str, outputs: Iterable[str] = (), timeout: float = 240
) -> CommandRun:
    """Run a command in ``root``; check that it changed nothing under ``root`` but ``outputs``."""
    before = digest_tree(root)
    run = run_command(*args, cwd=root, timeout=timeout)
    assert_only_outputs_changed(before, digest_tree(root), outputs)
    return run


# -- inputs on disk --------------------------------------------------------------------------


def make_acquisition_store(path: Path, frames: int = 40, shape: tuple[int, int] = (32, 32)) -> Path:
    """An acquisition store of ``frames`` raw Poisson frames (uint16 counts), closed."""
    from tem_acq.store import AcquisitionMetadata, AcquisitionWriter

    rng = np.random.default_rng(12)
    meta = AcquisitionMetadata.model_validate(STORE_METADATA)
    with AcquisitionWriter(path, meta, shape, np.uint16, denoised=False) as writer:
        for _ in range(frames):
            writer.append_raw(rng.poisson(5.0 * 44, size=shape).astype(np.uint16))
    return path


def make_pairs_store(path: Path, fields: int = 2, k: int = 2, side: int = 64) -> Path:
    """A pairs store of ``fields`` fields with ``k`` pairs each (``side`` px frames), closed."""
    from tem_acq.store import Camera, Instrument, PairsMetadata, PairsWriter

    rng = np.random.default_rng(3)
    meta = PairsMetadata(
        instrument=Instrument(voltage_kV=300, pixel_size_A=2.5),
        camera=Camera(name="K3", counts_per_electron=1.0, detector_kind="counting"),
        short_exposure_ms=2.0,
        long_exposure_ms=400.0,
        n_short=k,
        planned_fields=fields,
    )
    writer = PairsWriter(path, meta, (side, side), truth=True)
    for field in range(fields):
        truth = np.full((k, side, side), 5.0, dtype=np.float32)
        truth[:, side // 4 : side // 2, side // 4 : side // 2] = 2.0
        low = rng.poisson(truth).astype(np.uint16)
        high = rng.poisson(truth * 200).astype(np.float32)
        records = [
            pair_record(
                field,
                i,
                high_exposure_ms=400.0,
                low_dose_e_per_px=float(low[i].mean()),
                high_dose_e_per_px=float(high[i].mean()),
            )
            for i in range(k)
        ]
        writer.append_field(field, low=low, high=high, records=records, truth=truth)
    writer.close()
    return path


def copy_package(package: Path, dest: Path) -> Path:
    """A copy of a model package (tests never change the shared one)."""
    shutil.copytree(package, dest)
    return dest


@contextmanager
def read_only_folder(where: Path) -> Iterator[Path]:
    """A real read-only file system (a tmpfs mounted ``ro``) at ``where/read-only``.

    Tests run as root, for whom a chmod'ed folder is still writable; a read-only mount is not.
    Skips the test where mounting is not possible.
    """
    with tmpfs(where / "read-only", "1m", read_only=True) as mount:
        yield mount
