"""``tem-acq info``: text and JSON summaries, and clear errors for bad paths."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tem_acq.cli import main
from tem_acq.store import AcquisitionMetadata, AcquisitionWriter

SHAPE = (16, 12)

MetadataBuilder = Callable[..., AcquisitionMetadata]  # the conftest fixture `metadata`


def make_store(path: Path, metadata: AcquisitionMetadata, close: bool = True) -> None:
    writer = AcquisitionWriter(path, metadata, SHAPE, shard_frames=4)
    for i in range(10):
        writer.append_raw(np.full(SHAPE, i, np.uint16))
        if i % 4 == 3:
            writer.mark_skipped(i, "denoiser behind")
        else:
            writer.write_denoised(i, np.zeros(SHAPE, np.float32), latency_ms=10.0 + i)
    writer.record_error("stage drifted")
    if close:
        writer.close()


def test_info_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.zarr"
    make_store(path, metadata())
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "acquisition"
    assert info["frames"] == 10
    assert info["shape"] == [10, 16, 12]
    assert info["dtype"] == "uint16"
    assert info["exposure_ms"] == 3.3
    assert info["dose_e_per_px"] == 4.6
    assert info["pixel_size_A"] == 29.88
    assert info["denoised_frames"] == 8
    assert info["skipped"] == 2
    assert info["model"] is None
    assert info["complete"] is True
    assert info["errors"] == ["stage drifted"]
    latencies = [10.0 + i for i in range(10) if i % 4 != 3]
    assert info["denoise_latency_p50_ms"] == pytest.approx(np.percentile(latencies, 50))
    assert info["denoise_latency_p95_ms"] == pytest.approx(np.percentile(latencies, 95))


def test_info_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.zarr"
    make_store(path, metadata())
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "status      complete" in out
    assert "frames      10 x 16 x 12 uint16" in out
    assert "dose/frame  4.6 e-/px, 0.005152 e-/A^2" in out
    assert "skipped     2 (denoiser behind: 2)" in out
    assert "latency     p50" in out
    assert "model       none" in out
    assert "  - stage drifted" in out


def test_info_on_a_store_not_closed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.zarr"
    make_store(path, metadata(), close=False)
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["complete"] is False
    assert info["frames"] == 8  # two whole shards committed; the open one is not
    assert main(["info", str(path)]) == 0
    assert "INCOMPLETE" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no store at"),
        (lambda p: p.write_text("x"), "is a file, not a store"),
        (lambda p: p.mkdir(), "not a zarr v3 store"),
    ],
)
def test_info_bad_path_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make: object, message: str
) -> None:
    path = tmp_path / "thing.zarr"
    make(path)  # type: ignore[operator]
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tem-acq info: error: ")
    assert message in err
    assert "Traceback" not in err


def test_info_in_a_fresh_process(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    make_store(path, metadata())
    cli = [sys.executable, "-c", "import sys; from tem_acq.cli import main; sys.exit(main())"]
    result = subprocess.run([*cli, "info", str(path), "--json"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["frames"] == 10
    result = subprocess.run([*cli, "info", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "is a directory but not a zarr v3 store" in result.stderr
