"""Recording real pycro-manager acquisitions on the simulated microscope into OME-Zarr stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycromanager import Acquisition

from acquisition_hooks import LiveRecorder, simulated_microscope
from tem_acq.cli import main as cli
from tem_acq.errors import AcquisitionError, ConfigError, StoreError
from tem_acq.store import open_store


def run_cli(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_acquire_then_info_done_when(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's check: 40 frames at 256 px, model none; info, yaozarrs and zarr agree."""
    store = tmp_path / "a.ome.zarr"
    code, _, err = run_cli(
        "acquire",
        "--simulated",
        "--frames",
        "40",
        "--size",
        "256",
        "--model",
        "none",
        "--out",
        str(store),
        capsys=capsys,
    )
    assert code == 0, err
    code, out, _ = run_cli("info", str(store), "--json", capsys=capsys)
    info = json.loads(out)
    assert code == 0
    assert info["kind"] == "acquisition"
    assert info["frames"] == 40
    assert info["shape"] == [40, 256, 256]
    assert info["dtype"] == "uint16"
    assert info["complete"] is True
    assert info["model"] is None
    assert info["denoised_frames"] == 0
    assert info["pixel_size_A"] > 0 and info["dose_e_per_px"] > 0

    import yaozarrs
    import zarr

    yaozarrs.validate_zarr_store(str(store))
    raw = zarr.open_array(str(store / "raw" / "0"), mode="r")
    assert raw.shape == (40, 256, 256) and raw.dtype == np.uint16
    # the frames are real simulated frames: mean electrons match the nominal dose x transmission
    assert 0 < raw[:].mean() < 5 * info["dose_e_per_px"]


def test_recorder_keeps_frames_in_order_with_per_frame_table(tmp_path: Path) -> None:
    store = tmp_path / "r.ome.zarr"
    with simulated_microscope(dose_rate=2500.0, size=128, seed=5) as scope:
        with LiveRecorder(store, exposure_ms=2.0, **scope.recorder_settings()) as rec:
            with Acquisition(directory=None, show_display=False, **rec.acquisition_kwargs()) as acq:
                acq.acquire([{"axes": {"time": i}, "exposure": 2.0} for i in range(20)])
        logged = list(scope.camera.frame_log)[-20:]
    s = open_store(store)
    assert s.raw.shape == (20, 128, 128)
    rows = s.frames
    assert [r.index for r in rows] == list(range(20))
    assert all(r.exposure_ms == pytest.approx(2.0) for r in rows)
    # frames arrive in acquisition order: the camera's frame ids increase along t
    ids = [r.extra["sim_frame_id"] for r in rows if "sim_frame_id" in r.extra]
    assert ids == sorted(ids)
    cpe = s.metadata.camera.counts_per_electron
    assert rows[0].dose_e_per_px == pytest.approx(s.raw[0].mean() / cpe)
    assert s.metadata.camera.counts_per_electron == 1.0
    assert s.metadata.protocol.simulated is True
    assert len(logged) == 20


def test_pass_through_raw_returns_frames_to_pycromanager(tmp_path: Path) -> None:
    with simulated_microscope(size=64) as scope:
        settings = scope.recorder_settings()
        store = tmp_path / "p.ome.zarr"
        with LiveRecorder(store, exposure_ms=1.0, pass_through="raw", **settings) as rec:
            with Acquisition(directory=None, show_display=False, **rec.acquisition_kwargs()) as acq:
                acq.acquire([{"axes": {"time": i}, "exposure": 1.0} for i in range(5)])
        kept = np.asarray(acq.get_dataset().as_array())
    stored = open_store(tmp_path / "p.ome.zarr").raw[:]
    np.testing.assert_array_equal(kept, stored)


def test_existing_store_is_never_overwritten_without_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "x.ome.zarr"
    args = ["acquire", "--simulated", "--frames", "3", "--size", "64", "--out", str(store)]
    assert run_cli(*args, capsys=capsys)[0] == 0
    before = open_store(store).raw[:]
    code, _, err = run_cli(*args, capsys=capsys)
    assert code == 2
    assert "already exists" in err and "--overwrite" in err
    np.testing.assert_array_equal(open_store(store).raw[:], before)
    assert run_cli(*args, "--overwrite", capsys=capsys)[0] == 0


def test_invalid_settings_fail_before_the_first_frame(tmp_path: Path) -> None:
    store = tmp_path / "z.ome.zarr"
    with pytest.raises(StoreError, match="pixel_size_A must be > 0"):
        LiveRecorder(store, pixel_size_A=0.0, counts_per_electron=1.0, exposure_ms=1.0)
    with pytest.raises(StoreError, match="counts_per_electron"):
        LiveRecorder(store, pixel_size_A=3.0, counts_per_electron=-1, exposure_ms=1.0)
    assert not (tmp_path / "z.ome.zarr").exists()


def test_invalid_settings_are_config_errors(tmp_path: Path) -> None:
    store = tmp_path / "c.ome.zarr"
    with pytest.raises(ConfigError, match="pixel_size_A must be > 0"):
        LiveRecorder(store, pixel_size_A=0.0, counts_per_electron=1.0, exposure_ms=1.0)
    with pytest.raises(ConfigError, match="pass_through must be 'none', 'raw' or 'denoised'"):
        LiveRecorder(
            store, pixel_size_A=3.0, counts_per_electron=1.0, exposure_ms=1.0, pass_through="x"
        )  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="policy must be 'skip' or 'block'"):
        LiveRecorder(
            store, pixel_size_A=3.0, counts_per_electron=1.0, exposure_ms=1.0, policy="wait"
        )  # type: ignore[arg-type]


def test_cli_reports_a_bad_setting_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from acquisition_hooks.session import MicroscopeSession

    settings = MicroscopeSession.recorder_settings
    monkeypatch.setattr(
        MicroscopeSession,
        "recorder_settings",
        lambda self: {**settings(self), "pixel_size_A": 0.0},  # an uncalibrated microscope
    )
    store = tmp_path / "u.ome.zarr"
    args = ["acquire", "--simulated", "--frames", "2", "--size", "64", "--out", str(store)]
    code, _, err = run_cli(*args, capsys=capsys)
    assert code == 2
    assert err.startswith("tem-acq acquire: error: invalid acquisition settings")
    assert "pixel_size_A must be > 0" in err and len(err.strip().splitlines()) == 1
    assert not store.exists()


def test_cli_reports_a_bad_simulation_setting_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "v.ome.zarr"
    args = ["acquire", "--simulated", "--frames", "2", "--size", "64", "--out", str(store)]
    code, _, err = run_cli(*args, "--dose-rate", "-5", capsys=capsys)
    assert code == 2
    assert err.strip() == (
        "tem-acq acquire: error: invalid simulation settings: dose_rate: Input should be "
        "greater than or equal to 0"
    )
    assert not store.exists()


def test_frame_shape_change_mid_acquisition_is_refused_and_frames_stay(tmp_path: Path) -> None:
    store = tmp_path / "s.ome.zarr"
    rec = LiveRecorder(store, pixel_size_A=30.0, counts_per_electron=1.0, exposure_ms=1.0)
    frame = np.ones((32, 32), np.uint16)
    for _ in range(3):
        rec.process(frame, {"Axes": {"time": 0}})
    changed = r"expected \(32, 32\) uint16, got \(16, 16\) uint16"
    with pytest.raises(AcquisitionError, match=changed):
        rec.process(np.ones((16, 16), np.uint16), {})
    with pytest.raises(AcquisitionError, match=r"got \(32, 32\) float32"):
        rec.process(np.ones((32, 32), np.float32), {})
    rec.close()
    assert open_store(store).raw.shape == (3, 32, 32)


# pyjavaz's socket thread fails noisily when no Java Micro-Manager answers: that is the point
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_acquire_without_simulated_and_without_micromanager_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        "acquire", "--frames", "2", "--out", str(tmp_path / "n.ome.zarr"), capsys=capsys
    )
    assert code == 2
    assert "no Micro-Manager found" in err and "--simulated" in err
    assert not (tmp_path / "n.ome.zarr").exists()
