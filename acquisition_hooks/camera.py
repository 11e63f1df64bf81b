"""A simulated TEM camera as a real Micro-Manager device (pymmcore-plus ``UniMMCore``).

The camera wraps :class:`tem_acq.sim.TEMSimulator`: every frame is rendered from the specimen
field under the core's XY stage, at the current exposure, binning, dose rate and detector, at
the time it is taken (so stage drift shows between frames). Frames are paced in real time by
default (a 5 ms exposure takes 5 ms), like a camera, so pipelines are measured at a realistic
frame rate; rendering itself takes a few milliseconds per 512x512 frame.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import CameraDevice

from tem_acq.detector import DetectorModel
from tem_acq.errors import ConfigError
from tem_acq.sim import DETECTOR_KINDS, SPECIMEN_KINDS, SimulationConfig, TEMSimulator

#: Binning factors the camera offers (a OneView bins 1-8).
ALLOWED_BINNING = (1, 2, 4, 8)

#: Prefix of the metadata tags this camera adds to every frame.
TAG_PREFIX = "TEM-"


@dataclass(frozen=True)
class FrameInfo:
    """What the camera knows about one frame it produced: enough to re-render its ground truth.

    ``t_s`` is the start of the exposure on the simulator's drift clock.
    """

    frame_id: int
    exposure_ms: float
    binning: int
    stage_xy_um: tuple[float, float]
    stage_xy_px: tuple[float, float]
    t_s: float
    dose_e_per_px: float

    def tags(self) -> dict[str, str]:
        """Micro-Manager metadata tags (strings, as cores deliver them)."""
        return {
            f"{TAG_PREFIX}FrameId": str(self.frame_id),
            f"{TAG_PREFIX}Exposure-ms": repr(self.exposure_ms),
            f"{TAG_PREFIX}Dose-e-per-px": repr(self.dose_e_per_px),
            f"{TAG_PREFIX}StageX-um": repr(self.stage_xy_um[0]),
            f"{TAG_PREFIX}StageY-um": repr(self.stage_xy_um[1]),
            f"{TAG_PREFIX}Time-s": repr(self.t_s),
        }


class SimulatedTEMCamera(CameraDevice):
    """Micro-Manager camera device rendering low-dose TEM frames from :mod:`tem_acq.sim`.

    Parameters
    ----------
    config
        The simulation (specimen, detector, dose rate, seed, drift, sensor size).
    stage_position_um
        Returns the current (x, y) stage position in micrometres; the session passes the core's
        XY stage. ``None`` keeps the field fixed at the specimen's origin.
    real_time
        Pace frames at the exposure time, like a real camera. ``False`` renders as fast as
        possible (for benchmarks of everything downstream of the camera).

    Notes
    -----
    Properties (besides Exposure and Binning): ``DoseRate`` (e-/px/s per unbinned pixel in
    vacuum), ``Detector``, ``Specimen``, ``Seed``, ``DriftX`` and ``DriftY`` (px/s),
    ``RealTime``, and read-only ``CountsPerElectron`` and ``PixelSizeAngstrom`` (per binned pixel).
    """

    def __init__(
        self,
        config: SimulationConfig,
        *,
        stage_position_um: Callable[[], tuple[float, float]] | None = None,
        real_time: bool = True,
        frame_log_length: int = 4096,
    ) -> None:
        super().__init__()
        self._config = config
        self._sim = TEMSimulator(config)
        self._sim_lock = threading.Lock()
        self._exposure_ms = 10.0
        self._binning = 1
        self._real_time = real_time
        self._stage_position_um = stage_position_um
        self._t0 = time.perf_counter()
        self._next_frame_id = 0
        #: The most recent frames' :class:`FrameInfo`, oldest first.
        self.frame_log: deque[FrameInfo] = deque(maxlen=frame_log_length)
        self._register_tem_properties()

    # -- Micro-Manager device API ---------------------------------------------------------

    def get_exposure(self) -> float:
        """Exposure in milliseconds."""
        return self._exposure_ms

    def set_exposure(self, exposure: float) -> None:
        """Set the exposure in milliseconds (must be > 0)."""
        exposure = float(exposure)
        if not exposure > 0:
            raise ConfigError(f"exposure must be > 0 ms, got {exposure}")
        self._exposure_ms = exposure

    def get_binning(self) -> int:
        """Camera binning factor (counts of binning x binning pixels are summed)."""
        return self._binning

    def set_binning(self, value: int) -> None:
        """Set the binning; the sensor size must be divisible by it."""
        value = int(value)
        if value not in ALLOWED_BINNING or self._config.size % value:
            raise ConfigError(
                f"binning {value} not possible: allowed {ALLOWED_BINNING}, dividing the "
                f"sensor size {self._config.size}"
            )
        self._binning = value

    def shape(self) -> tuple[int, int]:
        """Frame shape after binning."""
        n = self._config.size // self._binning
        return (n, n)

    def dtype(self) -> Any:
        """Frames are uint16 counts."""
        return np.uint16

    def start_sequence(
        self,
        n: int | None,
        get_buffer: Callable[[Sequence[int], Any], np.ndarray],
    ) -> Iterator[Mapping]:
        """Render ``n`` frames (or until stopped), paced at the exposure time when real-time."""
        shape, dtype = self.shape(), self.dtype()
        start = time.perf_counter()
        count = 0
        while n is None or count < n:
            # Real cameras deliver frame k at start + (k+1) * exposure; never earlier.
            due = start + (count + 1) * self._exposure_ms / 1000.0
            buf = get_buffer(shape, dtype)
            info = self._render_into(buf, frame_end=due)
            if self._real_time:
                _sleep_until(due)
            count += 1
            yield info.tags()

    # -- simulation -----------------------------------------------------------------------

    @property
    def simulator(self) -> TEMSimulator:
        """The simulator currently behind the camera (replaced when a physics property changes)."""
        return self._sim

    @property
    def config(self) -> SimulationConfig:
        """The simulation configuration currently in force."""
        return self._config

    def reconfigure(self, **changes: Any) -> None:
        """Replace fields of the simulation configuration (validated) and rebuild the simulator."""
        config = self._config.model_validate({**self._config.model_dump(), **changes})
        with self._sim_lock:
            self._config = config
            self._sim = TEMSimulator(config)

    def detector_model(self) -> DetectorModel:
        """The detector model (electrons) this camera's frames are sampled with."""
        with self._sim_lock:
            return self._config.detector_model

    def stage_xy_um(self) -> tuple[float, float]:
        """The current stage position in micrometres (origin when no stage is attached)."""
        if self._stage_position_um is None:
            return (0.0, 0.0)
        x, y = self._stage_position_um()
        return (float(x), float(y))

    def ground_truth(self, info: FrameInfo) -> np.ndarray:
        """Noise-free expected electrons per pixel of a frame this camera produced."""
        with self._sim_lock:
            sim = self._sim
        return sim.expected_electrons(
            exposure_s=info.exposure_ms / 1000.0,
            stage_xy_px=info.stage_xy_px,
            t=info.t_s,
            binning=info.binning,
        )

    def frame_info(self, frame_id: int) -> FrameInfo | None:
        """The :class:`FrameInfo` of a recent frame by its ``TEM-FrameId`` tag, if still logged."""
        for info in reversed(self.frame_log):
            if info.frame_id == frame_id:
                return info
        return None

    def last_frame_tags(self) -> dict[str, str]:
        """Tags of the most recent frame (what a snap reports; sequences carry their own)."""
        return self.frame_log[-1].tags() if self.frame_log else {}

    def snap_frame(self) -> np.ndarray:
        """Render one frame outside Micro-Manager (used by tools; the core snaps via sequences)."""
        buf = np.empty(self.shape(), dtype=np.uint16)
        self._render_into(buf, frame_end=time.perf_counter() + self._exposure_ms / 1000.0)
        return buf

    def _render_into(self, buf: np.ndarray, *, frame_end: float) -> FrameInfo:
        exposure_s = self._exposure_ms / 1000.0
        with self._sim_lock:
            sim = self._sim
            frame_id = self._next_frame_id
            self._next_frame_id += 1
        stage_um = self.stage_xy_um()
        # micrometres -> specimen pixels (unbinned): 1 um = 1e4 A
        px = sim.pixel_size_A
        stage_px = (stage_um[0] * 1e4 / px, stage_um[1] * 1e4 / px)
        # the simulator averages drift over the exposure starting at t
        t_start = frame_end - exposure_s - self._t0
        buf[...] = sim.render(
            exposure_s=exposure_s, stage_xy_px=stage_px, t=t_start, binning=self._binning
        )
        info = FrameInfo(
            frame_id=frame_id,
            exposure_ms=self._exposure_ms,
            binning=self._binning,
            stage_xy_um=stage_um,
            stage_xy_px=stage_px,
            t_s=t_start,
            dose_e_per_px=self.nominal_dose_e_per_px(),
        )
        self.frame_log.append(info)
        return info

    def nominal_dose_e_per_px(self) -> float:
        """Electrons per (binned) pixel per frame in vacuum at the current settings."""
        return self._config.dose_rate * self._exposure_ms / 1000.0 * self._binning**2

    # -- properties -----------------------------------------------------------------------

    def _register_tem_properties(self) -> None:
        # Binning is a standard property (registered from get/set_binning); restrict its values.
        self.set_property_allowed_values(
            "Binning", [b for b in ALLOWED_BINNING if self._config.size % b == 0]
        )
        physics: list[tuple[str, str, type, dict[str, Any]]] = [
            ("DoseRate", "dose_rate", float, {"limits": (0.0, 1e7)}),
            ("Detector", "detector", str, {"allowed_values": list(DETECTOR_KINDS)}),
            ("Specimen", "specimen", str, {"allowed_values": list(SPECIMEN_KINDS)}),
            ("Seed", "seed", int, {}),
        ]
        for prop, field, kind, extra in physics:
            self.register_property(
                prop,
                property_type=kind,
                getter=_config_getter(field),
                setter=_config_setter(field),
                **extra,
            )
        for axis, prop in enumerate(("DriftX", "DriftY")):
            self.register_property(
                prop,
                property_type=float,
                getter=_drift_getter(axis),
                setter=_drift_setter(axis),
            )
        self.register_property(
            "RealTime",
            property_type=str,
            getter=lambda dev: "Yes" if dev._real_time else "No",
            setter=lambda dev, v: setattr(dev, "_real_time", str(v) == "Yes"),
            allowed_values=["Yes", "No"],
        )
        self.register_property(
            "CountsPerElectron",
            property_type=float,
            getter=lambda dev: float(dev._sim.counts_per_electron),
            is_read_only=True,
        )
        self.register_property(
            "PixelSizeAngstrom",
            property_type=float,
            getter=lambda dev: float(dev._sim.pixel_size_A * dev._binning),
            is_read_only=True,
        )


def _config_getter(field: str) -> Callable[[SimulatedTEMCamera], Any]:
    return lambda dev: getattr(dev._config, field)


def _config_setter(field: str) -> Callable[[SimulatedTEMCamera, Any], None]:
    return lambda dev, value: dev.reconfigure(**{field: value})


def _drift_getter(axis: int) -> Callable[[SimulatedTEMCamera], float]:
    return lambda dev: float(_drift_vector(dev._config)[axis])


def _drift_setter(axis: int) -> Callable[[SimulatedTEMCamera, float], None]:
    def set_drift(dev: SimulatedTEMCamera, value: float) -> None:
        drift = list(_drift_vector(dev._config))
        drift[axis] = float(value)
        dev.reconfigure(drift_px_per_s=tuple(drift))

    return set_drift


def _drift_vector(config: SimulationConfig) -> tuple[float, float]:
    # SimulationConfig already turns a scalar drift into (x, 0)
    x, y = config.drift_px_per_s
    return (float(x), float(y))


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)
