"""What a newcomer tripped over (issue 17), each checked where a test can check it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tem_acq.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_model_info_is_short_and_full_on_request(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "info", "default"]) == 0
    short = capsys.readouterr().out.splitlines()
    assert len(short) < 40 and any("PSNR (dB): model / best Gaussian / raw" in s for s in short)
    assert "--full prints them all" in short[-1]
    assert main(["model", "info", "default", "--full"]) == 0
    full = capsys.readouterr().out.splitlines()
    assert len(full) > 200


def test_info_on_a_pairs_store_shows_the_camera(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.ome.zarr"
    assert main(["collect-pairs", "--simulated", "--out", str(out), "--fields", "1", "--size",
                 "64", "--detector", "integrating", "--long-exposure-ms", "40"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "44 counts/e-" in text
    assert "detector      integrating, binning 1, model stated: read noise" in text


def test_frame_pair_figure_is_drawn(
    oneview_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figure = tmp_path / "pair.png"
    frames = [str(oneview_dir / "val-0001.tif"), str(oneview_dir / "val-0002.tif")]
    assert main(["evaluate", "--model", "fast", "--frame-pair", *frames, "--figure",
                 str(figure)]) == 0  # fmt: skip
    assert f"figure: {figure}" in capsys.readouterr().out
    assert figure.stat().st_size > 10_000
    assert main(["evaluate", "--model", "fast", "--frame-pair", *frames, "--write-card"]) == 2
    assert "--write-card needs --pairs" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="no git")
def test_demo_outputs_are_ignored_by_git() -> None:
    for path in ("demo-run/demo.png", "tem-acq-demo/demo.ome.zarr/zarr.json"):
        done = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", path])
        assert done.returncode == 0, f"{path} would show in git status"


def test_a_card_states_where_it_is_measured_to_help() -> None:
    from tem_acq.denoise import load_package
    from tem_acq.denoise.card import QualityRow

    card = load_package(Path(__file__).resolve().parents[1] / "models" / "fast").card
    rows = [
        QualityRow(image_kind="low magnification", detector="integrating", dose_e_per_px=d,
                   metric="psnr_db", value=v, gaussian=g)
        for d, v, g in [(1.0, 20.0, 21.0), (5.0, 25.0, 23.0), (20.0, 30.0, 27.0)]
    ] + [
        QualityRow(image_kind="low magnification", detector="integrating", dose_e_per_px=20.0,
                   metric="mean_error_pct", value=2.5),  # helps the PSNR, but biased
        QualityRow(image_kind="atomic (independent fields)", detector="integrating",
                   dose_e_per_px=5.0, metric="psnr_db", value=19.0, gaussian=20.0),
    ]  # fmt: skip
    card = card.model_copy(update={"quality": rows})
    assert card.measured_help() == {"integrating": [5.0]}
    assert card.measured_help(independent=True) == {"integrating": []}


def test_collect_pairs_reports_progress_and_resume_of_a_finished_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.ome.zarr"
    argv = ["collect-pairs", "--simulated", "--out", str(out), "--fields", "2", "--size", "64",
            "--long-exposure-ms", "40"]  # fmt: skip
    assert main(argv) == 0
    said = capsys.readouterr()
    assert "collecting pairs: 2/2 fields (100 %)" in said.err  # piped: a plain line
    assert main([*argv, "--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_view_names_the_missing_qt_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes.util
    import sys

    from tem_acq import viewer
    from tem_acq.errors import ViewerUnavailableError

    if not sys.platform.startswith("linux"):
        pytest.skip("Qt's xcb plugin is Linux's")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    real = ctypes.util.find_library
    # this machine's libraries, less the two a newcomer's Debian lacked
    monkeypatch.setattr(
        ctypes.util, "find_library",
        lambda name: None if name in ("xcb-icccm", "xcb-keysyms") else real(name) or name,
    )  # fmt: skip
    with pytest.raises(ViewerUnavailableError, match="apt install libxcb-icccm4 libxcb-keysyms1"):
        viewer._check_display("run.ome.zarr")
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: name)
    viewer._check_display("run.ome.zarr")  # everything there: no complaint
