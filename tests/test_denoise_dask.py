"""Offline denoising of many stores, here and on a real Dask LocalCluster (issue 16, part 1)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tem_acq.cli import main
from tem_acq.store import AcquisitionWriter, open_store
from tem_acq.store.layout import EVENT_LOG


def _store(path: Path, meta: Any, n: int, *, denoised: bool, seed: int, size: int = 64) -> Path:
    rng = np.random.default_rng(seed)
    with AcquisitionWriter(path, meta, (size, size), denoised=denoised) as writer:
        for _ in range(n):
            writer.append_raw(rng.poisson(4.0 * 44, (size, size)).astype("uint16"))
    return path


def _denoised(path: Path) -> np.ndarray:
    store = open_store(path)
    assert store.denoised is not None
    return np.asarray(store.denoised[:])


def _shard_mtimes(path: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (path / "denoised" / "0").glob("c.*")}


def _raw_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((path / "raw" / "0").iterdir())}


def test_local_cluster_equals_single_process_and_rerun_does_nothing(
    tmp_path: Path, fast_pkg: Path, metadata: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _store(tmp_path / "a.zarr", metadata(), 37, denoised=False, seed=1)
    b = _store(tmp_path / "b.zarr", metadata(), 20, denoised=True, seed=2)
    raw_before = {p: _raw_bytes(p) for p in (a, b)}
    refs = {}
    for src in (a, b):  # the single-process path: one input -> a new store
        ref = tmp_path / f"ref-{src.name}"
        assert (
            main(
                [
                    "denoise",
                    str(src),
                    "--model",
                    str(fast_pkg),
                    "--out",
                    str(ref),
                    "--path",
                    "eager",
                ]
            )
            == 0
        )
        refs[src] = _denoised(ref)
    args = [
        "denoise",
        str(a),
        str(b),
        "--model",
        str(fast_pkg),
        "--scheduler",
        "local",
        "--workers",
        "2",
    ]
    assert main(args) == 0
    assert "denoised 57 frame(s)" in capsys.readouterr().out
    for src in (a, b):
        store = open_store(src)
        assert store.complete and store.denoised_frames == store.n_frames
        assert store.metadata.model is not None and store.metadata.model.name == "fast"
        assert {row.model.name for row in store.frames if row.model} == {"fast"}
        np.testing.assert_allclose(_denoised(src), refs[src], rtol=1e-5, atol=1e-6)
        assert _raw_bytes(src) == raw_before[src]  # raw frames never touched
    mtimes = {p: _shard_mtimes(p) for p in (a, b)}
    logs = {p: (p / EVENT_LOG).read_bytes() for p in (a, b)}
    assert main(args) == 0  # a rerun finds nothing to do (and starts no cluster)
    assert "nothing to do" in capsys.readouterr().out
    for src in (a, b):
        assert _shard_mtimes(src) == mtimes[src] and (src / EVENT_LOG).read_bytes() == logs[src]


def test_rows_match_live_recording(tmp_path: Path, fast_pkg: Path, metadata: Any) -> None:
    """A store denoised afterwards has the rows and header a live recording writes."""
    a = _store(tmp_path / "a.zarr", metadata(), 5, denoised=False, seed=3)
    assert main(["denoise", str(a), "--model", str(fast_pkg), "--scheduler", "none"]) == 0
    events = [json.loads(line) for line in (a / EVENT_LOG).read_text().splitlines()]
    rows = [e for e in events if e["event"] == "denoised"]
    assert [r["index"] for r in rows] == list(range(5))
    assert {"latency_ms", "denoised_mean_e_per_px", "model"} <= set(rows[0])
    store = open_store(a)
    assert (
        store.metadata.model is not None
        and store.metadata.model.sha256 == rows[0]["model"]["sha256"]
    )
    ome = json.loads((a / "OME" / "zarr.json").read_text())
    assert ome["attributes"]["ome"]["series"] == ["raw", "denoised"]


def test_read_only_store_gets_a_derived_copy(tmp_path: Path, fast_pkg: Path, metadata: Any) -> None:
    a = _store(tmp_path / "ro" / "a.zarr", metadata(), 4, denoised=False, seed=4)
    for p in [a, *a.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        if os.access(a, os.W_OK):
            pytest.skip("running as root: permissions do not make a store read-only")
        out = tmp_path / "derived"
        assert (
            main(
                [
                    "denoise",
                    str(a),
                    "--model",
                    str(fast_pkg),
                    "--scheduler",
                    "none",
                    "--out-dir",
                    str(out),
                ]
            )
            == 0
        )
        assert open_store(out / "a.zarr").denoised_frames == 4
        assert open_store(a).denoised is None
    finally:
        for p in [a, *a.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)


def _count_rows(path: Path) -> int:
    try:
        text = (path / EVENT_LOG).read_text()
    except OSError:
        return 0
    return text.count('"event": "denoised"')


def test_sigkill_midway_then_rerun_is_identical_to_one_run(
    tmp_path: Path, fast_pkg: Path, metadata: Any
) -> None:
    """Kill the command (and its workers) at a random moment mid-run; the rerun completes it."""
    stores = [
        _store(tmp_path / f"s{i}.zarr", metadata(), 64, denoised=False, seed=10 + i, size=128)
        for i in range(2)
    ]
    copies = []
    for src in stores:
        copy = tmp_path / "one-run" / src.name
        shutil.copytree(src, copy)
        copies.append(copy)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "tem_acq.cli",
        "denoise",
        *map(str, stores),
        "--model",
        str(fast_pkg),
        "--scheduler",
        "local",
        "--workers",
        "2",
    ]
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while sum(_count_rows(s) for s in stores) == 0 and proc.poll() is None:
        assert time.monotonic() < deadline, "no shard committed within 120 s"
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 0.3))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sum(_count_rows(s) for s in stores)
    assert 0 < done < 128, f"the kill came at {done} of 128 frames: not midway"
    for src in stores:  # interrupted: opens, reads, metadata agrees with the files
        store = open_store(src)
        assert store.damage == [] and store.closed
        for row in store.frames:  # every frame counted denoised reads, whole
            if row.denoised:
                assert store.denoised is not None
                assert np.isfinite(store.denoised[row.index]).all()
    assert (
        main(
            [
                "denoise",
                *map(str, stores),
                "--model",
                str(fast_pkg),
                "--scheduler",
                "local",
                "--workers",
                "2",
            ]
        )
        == 0
    )
    one_run = [*cmd[:4], *map(str, copies), "--model", str(fast_pkg), "--scheduler", "none"]
    subprocess.run(one_run, env=env, check=True, capture_output=True)
    for src, copy in zip(stores, copies, strict=True):
        store = open_store(src)
        assert store.complete and store.denoised_frames == 64
        assert np.array_equal(_denoised(src), _denoised(copy)), f"killed after {done} rows"


def test_a_killed_worker_task_is_retried(tmp_path: Path, fast_pkg: Path, metadata: Any) -> None:
    """SIGKILL one worker process mid-run: its shards are rerun elsewhere and all complete."""
    from distributed import Client, LocalCluster

    from tem_acq.denoise import load_model
    from tem_acq.denoise.batch import plan_stores, run_jobs
    from tem_acq.denoise.options import DenoiseOptions
    from tem_acq.denoise.provenance import model_provenance

    src = _store(tmp_path / "a.zarr", metadata(), 64, denoised=False, seed=5)
    options = DenoiseOptions.from_settings(device="cpu", path="eager")
    jobs = plan_stores([src], model_provenance(load_model(fast_pkg, options=options)))
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            pids = client.run(os.getpid)
            killed: list[int] = []

            def on_shard(frames: int) -> None:
                if not killed:  # after the first commit: the other shards are in flight
                    killed.append(next(iter(pids.values())))
                    os.kill(killed[0], signal.SIGKILL)

            done = run_jobs(
                jobs,
                str(fast_pkg),
                options,
                scheduler=cluster.scheduler_address,
                on_shard=on_shard,
            )
    assert killed and done == 64
    store = open_store(src)
    assert store.complete and store.denoised_frames == 64
    assert np.isfinite(_denoised(src)).all()
