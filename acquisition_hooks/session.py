"""Headless microscope sessions for both Python stacks, with no microscope attached.

``simulated_microscope`` builds a real Micro-Manager core (pymmcore-plus ``UniMMCore``) with
Micro-Manager's own C++ demo hub and XY stage (from the ``mm-test-adapters`` wheel) and our
simulated TEM devices beside them (:mod:`acquisition_hooks.camera`): the camera ``TEMCamera``,
the focus ``Z`` (the core's focus device: Z adds to the defocus) and the beam blanker
``Shutter`` (the core's shutter). With ``stack="pycromanager"`` (the default) it attaches the
core to pycro-manager's Python acquisition engine and tears everything down on exit, so that a
plain ``pycromanager.Acquisition`` acquires from it::

    from pycromanager import Acquisition
    from acquisition_hooks import simulated_microscope

    with simulated_microscope(dose_rate=2500.0, detector="counting", seed=0) as scope:
        with Acquisition(directory=None, name="t", show_display=False) as acq:
            acq.acquire([{"axes": {"time": i}, "exposure": 2.0} for i in range(8)])
        frames = acq.get_dataset().as_array()

With ``stack="pymmcore-plus"`` the core is left unattached, for pymmcore-plus' own MDA engine
(``scope.core.mda.run(useq.MDASequence(...), output=handler)``)::

    import useq
    from acquisition_hooks import simulated_microscope

    with simulated_microscope(stack="pymmcore-plus") as scope:
        scope.core.mda.run(useq.MDASequence(time_plan={"interval": 0, "loops": 8}))

``camera="democamera"`` loads Micro-Manager's demo configuration instead (its C++ DemoCamera),
for comparing against the reference device.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, get_args

from tem_acq.errors import AcquisitionError, ConfigError
from tem_acq.schema import as_model
from tem_acq.sim import SimulationConfig

from ._engine import attach_core, snake_case_core_class
from .camera import MAX_SENSOR_SIZE, BeamBlanker, SimulatedFocus, SimulatedTEMCamera

__all__ = ["MAX_SENSOR_SIZE", "STACKS", "MicroscopeSession", "simulated_microscope"]

Stack = Literal["pycromanager", "pymmcore-plus"]
#: The Python microscope stacks a session can serve.
STACKS: tuple[str, ...] = get_args(Stack)

#: Device labels in the simulated microscope's core.
CAMERA_LABEL = "TEMCamera"
XY_STAGE_LABEL = "XY"
HUB_LABEL = "DHub"
FOCUS_LABEL = "Z"
SHUTTER_LABEL = "Shutter"


@dataclass
class MicroscopeSession:
    """What a ``simulated_microscope`` block gives you.

    Attributes
    ----------
    core
        The Micro-Manager core, a ``UniMMCore``: for ``stack="pycromanager"`` with snake_case
        aliases and attached to pycro-manager's Python engine; for ``"pymmcore-plus"`` a plain
        one, whose ``core.mda`` runs useq sequences.
    camera
        The simulated TEM camera device, or None for ``camera="democamera"``.
    focus, beam
        The simulated TEM's focus (label ``"Z"``, the core's focus device) and beam blanker
        (label ``"Shutter"``, the core's shutter), or None for ``camera="democamera"``.
    stack
        Which stack the session serves (:data:`STACKS`).
    """

    core: Any
    camera: SimulatedTEMCamera | None
    stack: Stack = "pycromanager"
    focus: SimulatedFocus | None = None
    beam: BeamBlanker | None = None

    def recorder_settings(self) -> dict[str, Any]:
        """Instrument settings for :class:`acquisition_hooks.LiveRecorder`, from the camera."""
        if self.camera is None:
            raise AcquisitionError(
                "the DemoCamera configuration has no TEM calibration; give pixel_size_A and "
                "counts_per_electron to LiveRecorder yourself"
            )
        cam = self.camera
        return {
            "pixel_size_A": cam.simulator.pixel_size_A * cam.get_binning(),
            "counts_per_electron": cam.counts_per_electron(),
            "voltage_kV": cam.config.voltage_kv,
            "camera": f"simulated TEM camera ({cam.config.detector})",
            "detector": cam.config.detector,
            "detector_model": cam.detector_model(),
            "binning": cam.get_binning(),
            "dose_rate_e_per_px_per_s": cam.config.dose_rate * cam.get_binning() ** 2,
            "simulated": True,
            "description": f"simulated {cam.config.specimen} specimen, seed {cam.config.seed}",
            "frame_shape": cam.shape(),
        }

    def move_stage(self, x_um: float, y_um: float) -> None:
        """Move the XY stage and wait until it gets there."""
        label = self.core.getXYStageDevice()
        self.core.setXYPosition(label, float(x_um), float(y_um))
        self.core.waitForDevice(label)


def _adapter_path() -> str:
    try:
        import mm_test_adapters
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        raise AcquisitionError(
            "the simulated microscope needs Micro-Manager's demo adapters: "
            "pip install 'mm-test-adapters==75.20261014.post1' (or pip install 'tem-acq[test]')"
        ) from exc
    return str(mm_test_adapters.device_adapter_path())


@contextmanager
def simulated_microscope(
    *,
    dose_rate: float = 2500.0,
    detector: str = "counting",
    seed: int = 0,
    drift_px_per_s: float | tuple[float, float] = 0.0,
    size: int = 512,
    specimen: str = "nanoparticles",
    exposure_ms: float = 2.0,
    real_time: bool = True,
    camera: Literal["tem", "democamera"] = "tem",
    buffer_size_mb: int = 512,
    stack: Stack = "pycromanager",
    **simulation: Any,
) -> Iterator[MicroscopeSession]:
    """Run a simulated TEM in a real Micro-Manager core for either Python stack.

    Parameters
    ----------
    dose_rate
        Electrons per unbinned pixel per second in vacuum.
    detector
        ``"counting"`` (Poisson) or ``"integrating"`` (OneView-like scintillator camera).
    seed
        Seed of the specimen and the noise: the same seed gives the same frames.
    drift_px_per_s
        Stage drift in pixels per second, along x (a number) or as (x, y).
    size
        Sensor size in unbinned pixels (square), at most :data:`MAX_SENSOR_SIZE`.
    specimen
        ``"nanoparticles"`` (low magnification) or ``"atomic"`` (atomic resolution).
    exposure_ms
        Initial exposure; events may set their own with an ``"exposure"`` key (ms).
    real_time
        Pace frames at the exposure time, as a real camera does.
    camera
        ``"tem"`` for the simulated TEM camera, ``"democamera"`` for Micro-Manager's C++
        DemoCamera configuration (no TEM physics).
    buffer_size_mb
        Size of the core's circular buffer for sequence acquisitions.
    stack
        ``"pycromanager"``: the core is attached to pycro-manager's Python backend, so
        ``pycromanager.Acquisition`` acquires from it. ``"pymmcore-plus"``: a plain
        ``UniMMCore`` for ``core.mda.run`` (pymmcore-plus' MDA engine, useq sequences).
    **simulation
        Further :class:`tem_acq.sim.SimulationConfig` fields (e.g. ``pixel_size_A``).

    Yields
    ------
    MicroscopeSession
        The core and the camera device.

    Raises
    ------
    ConfigError
        If a setting is invalid (one line naming each), or ``size`` exceeds
        :data:`MAX_SENSOR_SIZE`.
    AcquisitionError
        If another core is already active in this process (``stack="pycromanager"``), or the
        demo adapters are missing.
    """
    if stack not in STACKS:
        raise ConfigError(f"stack must be one of {', '.join(STACKS)}; got {stack!r}")
    if isinstance(size, int) and size > MAX_SENSOR_SIZE:
        raise ConfigError(
            f"invalid simulation settings: size {size} is larger than the simulated camera's "
            f"{MAX_SENSOR_SIZE} px (a {MAX_SENSOR_SIZE}x{MAX_SENSOR_SIZE} sensor takes about "
            "1.1 GB of memory); choose a smaller --size"
        )
    adapters = _adapter_path()
    config = _simulation_config(
        camera,
        specimen=specimen,
        detector=detector,
        dose_rate=dose_rate,
        seed=seed,
        drift_px_per_s=drift_px_per_s,
        size=size,
        **simulation,
    )

    from pymmcore_plus.experimental.unicore import UniMMCore

    # pycro-manager's engine calls snake_case names; pymmcore-plus' MDA engine the core's own
    core = snake_case_core_class(UniMMCore)() if stack == "pycromanager" else UniMMCore()
    with ExitStack() as cleanup:
        cleanup.callback(core.unloadAllDevices)
        session = _load_devices(core, adapters, config, exposure_ms, real_time=real_time)
        session.stack = stack
        core.setCircularBufferMemoryFootprint(buffer_size_mb)
        if stack == "pycromanager":
            cleanup.enter_context(attach_core(core))
        yield session


def _simulation_config(camera: str, **fields: Any) -> SimulationConfig | None:
    """The simulation behind ``camera="tem"``; None for Micro-Manager's DemoCamera.

    Raises
    ------
    ConfigError
        If a setting is invalid (one line naming each problem) or the camera is unknown.
    """
    if camera == "tem":
        return as_model(SimulationConfig, fields, "invalid simulation settings", ConfigError)
    if camera != "democamera":
        raise ConfigError(f"camera must be 'tem' or 'democamera', got {camera!r}")
    return None


def _load_devices(
    core: Any,
    adapters: str,
    config: SimulationConfig | None,
    exposure_ms: float,
    *,
    real_time: bool,
) -> MicroscopeSession:
    """Load the simulated microscope's devices into ``core``.

    Our TEM camera, focus and beam blanker (Python devices) go beside Micro-Manager's demo hub
    and XY stage (the stage at the origin); with no ``config``, Micro-Manager's demo
    configuration is loaded instead (no TEM devices).
    """
    core.setDeviceAdapterSearchPaths([adapters])
    if config is None:
        core.loadSystemConfiguration(os.path.join(adapters, "MMConfig_demo.cfg"))
        core.setExposure(exposure_ms)
        return MicroscopeSession(core=core, camera=None)
    core.loadDevice(HUB_LABEL, "DemoCamera", "DHub")
    core.loadDevice(XY_STAGE_LABEL, "DemoCamera", "DXYStage")
    core.setParentLabel(XY_STAGE_LABEL, HUB_LABEL)
    focus, beam = SimulatedFocus(), BeamBlanker()
    camera = SimulatedTEMCamera(
        config,
        stage_position_um=lambda: core.getXYPosition(XY_STAGE_LABEL),
        focus=focus,
        beam=beam,
        # a UniMMCore leaves auto-shutter to Python cameras: ours drives the beam blanker
        auto_shutter=lambda: core.getAutoShutter() and core.getShutterDevice() == SHUTTER_LABEL,
        real_time=real_time,
    )
    core.loadPyDevice(FOCUS_LABEL, focus)
    core.loadPyDevice(SHUTTER_LABEL, beam)
    core.loadPyDevice(CAMERA_LABEL, camera)
    if hasattr(core, "snap_tags"):  # the pycro-manager shim's snap metadata
        core.snap_tags = camera.last_frame_tags
    core.initializeAllDevices()
    core.setFocusDevice(FOCUS_LABEL)
    core.setShutterDevice(SHUTTER_LABEL)
    core.setXYStageDevice(XY_STAGE_LABEL)
    core.setCameraDevice(CAMERA_LABEL)
    core.setExposure(exposure_ms)
    core.setXYPosition(XY_STAGE_LABEL, 0.0, 0.0)
    core.waitForDevice(XY_STAGE_LABEL)
    return MicroscopeSession(core=core, camera=camera, focus=focus, beam=beam)
