"""tem-acq demo: the main job, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tem_acq.cli import main as cli
from tem_acq.denoise.package import resolve_package
from tem_acq.errors import TemAcqError


def test_demo_end_to_end_small(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fast_pkg: Path
) -> None:
    out = tmp_path / "d"
    args = [
        "demo",
        "--out",
        str(out),
        "--model",
        str(fast_pkg),
        "--frames",
        "6",
        "--size",
        "128",
        "--interval-ms",
        "50",
        "--json",
    ]
    assert cli(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["frames"] == 6
    assert result["denoised"] + result["skipped"] == 6
    assert (out / "demo.png").stat().st_size > 10_000
    assert result["psnr_raw_dB"] is not None
    assert cli(["info", str(out / "demo.ome.zarr"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 6 and info["complete"] is True
    import yaozarrs

    yaozarrs.validate_zarr_store(str(out / "demo.ome.zarr"))
    # running it again replaces its own store
    assert cli(args) == 0


def _has_default_model() -> bool:
    try:
        resolve_package("default")
    except TemAcqError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _has_default_model(), reason="no shipped default model")
def test_demo_with_the_shipped_default_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's main command with its defaults: under 2 minutes, denoising helps."""
    assert cli(["demo", "--out", str(tmp_path / "d"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["wall_s"] < 120
    assert result["psnr_denoised_dB"] > result["psnr_raw_dB"] + 10


def test_demo_on_pymmcore_plus_and_no_stale_report(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "demo.report.html").write_text("an old report")
    code = cli(["demo", "--stack", "pymmcore-plus", "--out", str(out), "--frames", "6",
                 "--size", "128", "--interval-ms", "20"])  # fmt: skip
    assert code == 0
    from tem_acq.store import open_store

    store = open_store(out / "demo.ome.zarr")
    assert store.n_frames == 6 and store.metadata.protocol.backend == "pymmcore-plus"
    assert not (out / "demo.report.html").exists()  # it described the store now replaced
