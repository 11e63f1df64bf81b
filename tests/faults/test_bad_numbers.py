"""Issue 12, case 7: bad numbers in get a clear error (or a warning) before any work.

Each was reproduced on the command line first and gave garbage with exit code 0: negative
electrons without a word, inf or NaN output, ``--batch 0`` accepted, a 512x512 ``frame_shape``
with 256x256 frames, a long exposure shorter than the short one, a 4096 px crop of 256 px
frames, ``--simulated --pixel-size-A 0 --counts-per-electron -2`` ignored, ``--size 16384``
taking over 4 GB. The commands run in-process here (``tem_acq.cli.main``: the same parser and
error handling as the ``tem-acq`` script), so torch loads once.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from faults.commands import digest_tree, make_pairs_store
from pydantic import ValidationError

from tem_acq.cli import main
from tem_acq.errors import AcquisitionError, ConfigError

#: What a LiveRecorder needs besides its store.
RECORDER_SETTINGS = {"pixel_size_A": 30.0, "counts_per_electron": 1.0, "exposure_ms": 1.0}


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``tem-acq ARGS`` in-process: exit code, stdout, stderr."""
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(code: int, err: str) -> str:
    """The single error line of a refused command (exit 2, no traceback)."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# -- frames the denoiser is given ---------------------------------------------------------------


def test_negative_counts_are_denoised_as_they_are_with_a_warning(
    tmp_path: Path, fast_pkg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Dark-subtracted frames can dip below zero: a warning says what comes out, exit 0."""
    rng = np.random.default_rng(0)
    frames = rng.poisson(5.0, (2, 32, 32)).astype(np.float32) * 44.0
    frames[1] -= 300.0  # a mean below zero: that frame comes out negative
    np.save(tmp_path / "dark.npy", frames)
    code, _, err = run_cli(
        capsys,
        "denoise",
        str(tmp_path / "dark.npy"),
        "-m",
        str(fast_pkg),
        "-o",
        str(tmp_path / "out.npy"),
        "--counts-per-electron",
        "44",
    )
    assert code == 0, err
    warning = [line for line in err.splitlines() if "pixels are negative" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: 770 of 2048 pixels"), err
    assert "1 frame(s) (first: frame 1) have a mean <= 0" in warning[0]
    out = np.load(tmp_path / "out.npy")
    # the documented behaviour: each frame keeps its mean electrons per pixel
    np.testing.assert_allclose(out.mean(axis=(1, 2)), frames.mean(axis=(1, 2)) / 44.0, rtol=1e-3)


def test_the_python_api_warns_of_negative_counts(fast_pkg: Path) -> None:
    from tem_acq.denoise import load_model
    from tem_acq.errors import NegativeCountsWarning

    denoiser = load_model(fast_pkg, device="cpu")
    frame = np.full((32, 32), 10.0, np.float32)
    frame[0, :5] = -3.0
    with pytest.warns(NegativeCountsWarning, match=r"5 of 1024 pixels are negative"):
        denoiser.denoise(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        denoiser.denoise(np.abs(frame))  # no warning without negative values


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        pytest.param(np.float64, 1e300, id="1e300-float64"),
        pytest.param(np.float32, 1e35, id="1e35-float32", marks=pytest.mark.slow),
        pytest.param(np.float32, -1e38, id="-1e38-float32", marks=pytest.mark.slow),
    ],
)
def test_values_float32_cannot_denoise_are_refused_naming_the_frame(
    tmp_path: Path,
    fast_pkg: Path,
    capsys: pytest.CaptureFixture[str],
    dtype: type[np.floating],
    value: float,
) -> None:
    """1e300 gave NaN and 1e35 inf output, with exit code 0."""
    frames = np.full((3, 32, 32), 220.0, dtype)
    frames[1] = value
    np.save(tmp_path / "huge.npy", frames)
    code, _, err = run_cli(
        capsys,
        "denoise",
        str(tmp_path / "huge.npy"),
        "-m",
        str(fast_pkg),
        "-o",
        str(tmp_path / "out.npy"),
    )
    line = one_line(code, err)
    assert "value(s) beyond +-1e+30 counts" in line and "first in frame 1 at pixel (0, 0)" in line
    assert not (tmp_path / "out.npy").exists()


def test_batch_zero_is_refused(
    tmp_path: Path, fast_pkg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "f.npy", np.full((2, 32, 32), 220, np.uint16))
    code, _, err = run_cli(
        capsys,
        "denoise",
        str(tmp_path / "f.npy"),
        "-m",
        str(fast_pkg),
        "-o",
        str(tmp_path / "out.npy"),
        "--batch",
        "0",
    )
    assert "--batch must be >= 1, got 0" in one_line(code, err)
    assert not (tmp_path / "out.npy").exists()


# -- the live recorder ---------------------------------------------------------------------------


def test_a_first_frame_of_another_shape_than_frame_shape_is_refused(tmp_path: Path) -> None:
    from acquisition_hooks import LiveRecorder

    store = tmp_path / "s.ome.zarr"
    recorder = LiveRecorder(store, frame_shape=(512, 512), **RECORDER_SETTINGS)
    with pytest.raises(
        AcquisitionError,
        match=r"first frame is \(256, 256\) but frame_shape="
        r"\(512, 512\) was given",
    ):
        recorder.process(np.ones((256, 256), np.uint16), {})
    recorder.close()
    assert not store.exists()  # nothing was recorded, nothing is claimed to be


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"max_batch": 0}, r"max_batch must be an integer >= 1"),
        ({"frame_shape": (0, 512)}, r"frame_shape must be \(height, width\)"),
        ({"frame_shape": (512,)}, r"frame_shape must be \(height, width\)"),
    ],
)
def test_recorder_settings_are_checked_before_the_first_frame(
    tmp_path: Path, setting: dict[str, object], message: str
) -> None:
    from acquisition_hooks import LiveRecorder

    with pytest.raises(ConfigError, match=message):
        LiveRecorder(tmp_path / "s.ome.zarr", **RECORDER_SETTINGS, **setting)


# -- collection plans, training configs, simulated microscopes ----------------------------------


def test_a_long_exposure_shorter_than_the_short_one_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tem_acq.pairs.plan import PairPlan

    with pytest.raises(ValidationError, match=r"must be longer than short_exposure_ms"):
        PairPlan(short_exposure_ms=10.0, long_exposure_ms=5.0)
    with pytest.raises(ValidationError, match=r"needs at least 2 short frames"):
        PairPlan(short_exposure_ms=10.0, long_exposure_ms=12.0, long_mode="sum")
    code, _, err = run_cli(
        capsys,
        "collect-pairs",
        "--simulated",
        "--short-exposure-ms",
        "10",
        "--long-exposure-ms",
        "5",
        "--out",
        str(tmp_path / "p.ome.zarr"),
    )
    assert (
        "invalid collection plan: long_exposure_ms: 5 ms must be longer than "
        "short_exposure_ms (10 ms)"
    ) in one_line(code, err)
    assert not (tmp_path / "p.ome.zarr").exists()


def test_a_crop_larger_than_the_frames_is_refused_before_training(tmp_path: Path) -> None:
    from tem_acq.pairs import from_pairs_store
    from tem_acq.train import TrainConfig, train

    pairs = from_pairs_store([make_pairs_store(tmp_path / "p.ome.zarr", side=64)])
    config = TrainConfig(crop=128, max_steps=1, fast=True)
    before = digest_tree(tmp_path)
    with pytest.raises(ConfigError, match=r"crop \(128 px\) is larger than the frames \(64x64"):
        train(pairs, config, tmp_path / "model", device="cpu", progress=False)
    assert digest_tree(tmp_path) == before  # no package, no checkpoint


def test_simulated_instrument_options_are_applied_never_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["acquire", "--simulated", "--frames", "2", "--size", "64"]
    bad = tmp_path / "bad.ome.zarr"
    code, _, err = run_cli(
        capsys, *base, "--pixel-size-A", "0", "--counts-per-electron", "-2", "--out", str(bad)
    )
    line = one_line(code, err)
    assert "pixel_size_A: Input should be greater than 0" in line
    assert "counts_per_electron: Input should be greater than 0" in line
    assert not bad.exists()
    good = tmp_path / "good.ome.zarr"
    code, _, err = run_cli(
        capsys,
        *base,
        "--pixel-size-A",
        "12",
        "--counts-per-electron",
        "7",
        "--voltage-kV",
        "300",
        "--out",
        str(good),
    )
    assert code == 0, err
    from tem_acq.store import open_store

    meta = open_store(good).metadata
    assert meta.instrument.pixel_size_A == pytest.approx(12.0)
    assert meta.camera.counts_per_electron == pytest.approx(7.0)
    assert meta.instrument.voltage_kV == pytest.approx(300.0)


def test_a_simulated_sensor_beyond_the_stated_limit_is_refused_before_allocating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--size 16384 once ran (87 s, over 4 GB); the limit is in the help."""
    from acquisition_hooks.session import MAX_SENSOR_SIZE, simulated_microscope

    code, _, err = run_cli(
        capsys,
        "acquire",
        "--simulated",
        "--size",
        "16384",
        "--frames",
        "1",
        "--out",
        str(tmp_path / "big.ome.zarr"),
    )
    assert "size 16384 is larger than the simulated camera's 4096 px" in one_line(code, err)
    assert MAX_SENSOR_SIZE == 4096
    with pytest.raises(SystemExit):
        main(["acquire", "--help"])
    assert "1 to 4096" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(ConfigError, match=r"larger than the simulated camera's"):
        with simulated_microscope(size=MAX_SENSOR_SIZE + 1):
            pass
