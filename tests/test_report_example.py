"""examples/browse_store.py runs end to end: records a tiny acquisition, browses it, reports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tem_acq.store import open_store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "browse_store.py"


def run_example(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=EXAMPLE.parents[1],
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_browse_store_example(tmp_path: Path) -> None:
    out = run_example("--frames", "6", "--size", "64", "--out-dir", str(tmp_path))
    store = tmp_path / "tiny.ome.zarr"
    assert f"recorded {store}" in out
    assert "6 frames of 64 x 64 px" in out
    assert "e-/A^2 per 2 ms frame" in out
    assert "raw[0]: ndarray uint16 (64, 64)" in out
    assert "total dose of the series" in out
    report = tmp_path / "tiny.report.html"
    assert f"report: {report}" in out
    assert report.read_text().count("<img") == 4
    s = open_store(store)
    assert s.complete and s.n_frames == 6 and s.denoised is None


@pytest.mark.slow
def test_browse_store_example_with_a_model(tmp_path: Path, fast_pkg: Path) -> None:
    out = run_example(
        "--frames", "4", "--size", "64", "--out-dir", str(tmp_path), "--model", str(fast_pkg)
    )
    assert "denoised: 4 of 4 frames" in out
    document = (tmp_path / "tiny.report.html").read_text()
    assert "4 of 4" in document and "denoised mean" in document
