"""The simulated TEM as real Micro-Manager devices (pymmcore-plus ``UniMMCore`` Python devices).

:class:`SimulatedTEMCamera` wraps :class:`tem_acq.sim.TEMSimulator`: every frame is rendered from
the specimen field under the core's XY stage, at the current exposure, binning, readout region,
bit depth, dose rate, detector and defocus, at the time it is taken (so stage drift shows
between frames). Frames are paced in real time by default (a 5 ms exposure takes 5 ms), like a
camera, so pipelines are measured at a realistic frame rate; rendering itself takes a few
milliseconds per 512x512 frame.

Beside it, :class:`SimulatedFocus` (the objective focus as the core's focus stage: Z adds to
the defocus, so a z-stack is a through-focus series, hardware-sequenceable as DemoCamera's
``DStage``) and :class:`BeamBlanker` (the core's shutter: closed, frames hold only dark counts
and the specimen takes no dose).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymmcore_plus.experimental.unicore import CameraDevice, ShutterDevice, StageDevice

from tem_acq.detector import DetectorModel
from tem_acq.errors import AcquisitionError, ConfigError
from tem_acq.sim import (
    BINNINGS,
    DETECTOR_KINDS,
    SPECIMEN_KINDS,
    Region,
    SimulationConfig,
    TEMSimulator,
    to_uint8,
)

#: Binning factors the camera offers (a OneView bins 1-8).
ALLOWED_BINNING = BINNINGS

#: The largest simulated sensor (pixels per side): a 4096x4096 camera takes about 1.1 GB in a
#: short acquisition (measured), a 16384x16384 one would take over 16 GB.
MAX_SENSOR_SIZE = 4096

#: Values of the ``PixelType`` property (DemoCamera's names, so its scripts run unchanged).
PIXEL_TYPES: dict[str, Any] = {"8bit": np.uint8, "16bit": np.uint16}

#: Default 8-bit counts per 16-bit count, per detector: counting keeps single electrons,
#: integrating (44 counts/e-, read noise 125 counts) keeps about 90 e- per pixel below 255.
DEFAULT_EIGHT_BIT_SCALE: dict[str, float] = {"counting": 1.0, "integrating": 1.0 / 16.0}

#: Prefix of the metadata tags this camera adds to every frame.
TAG_PREFIX = "TEM-"

#: Defocus change per micrometre of focus travel (nm).
NM_PER_UM = 1000.0


@dataclass(frozen=True)
class FrameInfo:
    """What the camera knows about one frame it produced: enough to re-render its ground truth.

    ``t_s`` is the start of the exposure on the simulator's drift clock; ``region`` the part of
    the simulator's ``size x size`` sensor read out (unbinned pixels), ``roi`` the camera ROI
    ``(x, y, width, height)`` in binned pixels of the sensor.
    """

    frame_id: int
    exposure_ms: float
    binning: int
    stage_xy_um: tuple[float, float]
    stage_xy_px: tuple[float, float]
    t_s: float
    dose_e_per_px: float
    region: Region = (0, 0, 0, 0)
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)
    focus_um: float = 0.0
    defocus_nm: float = 0.0
    beam_open: bool = True
    frame_dose_e_per_A2: float = 0.0
    accumulated_dose_e_per_A2: float = 0.0
    counts_per_electron: float = 1.0
    pixel_type: str = "16bit"

    def tags(self) -> dict[str, str]:
        """Micro-Manager metadata tags (strings, as cores deliver them).

        Besides the ``TEM-`` tags, the keys a Micro-Manager camera adds itself (``Binning``,
        ``ROI-X-start``, ``ROI-Y-start``), so snapped frames carry them too.
        """
        p = TAG_PREFIX
        return {
            f"{p}FrameId": str(self.frame_id),
            f"{p}Exposure-ms": repr(self.exposure_ms),
            f"{p}Dose-e-per-px": repr(self.dose_e_per_px),
            f"{p}StageX-um": repr(self.stage_xy_um[0]),
            f"{p}StageY-um": repr(self.stage_xy_um[1]),
            f"{p}Time-s": repr(self.t_s),
            f"{p}Z-um": repr(self.focus_um),
            f"{p}Defocus-nm": repr(self.defocus_nm),
            f"{p}BeamOpen": "1" if self.beam_open else "0",
            f"{p}FrameDose-e-per-A2": repr(self.frame_dose_e_per_A2),
            f"{p}AccumulatedDose-e-per-A2": repr(self.accumulated_dose_e_per_A2),
            f"{p}CountsPerElectron": repr(self.counts_per_electron),
            f"{p}PixelType": self.pixel_type,
            "Binning": str(self.binning),
            "ROI-X-start": str(self.roi[0]),
            "ROI-Y-start": str(self.roi[1]),
        }


class SimulatedFocus(StageDevice):
    """The objective lens focus as the core's focus stage: Z (um) adds to the defocus.

    The simulated defocus is the configuration's defocus plus ``1000 * z`` nm, ``z`` being the
    lens position (``set_origin`` re-zeroes the reported position, not the lens). Like
    DemoCamera's ``DStage``, it is sequenceable when its ``UseSequences`` property is ``Yes``
    (default ``No``): a loaded sequence starts at its first position and advances one position
    per frame the camera takes (the camera's trigger), wrapping around at its end.
    """

    #: Longest Z sequence the stage accepts.
    SEQUENCE_MAX_LENGTH = 10_000

    def __init__(self) -> None:
        super().__init__()
        self._lens_um = 0.0
        self._offset_um = 0.0
        self._sequence: tuple[float, ...] = ()
        self._step: int | None = None  # index into the running sequence, None when stopped
        self._use_sequences = False
        self._state = threading.Lock()
        self.register_property(
            "UseSequences",
            property_type=str,
            getter=SimulatedFocus._get_use_sequences,
            setter=SimulatedFocus._set_use_sequences,
            allowed_values=["No", "Yes"],
        )

    def description(self) -> str:
        """What the device is."""
        return "simulated TEM objective focus (Z adds to the defocus)"

    def _get_use_sequences(self) -> str:
        return "Yes" if self._use_sequences else "No"

    def _set_use_sequences(self, value: str) -> None:
        self._use_sequences = str(value) == "Yes"

    def lens_um(self) -> float:
        """The lens position (um from the configured defocus) that the optics follow."""
        return self._lens_um

    def get_position_um(self) -> float:
        """The reported focus position in micrometres."""
        return self._lens_um - self._offset_um

    def set_position_um(self, val: float) -> None:
        """Move the focus to ``val`` micrometres (instantly)."""
        value = float(val)
        if not np.isfinite(value):
            raise ConfigError(f"focus position must be a finite number of um, got {val!r}")
        with self._state:
            self._lens_um = value + self._offset_um

    def home(self) -> None:
        """Return the lens to the configured defocus."""
        with self._state:
            self._lens_um = 0.0

    def stop(self) -> None:
        """Moves are instantaneous: nothing to stop."""

    def set_origin(self) -> None:
        """Report the current position as 0 (the lens does not move)."""
        with self._state:
            self._offset_um = self._lens_um

    def set_adapter_origin_um(self, newZUm: float) -> None:
        """Report the current position as ``newZUm`` (the lens does not move)."""
        with self._state:
            self._offset_um = self._lens_um - float(newZUm)

    @property
    def sequence(self) -> tuple[float, ...]:
        """The loaded Z sequence (um), empty when none was loaded."""
        return self._sequence

    def get_sequence_max_length(self) -> int:
        """:attr:`SEQUENCE_MAX_LENGTH` with ``UseSequences=Yes``, else 0 (not sequenceable)."""
        return self.SEQUENCE_MAX_LENGTH if self._use_sequences else 0

    def send_sequence(self, sequence: tuple[float, ...]) -> None:
        """Load the positions (um) of a hardware-triggered Z sequence."""
        values = tuple(float(v) for v in sequence)
        if not values or len(values) > self.SEQUENCE_MAX_LENGTH:
            raise ConfigError(
                f"a Z sequence needs 1 to {self.SEQUENCE_MAX_LENGTH} positions, got {len(values)}"
            )
        with self._state:
            self._sequence = values
            self._step = None

    def start_sequence(self) -> None:
        """Move to the sequence's first position and follow the camera's frames."""
        with self._state:
            if not self._sequence:
                raise AcquisitionError("no Z sequence loaded; load one before starting it")
            self._step = 0
            self._lens_um = self._sequence[0] + self._offset_um

    def stop_sequence(self) -> None:
        """Stop following the camera; the lens stays where it is."""
        with self._state:
            self._step = None

    def frame_taken(self) -> None:
        """The camera's trigger: advance a running sequence to its next position."""
        with self._state:
            if self._step is None:
                return
            self._step = (self._step + 1) % len(self._sequence)
            self._lens_um = self._sequence[self._step] + self._offset_um


class BeamBlanker(ShutterDevice):
    """The beam blanker as the core's shutter: closed, no electron reaches specimen or camera.

    Starts closed. With the core's auto-shutter on, :class:`SimulatedTEMCamera` opens it for
    each snap and sequence and closes it after (a UniMMCore does not do this for Python
    cameras; C++ cores do).
    """

    def __init__(self) -> None:
        super().__init__()
        self._open = False

    def description(self) -> str:
        """What the device is."""
        return "simulated TEM beam blanker"

    def get_open(self) -> bool:
        """True when the beam reaches the specimen."""
        return self._open

    def set_open(self, open: bool) -> None:
        """Unblank (True) or blank (False) the beam."""
        self._open = bool(open)


@dataclass
class _Readout:
    """The camera's image format: sensor size, ROI and pixel type."""

    width: int
    height: int
    roi: tuple[int, int, int, int] | None = None  # binned (x, y, w, h)
    pixel_type: str = "16bit"
    eight_bit_scale: float | None = None  # None: the detector's default
    capturing: bool = field(default=False)


class SimulatedTEMCamera(CameraDevice):
    """Micro-Manager camera device rendering low-dose TEM frames from :mod:`tem_acq.sim`.

    Parameters
    ----------
    config
        The simulation (specimen, detector, dose rate, seed, drift, sensor size).
    stage_position_um
        Returns the current (x, y) stage position in micrometres; the session passes the core's
        XY stage. ``None`` keeps the field fixed at the specimen's origin.
    focus
        The focus stage whose lens position adds to the defocus; ``None``: fixed defocus.
    beam
        The beam blanker; ``None``: the beam is always on.
    auto_shutter
        Returns whether the core's auto-shutter drives ``beam`` (then the camera opens it for
        each snap and sequence and closes it after); ``None``: never.
    real_time
        Pace frames at the exposure time, like a real camera. ``False`` renders as fast as
        possible (for benchmarks of everything downstream of the camera).

    Notes
    -----
    Image format, as Micro-Manager cameras: ``Binning`` (1, 2, 4, 8: counts summed, read noise
    per binned pixel), ROI (``setROI``/``clearROI``, binned pixels; the sub-frame of the same
    specimen; a binning or sensor-size change clears it), ``PixelType`` (``8bit``: counts times
    ``EightBitScale``, saturating at 255; ``16bit``) and the sensor size
    ``OnCameraCCDXSize``/``OnCameraCCDYSize`` (DemoCamera's names; the simulated field is
    square, a non-square sensor reads out its centre). These are refused (one-line
    :class:`~tem_acq.errors.AcquisitionError`) while a sequence runs.

    Physics: ``DoseRate`` (e-/px/s per unbinned pixel in vacuum), ``Detector``, ``Specimen``,
    ``Seed``, ``DriftX`` and ``DriftY`` (px/s), ``RealTime``, and read-only
    ``CountsPerElectron`` (of the frames as delivered: the 8-bit scale included),
    ``PixelSizeAngstrom`` (per binned pixel) and ``Defocus-nm``.

    Every frame's tags (:meth:`FrameInfo.tags`) record its defocus, beam state, the field's
    accumulated dose and the counts per electron. Dose accrues per exposure taken with the beam
    open; time the beam stays open between frames (auto-shutter off) is not counted.
    """

    def __init__(
        self,
        config: SimulationConfig,
        *,
        stage_position_um: Callable[[], tuple[float, float]] | None = None,
        focus: SimulatedFocus | None = None,
        beam: BeamBlanker | None = None,
        auto_shutter: Callable[[], bool] | None = None,
        real_time: bool = True,
        frame_log_length: int = 4096,
    ) -> None:
        super().__init__()
        self._config = config
        self._sim = TEMSimulator(config)
        self._sim_lock = threading.Lock()
        self._exposure_ms = 10.0
        self._binning = 1
        self._readout = _Readout(width=config.size, height=config.size)
        self._real_time = real_time
        self._stage_position_um = stage_position_um
        self._focus = focus
        self._beam = beam
        self._auto_shutter = auto_shutter
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
        """Set the binning (it must divide the sensor size); clears the ROI."""
        value = int(value)
        if value == self._binning:
            return
        self._refuse_while_capturing("Binning")
        r = self._readout
        if value not in ALLOWED_BINNING or r.width % value or r.height % value:
            raise ConfigError(
                f"binning {value} not possible: allowed {ALLOWED_BINNING}, dividing the "
                f"sensor size {r.width}x{r.height}"
            )
        self._binning = value
        r.roi = None

    def shape(self) -> tuple[int, int]:
        """Frame shape (rows, columns): the ROI's, after binning."""
        _, _, w, h = self.get_roi()
        return (h, w)

    def dtype(self) -> Any:
        """uint16 counts, or uint8 with ``PixelType=8bit``."""
        return PIXEL_TYPES[self._readout.pixel_type]

    def get_roi(self) -> tuple[int, int, int, int]:
        """The ROI ``(x, y, width, height)`` in binned pixels (the full sensor when none)."""
        r = self._readout
        if r.roi is not None:
            return r.roi
        return (0, 0, r.width // self._binning, r.height // self._binning)

    def set_roi(self, x: int, y: int, width: int, height: int) -> None:
        """Read out only ``width x height`` binned pixels from ``(x, y)``: the same specimen."""
        self._refuse_while_capturing("the ROI")
        roi = (int(x), int(y), int(width), int(height))
        _, _, full_w, full_h = self._full_frame()
        inside = min(roi[:2]) >= 0 and min(roi[2:]) > 0
        if not (inside and roi[0] + roi[2] <= full_w and roi[1] + roi[3] <= full_h):
            raise ConfigError(
                f"ROI {roi} is not inside the {full_w}x{full_h} frame (binned pixels)"
            )
        self._readout.roi = None if roi == (0, 0, full_w, full_h) else roi

    def clear_roi(self) -> None:
        """Read out the full sensor again."""
        self._refuse_while_capturing("the ROI")
        self._readout.roi = None

    def start_sequence(
        self,
        n: int | None,
        get_buffer: Callable[[Sequence[int], Any], np.ndarray],
    ) -> Iterator[Mapping]:
        """Render ``n`` frames (or until stopped), paced at the exposure time when real-time.

        The camera counts as acquiring from this call on (image format changes are refused).
        Each frame triggers the focus (a running Z sequence moves on); with auto-shutter the
        beam opens for the sequence and closes after its last frame.
        """
        auto = self._auto_shutter
        auto_beam = self._beam is not None and auto is not None and bool(auto())
        self._readout.capturing = True
        if auto_beam:
            self._set_beam(True)
        return self._frames(n, get_buffer, auto_beam)

    def _frames(
        self,
        n: int | None,
        get_buffer: Callable[[Sequence[int], Any], np.ndarray],
        auto_beam: bool,
    ) -> Iterator[Mapping]:
        shape, dtype = self.shape(), self.dtype()

        def finish() -> None:
            self._readout.capturing = False
            if auto_beam:
                self._set_beam(False)

        start = time.perf_counter()
        count = 0
        try:
            while n is None or count < n:
                # Real cameras deliver frame k at start + (k+1) * exposure; never earlier.
                due = start + (count + 1) * self._exposure_ms / 1000.0
                buf = get_buffer(shape, dtype)
                info = self._render_into(buf, frame_end=due)
                if self._real_time:
                    _sleep_until(due)
                if self._focus is not None:
                    self._focus.frame_taken()
                count += 1
                if n is not None and count >= n:
                    finish()  # the core may never resume this generator after the last frame
                yield info.tags()
        finally:
            finish()

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
        """Replace fields of the simulation configuration (validated) and rebuild the simulator.

        The fields' dose record carries over unless the specimen or the field size changes.
        """
        config = self._config.model_validate({**self._config.model_dump(), **changes})
        same_fields = ("specimen", "seed", "pixel_size_A", "size")
        with self._sim_lock:
            old = self._sim
            keep = all(getattr(config, f) == getattr(self._config, f) for f in same_fields)
            self._config = config
            self._sim = TEMSimulator(config, dose=old.dose if keep else None)
        r = self._readout
        if max(r.width, r.height) != config.size:  # a new field: a square sensor that fills it
            r.width = r.height = config.size
            r.roi = None

    def detector_model(self) -> DetectorModel:
        """The detector model (electrons) this camera's frames are sampled with."""
        with self._sim_lock:
            return self._config.detector_model

    def eight_bit_scale(self) -> float:
        """8-bit counts per 16-bit count (:data:`DEFAULT_EIGHT_BIT_SCALE` unless set)."""
        scale = self._readout.eight_bit_scale
        return DEFAULT_EIGHT_BIT_SCALE[self._config.detector] if scale is None else scale

    def counts_per_electron(self) -> float:
        """Mean counts per electron of the frames as delivered (8-bit scale included)."""
        cpe = float(self._sim.counts_per_electron)
        return cpe * self.eight_bit_scale() if self._readout.pixel_type == "8bit" else cpe

    def defocus_nm(self) -> float:
        """The defocus the next frame is taken at: the configuration's plus the focus's Z."""
        lens = self._focus.lens_um() if self._focus is not None else 0.0
        return self._sim.defocus_nm + NM_PER_UM * lens

    def beam_open(self) -> bool:
        """Whether the beam reaches the specimen now."""
        return self._beam.get_open() if self._beam is not None else True

    def stage_xy_um(self) -> tuple[float, float]:
        """The current stage position in micrometres (origin when no stage is attached)."""
        if self._stage_position_um is None:
            return (0.0, 0.0)
        x, y = self._stage_position_um()
        return (float(x), float(y))

    def accumulated_dose_e_per_A2(self) -> float:
        """The dose the field under the stage has taken so far (e-/A^2)."""
        with self._sim_lock:
            sim = self._sim
        return sim.dose.dose(self._stage_px(sim, self.stage_xy_um()))

    def ground_truth(self, info: FrameInfo) -> np.ndarray:
        """Noise-free expected electrons per pixel of a frame this camera produced.

        Zeros for a frame taken with the beam blanked.
        """
        with self._sim_lock:
            sim = self._sim
        if not info.beam_open:
            _, _, w, h = info.region
            return np.zeros((h // info.binning, w // info.binning), np.float32)
        return sim.at_defocus(info.defocus_nm).expected_electrons(
            exposure_s=info.exposure_ms / 1000.0,
            stage_xy_px=info.stage_xy_px,
            t=info.t_s,
            binning=info.binning,
            region=info.region,
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
        buf = np.empty(self.shape(), dtype=self.dtype())
        self._render_into(buf, frame_end=time.perf_counter() + self._exposure_ms / 1000.0)
        return buf

    def nominal_dose_e_per_px(self) -> float:
        """Electrons per (binned) pixel per frame in vacuum at the current settings."""
        return self._config.dose_rate * self._exposure_ms / 1000.0 * self._binning**2

    # -- internals ------------------------------------------------------------------------

    def _full_frame(self) -> tuple[int, int, int, int]:
        r = self._readout
        return (0, 0, r.width // self._binning, r.height // self._binning)

    def _region(self) -> Region:
        """The ROI in unbinned pixels of the simulator's square sensor (centred sensor)."""
        r, b = self._readout, self._binning
        size = self._config.size
        # the sensor's offset in the square field, on the grid of every binning
        ox = (size - r.width) // 2 // 8 * 8
        oy = (size - r.height) // 2 // 8 * 8
        x, y, w, h = self.get_roi()
        return (ox + x * b, oy + y * b, w * b, h * b)

    @staticmethod
    def _stage_px(sim: TEMSimulator, stage_um: tuple[float, float]) -> tuple[float, float]:
        # micrometres -> specimen pixels (unbinned): 1 um = 1e4 A
        px = sim.pixel_size_A
        return (stage_um[0] * 1e4 / px, stage_um[1] * 1e4 / px)

    def _render_into(self, buf: np.ndarray, *, frame_end: float) -> FrameInfo:
        exposure_s = self._exposure_ms / 1000.0
        with self._sim_lock:
            sim = self._sim
            frame_id = self._next_frame_id
            self._next_frame_id += 1
        stage_um = self.stage_xy_um()
        stage_px = self._stage_px(sim, stage_um)
        focus_um = self._focus.get_position_um() if self._focus is not None else 0.0
        defocus = self.defocus_nm()
        beam_open = self.beam_open()
        region = self._region()
        # the simulator averages drift over the exposure starting at t
        t_start = frame_end - exposure_s - self._t0
        frame, dose = sim.at_defocus(defocus).expose(
            exposure_s, stage_px, t_start, self._binning, region, beam_open=beam_open
        )
        eight_bit = self._readout.pixel_type == "8bit"
        buf[...] = to_uint8(frame, self.eight_bit_scale()) if eight_bit else frame
        info = FrameInfo(
            frame_id=frame_id,
            exposure_ms=self._exposure_ms,
            binning=self._binning,
            stage_xy_um=stage_um,
            stage_xy_px=stage_px,
            t_s=t_start,
            dose_e_per_px=self.nominal_dose_e_per_px() if beam_open else 0.0,
            region=region,
            roi=self.get_roi(),
            focus_um=focus_um,
            defocus_nm=defocus,
            beam_open=beam_open,
            frame_dose_e_per_A2=sim.dose_rate_e_per_A2_s * exposure_s if beam_open else 0.0,
            accumulated_dose_e_per_A2=dose,
            counts_per_electron=self.counts_per_electron(),
            pixel_type=self._readout.pixel_type,
        )
        self.frame_log.append(info)
        return info

    def _set_beam(self, state: bool) -> None:
        if self._beam is not None:
            self._beam.set_open(state)

    def _refuse_while_capturing(self, what: str) -> None:
        if self._readout.capturing:
            raise AcquisitionError(
                f"cannot change {what} while the camera acquires a sequence; stop it first"
            )

    def _get_real_time(self) -> str:
        return "Yes" if self._real_time else "No"

    def _set_real_time(self, value: str) -> None:
        self._real_time = str(value) == "Yes"

    def _get_pixel_type(self) -> str:
        return self._readout.pixel_type

    def _get_sensor_width(self) -> int:
        return self._readout.width

    def _set_sensor_width(self, value: int) -> None:
        self._set_sensor(width=value)

    def _get_sensor_height(self) -> int:
        return self._readout.height

    def _set_sensor_height(self, value: int) -> None:
        self._set_sensor(height=value)

    def _set_pixel_type(self, value: str) -> None:
        value = str(value)
        if value == self._readout.pixel_type:
            return
        self._refuse_while_capturing("PixelType")
        if value not in PIXEL_TYPES:
            raise ConfigError(f"PixelType must be one of {', '.join(PIXEL_TYPES)}, got {value!r}")
        self._readout.pixel_type = value

    def _set_eight_bit_scale(self, value: float) -> None:
        value = float(value)
        if not (np.isfinite(value) and value > 0):
            raise ConfigError(f"EightBitScale must be a positive number, got {value!r}")
        self._refuse_while_capturing("EightBitScale")
        self._readout.eight_bit_scale = value

    def _set_sensor(self, *, width: int | None = None, height: int | None = None) -> None:
        """Resize the sensor (clears the ROI); the simulated field is the larger side."""
        r = self._readout
        w = r.width if width is None else int(width)
        h = r.height if height is None else int(height)
        if (w, h) == (r.width, r.height):
            return
        self._refuse_while_capturing("the sensor size")
        if not (1 <= min(w, h) and max(w, h) <= MAX_SENSOR_SIZE):
            raise ConfigError(
                f"sensor size {w}x{h} not possible: 1 to {MAX_SENSOR_SIZE} pixels per side"
            )
        if w % self._binning or h % self._binning:
            raise ConfigError(
                f"sensor size {w}x{h} is not divisible by the binning {self._binning}; "
                "set Binning 1 first"
            )
        if max(w, h) != self._config.size:
            self.reconfigure(size=max(w, h))
        r.width, r.height, r.roi = w, h, None
        self.set_property_allowed_values("Binning", self._binnings())

    def _binnings(self) -> list[int]:
        r = self._readout
        return [b for b in ALLOWED_BINNING if r.width % b == 0 and r.height % b == 0]

    # -- properties -----------------------------------------------------------------------

    def _register_tem_properties(self) -> None:
        # Binning is a standard property (registered from get/set_binning); restrict its values.
        self.set_property_allowed_values("Binning", self._binnings())
        physics: list[tuple[str, str, type, dict[str, Any]]] = [
            ("DoseRate", "dose_rate", float, {"limits": (0.0, 1e7)}),
            ("Detector", "detector", str, {"allowed_values": list(DETECTOR_KINDS)}),
            ("Specimen", "specimen", str, {"allowed_values": list(SPECIMEN_KINDS)}),
            ("Seed", "seed", int, {}),
        ]
        for prop, name, kind, extra in physics:
            self.register_property(
                prop,
                property_type=kind,
                getter=_config_getter(name),
                setter=_config_setter(name),
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
            getter=SimulatedTEMCamera._get_real_time,
            setter=SimulatedTEMCamera._set_real_time,
            allowed_values=["Yes", "No"],
        )
        self._register_readout_properties()
        read_only: list[tuple[str, Callable[[SimulatedTEMCamera], float]]] = [
            ("CountsPerElectron", lambda dev: dev.counts_per_electron()),
            ("PixelSizeAngstrom", lambda dev: float(dev._sim.pixel_size_A * dev._binning)),
            ("Defocus-nm", lambda dev: dev.defocus_nm()),
        ]
        for prop, getter in read_only:
            self.register_property(prop, property_type=float, getter=getter, is_read_only=True)

    def _register_readout_properties(self) -> None:
        self.register_property(
            "PixelType",
            property_type=str,
            getter=SimulatedTEMCamera._get_pixel_type,
            setter=SimulatedTEMCamera._set_pixel_type,
            allowed_values=list(PIXEL_TYPES),
        )
        self.register_property(
            "EightBitScale",
            property_type=float,
            getter=SimulatedTEMCamera.eight_bit_scale,
            setter=SimulatedTEMCamera._set_eight_bit_scale,
            limits=(1e-6, 1e3),
        )
        self.register_property(
            "OnCameraCCDXSize",
            property_type=int,
            getter=SimulatedTEMCamera._get_sensor_width,
            setter=SimulatedTEMCamera._set_sensor_width,
            limits=(1, MAX_SENSOR_SIZE),
        )
        self.register_property(
            "OnCameraCCDYSize",
            property_type=int,
            getter=SimulatedTEMCamera._get_sensor_height,
            setter=SimulatedTEMCamera._set_sensor_height,
            limits=(1, MAX_SENSOR_SIZE),
        )


def _config_getter(name: str) -> Callable[[SimulatedTEMCamera], Any]:
    return lambda dev: getattr(dev._config, name)


def _config_setter(name: str) -> Callable[[SimulatedTEMCamera, Any], None]:
    return lambda dev, value: dev.reconfigure(**{name: value})


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
