"""The simulated TEM as a complete Micro-Manager camera, through both real Python stacks.

Every acquisition here is a real one: pycro-manager's ``Acquisition`` on its Python backend, or
pymmcore-plus' MDA engine (``core.mda.run`` with a useq sequence), on a real ``UniMMCore`` with
the simulated TEM camera, focus and beam blanker; ``camera="democamera"`` runs the same script
on Micro-Manager's C++ DemoCamera configuration for comparison.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import useq
from pycromanager import Acquisition, multi_d_acquisition_events

from acquisition_hooks import MicroscopeSession, simulated_microscope
from acquisition_hooks.camera import FrameInfo
from tem_acq.errors import AcquisitionError, ConfigError
from tem_acq.sim import FieldDose, SimulationConfig, SimulationError, TEMSimulator, to_uint8

STACKS = ["pycromanager", "pymmcore-plus"]
CAMERAS = ["tem", "democamera"]
CAM = "TEMCamera"


class Frames:
    """Collects frames in acquisition order from either stack."""

    def __init__(self) -> None:
        self.images: list[np.ndarray] = []
        self.hardware_triggered: list[bool] = []

    def process(self, image: np.ndarray, metadata: dict) -> tuple[np.ndarray, dict]:
        """pycro-manager image processor."""
        self.images.append(np.array(image))
        return image, metadata

    def frameReady(self, img: np.ndarray, event: Any, meta: dict) -> None:
        """pymmcore-plus MDA handler."""
        self.images.append(np.array(img))
        self.hardware_triggered.append(bool(meta.get("hardware_triggered")))

    def stack(self) -> np.ndarray:
        return np.stack(self.images)


def acquire(
    scope: MicroscopeSession,
    *,
    loops: int = 1,
    z: tuple[float, float, float] | None = None,
    positions: list[tuple[float, float]] | None = None,
) -> Frames:
    """A t (p) (z) acquisition, time slowest and z fastest, through the session's stack."""
    frames = Frames()
    if scope.stack == "pycromanager":
        zs = {} if z is None else {"z_start": z[0], "z_end": z[1], "z_step": z[2]}
        events = multi_d_acquisition_events(
            num_time_points=loops, xy_positions=positions, order="tpz", **zs
        )
        with Acquisition(
            directory=None, name="t", show_display=False, image_process_fn=frames.process
        ) as acq:
            acq.acquire(events)
        return frames
    plans: dict[str, Any] = {"time_plan": {"interval": 0, "loops": loops}, "axis_order": "tpz"}
    if z is not None:
        plans["z_plan"] = {"bottom": z[0], "top": z[1], "step": z[2]}
    if positions is not None:
        plans["stage_positions"] = [{"x": x, "y": y} for x, y in positions]
    scope.core.mda.run(useq.MDASequence(**plans), output=frames)
    return frames


@pytest.fixture(params=STACKS)
def stack(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def session(stack: str, **settings: Any) -> Any:
    """A small, fast simulated microscope (no real-time pacing)."""
    settings = {"size": 128, "real_time": False, "seed": 0, **settings}
    return simulated_microscope(stack=stack, **settings)  # type: ignore[arg-type]


def logged(scope: MicroscopeSession, n: int) -> list[FrameInfo]:
    assert scope.camera is not None
    return list(scope.camera.frame_log)[-n:]


# -- binning --------------------------------------------------------------------------------


def test_binning_2_halves_both_dims_and_quadruples_mean_counts(stack: str) -> None:
    with session(stack, dose_rate=50_000.0) as scope:
        core, camera = scope.core, scope.camera
        one = acquire(scope, loops=4).stack().astype(np.float64)
        px1 = float(core.getProperty(CAM, "PixelSizeAngstrom"))
        core.setProperty(CAM, "Binning", 2)
        two = acquire(scope, loops=4).stack().astype(np.float64)
        settings = scope.recorder_settings()
        px2 = float(core.getProperty(CAM, "PixelSizeAngstrom"))
        assert [i.binning for i in logged(scope, 4)] == [2] * 4
        assert camera is not None and camera.shape() == (64, 64)
    assert one.shape == (4, 128, 128) and two.shape == (4, 64, 64)
    assert two.mean() / one.mean() == pytest.approx(4.0, rel=0.02)
    assert px2 == pytest.approx(2 * px1)
    assert settings["pixel_size_A"] == pytest.approx(px2) and settings["frame_shape"] == (64, 64)


def test_binning_sums_counts_and_read_noise_is_per_binned_pixel(stack: str) -> None:
    """Dark frames (beam blanked) hold read noise only: binning b multiplies its rms by b."""
    with session(stack, detector="integrating", dose_rate=0.0) as scope:
        core = scope.core
        rms = {}
        for b in (1, 2, 4):
            core.setProperty(CAM, "Binning", b)
            frames = acquire(scope, loops=2).stack().astype(np.float64)
            rms[b] = frames.std()
    # the integrating camera clips at 0 (offset -12 counts, read noise 125): the clipped rms
    # is still proportional to the read noise to a few percent
    assert rms[2] / rms[1] == pytest.approx(2.0, rel=0.06)
    assert rms[4] / rms[1] == pytest.approx(4.0, rel=0.06)


def test_binning_must_divide_the_sensor() -> None:
    with session("pymmcore-plus", size=96) as scope:
        assert scope.core.getAllowedPropertyValues(CAM, "Binning") == ("1", "2", "4", "8")
        scope.core.setProperty(CAM, "OnCameraCCDXSize", 36)
        assert scope.core.getAllowedPropertyValues(CAM, "Binning") == ("1", "2", "4")
        assert scope.camera is not None
        with pytest.raises(ConfigError, match="binning 8 not possible"):
            scope.camera.set_binning(8)


# -- ROI ------------------------------------------------------------------------------------


def test_roi_returns_the_matching_subframe(stack: str) -> None:
    with session(stack, dose_rate=5_000_000.0, drift_px_per_s=(7.0, 3.0)) as scope:
        core, camera = scope.core, scope.camera
        assert camera is not None
        scope.move_stage(0.9, 0.6)  # a field with particles
        core.setProperty(CAM, "Binning", 2)
        full = acquire(scope).stack()[0].astype(np.float64)
        full_info = logged(scope, 1)[0]
        core.setROI(8, 16, 40, 24)  # binned pixels
        assert list(core.getROI()) == [8, 16, 40, 24]
        sub = acquire(scope, loops=2).stack().astype(np.float64)
        sub_info = logged(scope, 1)[0]
        tags = sub_info.tags()
        core.clearROI()
        after = acquire(scope).stack()[0]
        # the noise-free image of the ROI frame is the full frame's crop, drift included
        truth_full = camera.ground_truth(replace(full_info, t_s=sub_info.t_s))
        truth_sub = camera.ground_truth(sub_info)
    assert sub.shape == (2, 24, 40) and after.shape == (64, 64)
    np.testing.assert_allclose(truth_sub, truth_full[16:40, 8:48], rtol=1e-5)
    assert (tags["ROI-X-start"], tags["ROI-Y-start"]) == ("8", "16")
    # the recorded ROI frame shows that part of the specimen (drift moves it between frames,
    # so compare with the full frame's noise-free image at the ROI frame's time)
    same = np.corrcoef(sub[1].ravel(), truth_full[16:40, 8:48].ravel())[0, 1]
    shifted = np.corrcoef(sub[1].ravel(), truth_full[0:24, 0:40].ravel())[0, 1]
    assert same > 0.8 > 0.3 > abs(shifted)
    assert full.shape == (64, 64)


def test_roi_outside_the_frame_and_binning_change_clears_it() -> None:
    with session("pymmcore-plus") as scope:
        core = scope.core
        with pytest.raises(ConfigError, match="not inside the 128x128 frame"):
            core.setROI(100, 0, 64, 64)
        core.setROI(0, 0, 32, 32)
        core.setProperty(CAM, "Binning", 2)
        assert list(core.getROI()) == [0, 0, 64, 64]


# -- focus ----------------------------------------------------------------------------------


def _through_focus(scope: MicroscopeSession) -> tuple[np.ndarray, list[FrameInfo]]:
    scope.move_stage(0.9, 0.6)  # a field with particles (9000 A, 6000 A at 30 A/px)
    frames = acquire(scope, z=(-2.0, 2.0, 1.0)).stack().astype(np.float64)
    return frames, logged(scope, len(frames))


@pytest.mark.parametrize("sequenced", [False, True], ids=["software-z", "hardware-z"])
def test_z_stack_of_5_planes_is_a_through_focus_series(stack: str, sequenced: bool) -> None:
    with session(stack, dose_rate=500_000.0) as scope:
        core, camera, focus = scope.core, scope.camera, scope.focus
        assert camera is not None and focus is not None
        core.setProperty("Z", "UseSequences", "Yes" if sequenced else "No")
        assert core.isStageSequenceable("Z") is sequenced
        frames, infos = _through_focus(scope)
        truths = [camera.ground_truth(i) for i in infos]
        assert focus.sequence == ((-2.0, -1.0, 0.0, 1.0, 2.0) if sequenced else ())
    assert frames.shape == (5, 128, 128)
    # default defocus -1000 nm, plus 1000 nm per um of Z
    assert [i.defocus_nm for i in infos] == [-3000.0, -2000.0, -1000.0, 0.0, 1000.0]
    assert infos[0].tags()["TEM-Defocus-nm"] == "-3000.0"
    # each plane's image matches its own defocus best: the Fresnel fringes change with focus
    match = [[np.corrcoef(f.ravel(), t.ravel())[0, 1] for t in truths] for f in frames]
    assert [int(np.argmax(row)) for row in match] == [0, 1, 2, 3, 4]
    # and the planes do not repeat one noise pattern
    noise = [f - t for f, t in zip(frames, truths, strict=True)]
    assert abs(np.corrcoef(noise[0].ravel(), noise[1].ravel())[0, 1]) < 0.05


def test_hardware_sequenced_z_runs_as_one_camera_sequence_on_pymmcore_plus() -> None:
    with session("pymmcore-plus") as scope:
        scope.core.setProperty("Z", "UseSequences", "Yes")
        frames = acquire(scope, z=(-2.0, 2.0, 1.0))
    assert frames.hardware_triggered == [True] * 5


def test_focus_origin_and_home_move_the_reading_not_the_lens() -> None:
    with session("pymmcore-plus") as scope:
        core, camera = scope.core, scope.camera
        assert camera is not None
        core.setPosition("Z", 1.5)
        assert camera.defocus_nm() == pytest.approx(500.0)
        core.setOrigin("Z")
        assert core.getPosition("Z") == pytest.approx(0.0)
        assert float(core.getProperty(CAM, "Defocus-nm")) == pytest.approx(500.0)
        core.home("Z")
        assert camera.defocus_nm() == pytest.approx(-1000.0)
        assert scope.focus is not None
        with pytest.raises(ConfigError, match="needs 1 to"):
            scope.focus.send_sequence(())


# -- beam blanking and dose -----------------------------------------------------------------


@pytest.mark.parametrize("detector", ["counting", "integrating"])
def test_closed_beam_gives_dark_frames_and_no_dose(stack: str, detector: str) -> None:
    with session(stack, detector=detector, dose_rate=100_000.0) as scope:
        core = scope.core
        core.setAutoShutter(False)
        core.setShutterOpen(False)
        dark = acquire(scope, loops=3).stack().astype(np.float64)
        dark_infos = logged(scope, 3)
        core.setAutoShutter(True)
        lit = acquire(scope, loops=3).stack().astype(np.float64)
        lit_infos = logged(scope, 3)
        closed_after = core.getShutterOpen()
        scope.move_stage(20.0, 0.0)  # another field: it has taken no dose yet
        other = acquire(scope).stack()
        other_info = logged(scope, 1)[0]
    assert all(i.tags()["TEM-BeamOpen"] == "0" for i in dark_infos)
    assert [i.accumulated_dose_e_per_A2 for i in dark_infos] == [0.0, 0.0, 0.0]
    if detector == "counting":
        assert not dark.any()
    else:  # offset and read noise only: no trace of the specimen, mean of a clipped normal
        assert dark.mean() == pytest.approx(44.6, rel=0.05)
        assert abs(np.corrcoef(dark[0].ravel(), lit[0].ravel())[0, 1]) < 0.05
    assert lit.mean() > 20 * max(dark.mean(), 1.0)
    # auto-shutter: open for the frames, closed after
    assert all(i.beam_open for i in lit_infos) and closed_after is False
    per_frame = lit_infos[0].frame_dose_e_per_A2
    assert per_frame == pytest.approx(100_000.0 * 0.002 / 30.0**2)
    doses = [i.accumulated_dose_e_per_A2 for i in lit_infos]
    np.testing.assert_allclose(doses, [per_frame, 2 * per_frame, 3 * per_frame])
    assert lit_infos[-1].tags()["TEM-AccumulatedDose-e-per-A2"] == repr(doses[-1])
    assert other.shape == (1, 128, 128)
    assert other_info.accumulated_dose_e_per_A2 == pytest.approx(per_frame)


def test_keeping_the_beam_open_by_hand_lights_every_frame() -> None:
    with session("pymmcore-plus") as scope:
        scope.core.setAutoShutter(False)
        scope.core.setShutterOpen(True)
        frames = acquire(scope, loops=2).stack()
        assert scope.core.getShutterOpen() is True
    assert frames.mean() > 1.0


# -- bit depth ------------------------------------------------------------------------------


@pytest.mark.parametrize("camera", CAMERAS)
def test_8bit_frames(stack: str, camera: str) -> None:
    with session(stack, camera=camera, detector="integrating") as scope:
        core = scope.core
        label = core.getCameraDevice()
        sixteen = acquire(scope, loops=2).stack()
        core.setProperty(label, "PixelType", "8bit")
        eight = acquire(scope, loops=2).stack()
        if camera == "tem":
            cpe = float(core.getProperty(label, "CountsPerElectron"))
            settings = scope.recorder_settings()
            tags = logged(scope, 1)[0].tags()
    assert sixteen.dtype == np.uint16 and eight.dtype == np.uint8
    assert eight.shape == sixteen.shape
    if camera == "tem":
        assert cpe == pytest.approx(44.0 / 16.0)
        assert settings["counts_per_electron"] == pytest.approx(cpe)
        assert tags["TEM-CountsPerElectron"] == repr(cpe) and tags["TEM-PixelType"] == "8bit"
        assert eight.astype(np.float64).mean() == pytest.approx(
            sixteen.astype(np.float64).mean() / 16.0, rel=0.1
        )


def test_8bit_scale_is_recorded_and_saturates_at_255() -> None:
    with session("pymmcore-plus", dose_rate=500_000.0) as scope:
        core = scope.core
        core.setProperty(CAM, "PixelType", "8bit")
        core.setProperty(CAM, "EightBitScale", 0.5)
        assert float(core.getProperty(CAM, "CountsPerElectron")) == pytest.approx(0.5)
        core.setProperty(CAM, "EightBitScale", 2.0)
        frames = acquire(scope).stack()  # about 1000 e-/px: saturates
    assert frames.max() == 255
    counts = np.array([0, 1, 2, 200, 60000], np.uint16)
    assert to_uint8(counts, 0.5).tolist() == [0, 1, 1, 100, 255]


# -- image format changes ---------------------------------------------------------------------


@pytest.mark.parametrize("camera", CAMERAS)
def test_image_size_and_binning_change_between_acquisitions(stack: str, camera: str) -> None:
    with session(stack, camera=camera) as scope:
        core = scope.core
        label = core.getCameraDevice()
        core.setProperty(label, "OnCameraCCDXSize", 96)
        core.setProperty(label, "OnCameraCCDYSize", 64)
        a = acquire(scope, loops=2).stack()
        core.setProperty(label, "Binning", 2)
        b = acquire(scope, loops=2).stack()
        core.setProperty(label, "Binning", 1)
        core.setProperty(label, "OnCameraCCDXSize", 128)
        core.setProperty(label, "OnCameraCCDYSize", 128)
        c = acquire(scope).stack()
    assert a.shape == (2, 64, 96) and b.shape == (2, 32, 48) and c.shape == (1, 128, 128)


def test_non_square_sensor_reads_out_the_centre_of_the_field() -> None:
    with session("pymmcore-plus", dose_rate=0.0) as scope:
        camera = scope.camera
        assert camera is not None
        scope.core.setProperty(CAM, "OnCameraCCDXSize", 64)
        scope.core.snapImage()
        info = logged(scope, 1)[0]
    assert info.region == (32, 0, 64, 128)


def test_image_format_is_refused_during_a_sequence_and_free_after() -> None:
    with session("pymmcore-plus", real_time=True, exposure_ms=5.0) as scope:
        core = scope.core
        core.startContinuousSequenceAcquisition(0)
        try:
            for prop, value in [
                ("PixelType", "8bit"),
                ("Binning", 2),
                ("OnCameraCCDXSize", 64),
            ]:
                with pytest.raises(AcquisitionError, match="while the camera acquires"):
                    core.setProperty(CAM, prop, value)
            with pytest.raises(AcquisitionError, match="cannot change the ROI"):
                core.setROI(0, 0, 32, 32)
            core.setExposure(3.0)  # exposure may change, as on Micro-Manager cameras
        finally:
            core.stopSequenceAcquisition()
        core.setProperty(CAM, "PixelType", "8bit")
        core.setProperty(CAM, "Binning", 2)
        assert scope.camera is not None and scope.camera.shape() == (64, 64)


# -- what a DemoCamera script does ----------------------------------------------------------


@pytest.mark.parametrize("camera", CAMERAS)
def test_mda_with_time_z_and_positions(stack: str, camera: str) -> None:
    positions = [(0.0, 0.0), (30.0, -10.0)]
    with session(stack, camera=camera) as scope:
        frames = acquire(scope, loops=2, z=(0.0, 1.0, 1.0), positions=positions).stack()
        infos = logged(scope, 8) if camera == "tem" else []
    assert frames.shape[0] == 8 and frames.dtype == np.uint16
    if camera == "tem":
        stage = [i.stage_xy_um for i in infos]
        assert [round(x) for x, _ in stage] == [0, 0, 30, 30] * 2
        assert [i.focus_um for i in infos] == [0.0, 1.0] * 4


@pytest.mark.parametrize("camera", CAMERAS)
def test_hardware_sequenced_time_lapse(camera: str) -> None:
    with session("pymmcore-plus", camera=camera) as scope:
        frames = acquire(scope, loops=6)
    assert frames.hardware_triggered == [True] * 6
    assert frames.stack().shape[0] == 6


# ndstorage (pycro-manager's NDTiff storage) leaves one reader of the finished file open
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("camera", CAMERAS)
def test_pycromanager_hooks_and_futures(camera: str, tmp_path: Any) -> None:
    calls: dict[str, int] = {"pre": 0, "post": 0}

    def pre_hardware(event: Any) -> Any:
        calls["pre"] += 1
        return event

    def post_camera(event: Any) -> Any:
        calls["post"] += 1
        return event

    with session("pycromanager", camera=camera):
        with Acquisition(
            directory=str(tmp_path),
            name="hooks",
            show_display=False,
            pre_hardware_hook_fn=pre_hardware,
            post_camera_hook_fn=post_camera,
        ) as acq:
            future = acq.acquire(multi_d_acquisition_events(num_time_points=3))
            image = future.await_image_saved({"time": 2}, return_image=True)
        acq.get_dataset().close()
    assert calls["pre"] > 0 and calls["post"] > 0
    assert image.shape == (128, 128) if camera == "tem" else image.ndim == 2


# -- the core simulator pieces ----------------------------------------------------------------


def test_simulator_region_is_checked() -> None:
    sim = TEMSimulator(SimulationConfig(size=64))
    with pytest.raises(SimulationError, match="not inside"):
        sim.render(0.001, region=(32, 0, 64, 64))
    with pytest.raises(SimulationError, match="binning-4 pixel grid"):
        sim.render(0.001, binning=4, region=(2, 0, 32, 32))
    assert sim.render(0.001, binning=2, region=(2, 4, 8, 16)).shape == (8, 4)


def test_defocus_siblings_share_noise_and_dose() -> None:
    sim = TEMSimulator(SimulationConfig(size=64, dose_rate=1e5))
    other = sim.at_defocus(-2500.0)
    assert other is sim.at_defocus(-2500.0) and sim.at_defocus(-1000.0) is sim
    assert other.rng is sim.rng and other.dose is sim.dose and other.defocus_nm == -2500.0
    sim.expose(0.001)
    other.expose(0.001)
    _, dose = sim.expose(0.001, beam_open=False)
    assert dose == pytest.approx(2 * 1e5 * 0.001 / 30.0**2)


def test_field_dose_grid() -> None:
    record = FieldDose(100.0)
    assert record.field_of((49.0, -49.0)) == (0, 0)
    assert record.field_of((51.0, 0.0)) == (1, 0)
    record.add((0.0, 0.0), 1.5)
    assert record.add((10.0, 10.0), 1.0) == 2.5
    assert record.dose((300.0, 0.0)) == 0.0
    assert record.fields() == {(0, 0): 2.5}
