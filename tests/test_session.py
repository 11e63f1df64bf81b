"""The simulated microscope in a real Micro-Manager core, driven by real pycro-manager."""

from __future__ import annotations

import numpy as np
import pytest
from pycromanager import Acquisition

from acquisition_hooks import simulated_microscope
from acquisition_hooks._engine import attached_core, camel_to_snake
from tem_acq.errors import AcquisitionError, ConfigError
from tem_acq.registration import phase_correlation_shift


def acquire(events: list[dict]) -> np.ndarray:
    with Acquisition(directory=None, name="t", show_display=False) as acq:
        acq.acquire(events)
    return np.asarray(acq.get_dataset().as_array())


def time_events(n: int, exposure_ms: float) -> list[dict]:
    return [{"axes": {"time": i}, "exposure": exposure_ms} for i in range(n)]


def test_camel_to_snake_handles_acronyms() -> None:
    assert camel_to_snake("getXYStageDevice") == "get_xy_stage_device"
    assert camel_to_snake("popNextImageMD") == "pop_next_image_md"
    assert camel_to_snake("snapImage") == "snap_image"


def test_done_when_example_exposure_scaling_and_poisson_noise() -> None:
    """The issue's example: 10x exposure gives 10x counts; counting noise is Poisson."""
    with simulated_microscope(dose_rate=2500.0, detector="counting", seed=0, drift_px_per_s=0.0):
        short = acquire(time_events(8, 2.0)).astype(np.float64)
        long = acquire(time_events(2, 20.0)).astype(np.float64)
    assert short.shape == (8, 512, 512)
    ratio = long.mean() / short.mean()
    assert ratio == pytest.approx(10.0, rel=0.15)
    # two frames of one field: the specimen cancels in the difference, Poisson noise adds
    diff = short[0] - short[1]
    assert diff.var() / (short[0].mean() + short[1].mean()) == pytest.approx(1.0, abs=0.05)


def test_snap_and_sequence_paths_give_the_same_statistics() -> None:
    # Events with one exposure are merged into a hardware sequence; alternating exposures
    # cannot be sequenced (the camera is not exposure-sequenceable), so they are snapped.
    with simulated_microscope(dose_rate=5000.0, seed=1, size=256) as scope:
        core = scope.core
        sequenced = acquire(time_events(6, 2.0))
        alternating = [
            {"axes": {"time": i}, "exposure": 2.0 if i % 2 == 0 else 2.5} for i in range(6)
        ]
        snapped = acquire(alternating)
        assert scope.camera is not None
        assert core.getProperty("TEMCamera", "Detector") == "counting"
    assert sequenced.shape == snapped.shape == (6, 256, 256)
    assert snapped[0::2].mean() == pytest.approx(sequenced.mean(), rel=0.05)
    assert snapped[1::2].mean() == pytest.approx(1.25 * sequenced.mean(), rel=0.05)


def test_stage_move_changes_the_field() -> None:
    with simulated_microscope(dose_rate=500_000.0, seed=2, size=256) as scope:
        here = acquire(time_events(2, 2.0)).astype(np.float64)
        scope.move_stage(50.0, -30.0)  # micrometres: hundreds of fields away at 3 nm/px
        there = acquire(time_events(1, 2.0)).astype(np.float64)
    same = np.corrcoef(here[0].ravel(), here[1].ravel())[0, 1]
    other = np.corrcoef(here[0].ravel(), there[0].ravel())[0, 1]
    assert same > 0.5
    assert abs(other) < 0.3


def test_drift_moves_the_image_between_frames() -> None:
    with simulated_microscope(
        dose_rate=1_000_000.0, seed=3, size=256, drift_px_per_s=(40.0, 0.0)
    ) as scope:
        frames = acquire(time_events(2, 2.0))
        first, second = scope.camera.frame_log[-2], scope.camera.frame_log[-1]
    elapsed = second.t_s - first.t_s
    shift = phase_correlation_shift(frames[0].astype(np.float64), frames[1].astype(np.float64))
    assert elapsed > 0
    assert abs(shift[1]) == pytest.approx(40.0 * elapsed, abs=0.5)


def test_democamera_configuration_for_comparison() -> None:
    with simulated_microscope(camera="democamera") as scope:
        assert scope.camera is None
        frames = acquire(time_events(4, 2.0))
    assert frames.shape[0] == 4 and frames.dtype == np.uint16


def test_teardown_over_twenty_open_close_cycles() -> None:
    for i in range(20):
        with simulated_microscope(seed=i, size=64):
            frames = acquire(time_events(2, 1.0))
            assert frames.shape == (2, 64, 64)
        assert attached_core() is None


def test_cleanup_after_an_exception_inside_the_session() -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with simulated_microscope(size=64):
            acquire(time_events(1, 1.0))
            raise RuntimeError("boom")
    assert attached_core() is None
    with simulated_microscope(size=64):
        assert acquire(time_events(1, 1.0)).shape == (1, 64, 64)


def test_a_second_session_inside_the_first_is_refused_clearly() -> None:
    with simulated_microscope(size=64):
        with pytest.raises(AcquisitionError, match="already active"):
            with simulated_microscope(size=64):
                pass


def test_bad_camera_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="camera must be 'tem' or 'democamera'"):
        with simulated_microscope(camera="hologram"):  # type: ignore[arg-type]
            pass
    with simulated_microscope(size=64) as scope:
        assert scope.camera is not None
        with pytest.raises(ConfigError, match="exposure must be > 0 ms"):
            scope.camera.set_exposure(0)
        with pytest.raises(ConfigError, match="binning 3 not possible"):
            scope.camera.set_binning(3)
    assert attached_core() is None
