"""Damage that must not go unseen (issue 12, case 4): real stores, damaged on disk, then read.

Each case asserts what a user would check: the store opens (or fails with one clear
StoreError), ``tem-acq info`` never calls it complete, ``tem-acq info --check`` names exactly
the damaged frames with the right exit code, reading a damaged frame raises a StoreError naming
it (never zeros, never a codec traceback), and ``tem-acq recover`` brings the metadata in line
without changing one byte of frame data. The fast suite runs one case of each kind; the slow
one runs the matrix over both store kinds and both of their arrays.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from faults.damage import (
    EVENT_LOG,
    FRAME_DAMAGE,
    FRAMES,
    INTERVAL_MS,
    PAIRS,
    FrameDamage,
    acquisition_store,
    change_length,
    corrupt_json,
    corrupt_log_line,
    denoised,
    frame_files,
    ome_sizes,
    pairs_store,
    raw_frame,
    tear_last_log_line,
)

from tem_acq.cli import main as cli
from tem_acq.errors import StoreError
from tem_acq.store import open_pairs, open_store

STORES: dict[str, Callable[[Path], Path]] = {
    "acquisition": acquisition_store,
    "pairs": pairs_store,
}
#: Whether an array holds recorded data (its damage is loss: exit 1) or derived data (exit 3).
RECORDED = {"raw": True, "denoised": False, "low": True, "high": True}
KIND_OF = {"raw": "acquisition", "denoised": "acquisition", "low": "pairs", "high": "pairs"}
#: The frame each case damages: one in the middle shard of an acquisition store, denoised.
TARGET = {"raw": 17, "denoised": 17, "low": 3, "high": 3}


def make(tmp_path: Path, array: str) -> Path:
    kind = KIND_OF[array]
    return STORES[kind](tmp_path / f"{kind}.ome.zarr")


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def check(capsys: pytest.CaptureFixture[str], store: Path) -> tuple[int, dict[str, Any]]:
    """``tem-acq info --check --json``: its exit code and report."""
    code, out, err = run_cli(capsys, "info", str(store), "--check", "--json")
    assert err == ""
    report = json.loads(out)
    assert report["exit_code"] == code
    return code, report


def named(report: dict[str, Any]) -> dict[str, list[int]]:
    """The frames each part of the store is named damaged in (metadata included)."""
    parts: dict[str, set[int]] = {}
    for finding in report["findings"]:
        parts.setdefault(finding["part"], set()).update(finding["frames"])
    return {part: sorted(frames) for part, frames in parts.items()}


def opened(store: Path) -> Any:
    return open_pairs(store) if store.name.startswith("pairs") else open_store(store)


def info_json(capsys: pytest.CaptureFixture[str], store: Path) -> dict[str, Any]:
    code, out, _ = run_cli(capsys, "info", str(store), "--json")
    assert code == 0
    info: dict[str, Any] = json.loads(out)
    return info


def recover(capsys: pytest.CaptureFixture[str], store: Path) -> tuple[int, dict[str, Any]]:
    """``tem-acq recover --json``, asserting that no frame file changed a byte."""
    before = frame_files(store)
    code, out, err = run_cli(capsys, "recover", str(store), "--json")
    assert err == ""
    assert frame_files(store) == before, "recover changed frame data"
    report: dict[str, Any] = json.loads(out)
    assert report["check"]["exit_code"] == code
    return code, report


# -- a damaged frame file ---------------------------------------------------------------------


FRAME_CASES = [
    pytest.param(array, damage, id=f"{array}-{damage.name}", marks=marks)
    for array in RECORDED
    for damage in FRAME_DAMAGE
    for marks in [
        ()
        if (array, damage.name)
        in {("raw", "deleted"), ("denoised", "corrupted"), ("low", "truncated")}
        else (pytest.mark.slow,)
    ]
]


@pytest.mark.parametrize(("array", "damage"), FRAME_CASES)
def test_a_damaged_frame_file_is_named_and_never_read_as_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], array: str, damage: FrameDamage
) -> None:
    store = make(tmp_path, array)
    hit = damage.apply(store, array, TARGET[array])
    if array == "denoised":  # only denoised frames hold data; skipped ones read NaN anyway
        hit = [i for i in hit if denoised(i)]
    code, report = check(capsys, store)
    assert named(report) == {array: hit}
    assert code == (1 if RECORDED[array] else 3)
    s = opened(store)
    if damage.name != "corrupted":  # a flipped byte inside a chunk: only --check reads that far
        assert not s.complete and s.damage
        assert info_json(capsys, store)["complete"] is False
    frames = getattr(s, array)
    with pytest.raises(StoreError, match=rf"cannot read {array} frame[s]? .*tem-acq info --check"):
        frames[hit[0]]
    with pytest.raises(StoreError, match=rf"{array} frame"):
        np.asarray(frames)
    whole = 0 if array != "denoised" else 1
    assert np.isfinite(np.asarray(frames[whole], dtype=float)).all()  # the others still read
    code, recovery = recover(capsys, store)
    assert recovery["changes"] == []  # nothing to bring in line: the frames are what is lost
    assert code == (1 if RECORDED[array] else 3)
    assert named(recovery["check"]) == {array: hit}


def test_a_deleted_shard_used_to_read_as_zeros(tmp_path: Path) -> None:
    """The issue's first finding, as a user met it: zeros, and ``info`` saying complete."""
    store = acquisition_store(tmp_path / "a.ome.zarr")
    (store / "raw" / "0" / "c.1.0.0").unlink()
    s = open_store(store)
    assert not s.complete
    assert any("raw frames 16-31: raw/0/c.1.0.0 is missing" in line for line in s.damage)
    with pytest.raises(StoreError, match=r"cannot read raw frames 16-19: raw/0/c.1.0.0 is missing"):
        s.raw[10:20]
    np.testing.assert_array_equal(s.raw[15], raw_frame(15))
    # plain zarr still opens the array (it cannot know: a missing shard is its fill value)
    assert zarr.open_array(str(store / "raw" / "0"), mode="r").shape[0] == FRAMES


# -- lengths that disagree with the frames ----------------------------------------------------


@pytest.mark.parametrize(
    "array",
    [
        "raw",
        pytest.param("denoised", marks=pytest.mark.slow),
        pytest.param("low", marks=pytest.mark.slow),
    ],
)
def test_a_raised_shape_counts_no_phantom_frames(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], array: str
) -> None:
    store = make(tmp_path, array)
    phantom = change_length(store, array, +16)
    code, report = check(capsys, store)
    assert code == 3 and set(named(report)) == {"metadata"}
    if array == "raw":
        assert named(report)["metadata"] == phantom
        with pytest.raises(StoreError, match=r"cannot read raw frame 45"):
            open_store(store).raw[45]  # used to be a frame of zeros
    assert not opened(store).complete
    code, recovery = recover(capsys, store)
    assert code == 0 and recovery["check"]["findings"] == []
    s = opened(store)
    n = FRAMES if KIND_OF[array] == "acquisition" else PAIRS
    assert getattr(s, array).shape[0] == n
    assert json.loads((store / array / "0" / "zarr.json").read_text())["shape"][0] == n


def test_frames_whole_on_disk_but_not_counted_are_counted_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kill between writing a shard (and its rows) and the zarr.json rename that commits it."""
    store = acquisition_store(tmp_path / "a.ome.zarr")
    uncounted = change_length(store, "raw", -8)
    assert open_store(store).raw.shape[0] == FRAMES - 8
    code, report = check(capsys, store)
    assert code == 3 and named(report) == {"metadata": uncounted}
    code, recovery = recover(capsys, store)
    assert code == 0 and recovery["check"]["findings"] == []
    s = open_store(store)
    np.testing.assert_array_equal(s.raw[FRAMES - 1], raw_frame(FRAMES - 1))
    assert s.closed and s.recovered and not s.complete  # recovered, so not what the writer closed


@pytest.mark.parametrize(
    "document",
    [
        "raw/0/zarr.json",
        pytest.param("zarr.json", marks=pytest.mark.slow),
        pytest.param("low/0/zarr.json", marks=pytest.mark.slow),
    ],
)
def test_a_corrupted_zarr_json_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: str
) -> None:
    store = make(tmp_path, "low" if document.startswith("low") else "raw")
    corrupt_json(store / document)
    with pytest.raises(StoreError, match=r"damaged"):
        opened(store)
    for command in (["info"], ["info", "--check"], ["recover"]):
        code, out, err = run_cli(capsys, *command, str(store))
        assert code == 2 and out == ""
        (line,) = err.strip().splitlines()
        assert "damaged" in line and "Traceback" not in err


# -- the event log ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["acquisition", pytest.param("pairs", marks=pytest.mark.slow)])
def test_a_torn_last_line_loses_only_the_closing_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    store = STORES[kind](tmp_path / f"{kind}.ome.zarr")
    assert tear_last_log_line(store)["event"] == "closed"
    assert not opened(store).complete
    code, report = check(capsys, store)
    assert code == 3 and set(named(report)) == {"metadata"}  # no closing event: nothing lost
    code, recovery = recover(capsys, store)
    assert code == 0 and recovery["check"]["findings"] == []
    s = opened(store)
    assert s.closed and s.recovered and not s.complete and s.errors == []


@pytest.mark.parametrize("kind", ["acquisition", pytest.param("pairs", marks=pytest.mark.slow)])
def test_a_garbled_middle_line_names_the_frame_whose_row_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    store = STORES[kind](tmp_path / f"{kind}.ome.zarr")
    event, index = ("frame", 7) if kind == "acquisition" else ("pair", 2)
    line = corrupt_log_line(store, event, index)
    code, report = check(capsys, store)
    assert code == 1 and named(report) == {"table": [index], "log": []}
    assert any(f"line {line} is unreadable" in f["problem"] for f in report["findings"])
    s = opened(store)
    assert not s.complete
    assert index not in [row.index for row in (s.frames if kind == "acquisition" else s.pairs)]
    assert info_json(capsys, store)["complete"] is False
    np.asarray(s.raw if kind == "acquisition" else s.low)  # the frames themselves are whole
    code, recovery = recover(capsys, store)
    assert code == 1 and recovery["changes"] == []


# -- after a real crash -----------------------------------------------------------------------


CRASHING_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[2])
    from faults.damage import acquisition_store
    from tem_acq.store import AcquisitionWriter

    AcquisitionWriter.close = lambda self: os.kill(os.getpid(), signal.SIGKILL)
    acquisition_store(__import__("pathlib").Path(sys.argv[1]))
    """
)


def test_after_a_kill_recover_brings_the_ome_xml_and_closing_event_in_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's SizeT=1 after a crash: a real SIGKILL of the writing process."""
    store = tmp_path / "killed.ome.zarr"
    tests = Path(__file__).resolve().parents[1]
    run = subprocess.run(
        [sys.executable, "-c", CRASHING_WRITER, str(store), str(tests)],
        capture_output=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tests)},
    )
    assert run.returncode == -signal.SIGKILL, run.stderr.decode()
    s = open_store(store)
    committed = s.n_frames
    assert committed >= 32 and not s.closed  # at most the open shard died with the process
    assert ome_sizes(store) == [1, 1]
    assert s.metadata.frame_interval_ms == pytest.approx(INTERVAL_MS)  # written at a commit
    code, report = check(capsys, store)
    assert code == 3 and set(named(report)) == {"metadata"}
    code, recovery = recover(capsys, store)
    assert code == 0 and recovery["check"]["findings"] == []
    assert ome_sizes(store) == [committed, committed]
    last = json.loads((store / EVENT_LOG).read_bytes().splitlines()[-1])
    assert last["event"] == "closed" and last["complete"] is False and last["recovered"] is True
    assert not (store / ".tem_acq_reserve").exists()
    s = open_store(store)
    assert s.closed and not s.complete and s.n_frames == committed
    np.testing.assert_array_equal(s.raw[committed - 1], raw_frame(committed - 1))
