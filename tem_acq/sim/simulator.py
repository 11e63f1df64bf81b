"""The simulated TEM: specimen map + dose + drift + detector, one frame per call."""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tem_acq.errors import SimulationError
from tem_acq.sim.config import (
    BINNINGS,
    SimulationConfig,
    electron_wavelength_A,
)
from tem_acq.sim.detector import CountingDetector, IntegratingDetector, detector_from_model
from tem_acq.sim.dose import FieldDose
from tem_acq.sim.specimen import SpecimenMap, make_specimen

F32 = NDArray[np.float32]
U16 = NDArray[np.uint16]
#: A frame's part of the sensor: ``(x, y, width, height)`` in unbinned sensor pixels.
Region = tuple[int, int, int, int]

#: drift during one exposure above this (px) is integrated over sub-steps (motion blur)
_MOTION_STEP_PX = 0.25
_MAX_MOTION_STEPS = 32
#: noise stream key (kept apart from the specimen's streams)
_NOISE_STREAM = 0x6E6F697365
#: simulators kept per specimen at other defocus values (:meth:`TEMSimulator.at_defocus`)
_MAX_FOCUS_SIBLINGS = 16


@dataclass(frozen=True)
class _Geometry:
    origins: tuple[tuple[float, float], ...]  # top-left (x, y) of each motion sub-step
    change: float  # fraction of particle mass lost at mid-exposure
    binning: int
    region: Region


@dataclass
class _Shared:
    """What the simulators of one specimen at several defocus values share."""

    lock: threading.RLock
    rng: np.random.Generator
    dose: FieldDose
    by_defocus: OrderedDict[float, TEMSimulator]


class TEMSimulator:
    """A physics-based simulated TEM camera: no microscope needed, deterministic from a seed.

    The specimen is an unbounded procedural map in unbinned specimen pixels, fixed by
    ``config.seed``; the noise uses its own generator seeded from ``config.seed`` too, so the same
    config and the same sequence of calls give identical frames.

    Parameters
    ----------
    config
        The simulation settings.
    tile_cache
        Number of specimen tiles kept rendered (default: enough for a frame plus margin).

    Notes
    -----
    Geometry: ``stage_xy_px`` is the field centre in specimen pixels; frame pixel ``(row i,
    column j)`` at binning 1 sees specimen pixel ``(x, y) = (cx - size/2 + j, cy - size/2 + i)``.
    Drift moves the field as a stage move would: at time ``t`` the centre is ``stage +
    drift * t``, so features move by ``-drift * t`` in the image. An exposure ``[t, t +
    exposure]`` integrates over that motion; the specimen change is taken at mid-exposure.

    Regions: every frame method takes an optional ``region`` ``(x, y, width, height)`` in
    unbinned sensor pixels (multiples of the binning), the part of the ``size x size`` sensor
    to read out; its noise-free image equals the matching crop of the full frame's.

    Focus: the defocus is part of the optics the specimen map is rendered with;
    :meth:`at_defocus` gives the simulator of the same specimen at another defocus (cached),
    sharing this one's noise generator, lock and dose record, so a through-focus series draws
    fresh noise per plane and its fields add up one dose.

    Dose: :meth:`expose` takes a frame as a camera behind a beam blanker does and adds the
    exposure's dose to the field under the stage (:attr:`dose`, a
    :class:`~tem_acq.sim.dose.FieldDose`); :meth:`render` only draws frames.

    Thread safety: the public methods hold an internal lock, so a camera thread and a training
    loop may share one simulator (they then share its noise sequence).
    """

    def __init__(
        self,
        config: SimulationConfig,
        *,
        tile_cache: int | None = None,
        dose: FieldDose | None = None,
    ) -> None:
        """Build the simulator; ``dose`` carries over another simulator's dose record."""
        self.config = config
        self.size = config.size
        self._tile_cache = tile_cache
        px = config.effective_pixel_size_A
        tiles_across = math.ceil(config.size / SpecimenMap.TILE) + 2
        cache = tile_cache if tile_cache is not None else max(64, 2 * tiles_across**2)
        self.specimen: SpecimenMap = make_specimen(
            config.specimen,
            config.seed,
            px,
            config.voltage_kv,
            config.cs_mm,
            config.effective_defocus_nm,
            cache_tiles=cache,
        )
        self.detector: CountingDetector | IntegratingDetector = detector_from_model(
            config.detector_model, config.effective_counts_per_electron
        )
        self._cache_key: _Geometry | None = None
        self._cache_value: F32 | None = None
        self._shared = _Shared(
            lock=threading.RLock(),
            rng=self._seeded_rng(),
            dose=dose if dose is not None else FieldDose(config.size),
            by_defocus=OrderedDict(),
        )
        self._shared.by_defocus[round(self.defocus_nm, 3)] = self

    @property
    def _lock(self) -> threading.RLock:
        return self._shared.lock

    @property
    def rng(self) -> np.random.Generator:
        """The noise generator (shared with the :meth:`at_defocus` simulators)."""
        return self._shared.rng

    @property
    def dose(self) -> FieldDose:
        """The dose each field has taken through :meth:`expose` (e-/A^2)."""
        return self._shared.dose

    # ---- effective values ----------------------------------------------------------------

    @property
    def counts_per_electron(self) -> float:
        """Mean camera counts per electron of the configured detector."""
        return float(self.detector.counts_per_electron)

    @property
    def pixel_size_A(self) -> float:
        """Unbinned pixel size at the specimen in A."""
        return self.specimen.pixel_size_A

    @property
    def wavelength_A(self) -> float:
        """Electron wavelength in A."""
        return electron_wavelength_A(self.config.voltage_kv)

    @property
    def dose_rate_e_per_A2_s(self) -> float:
        """The configured dose rate in electrons per square angstrom per second (vacuum)."""
        return self.config.dose_rate / self.pixel_size_A**2

    def dose_per_pixel(self, exposure_s: float, binning: int = 1) -> float:
        """Electrons per output pixel through vacuum for one exposure."""
        return self.config.dose_rate * exposure_s * binning * binning

    @property
    def defocus_nm(self) -> float:
        """The defocus this simulator images at (nm, negative = underfocus)."""
        return self.config.effective_defocus_nm

    def reset_noise(self) -> None:
        """Restart the noise sequence, as if the simulator had just been created."""
        with self._lock:
            self._shared.rng = self._seeded_rng()  # only the noise draws from it

    def _seeded_rng(self) -> np.random.Generator:
        ss = np.random.SeedSequence(entropy=self.config.seed, spawn_key=(_NOISE_STREAM,))
        return np.random.Generator(np.random.PCG64(ss))

    def at_defocus(self, defocus_nm: float) -> TEMSimulator:
        """The same specimen and microscope at another defocus (nm), sharing noise and dose.

        The simulators are cached per defocus (to 0.001 nm; the last 16), so moving back and
        forth through focus renders each plane's specimen tiles once. They share this
        simulator's noise generator (no two planes repeat the same noise), lock and dose record.

        Raises
        ------
        SimulationError
            If the defocus is not finite or outside +-1e6 nm.
        """
        key = round(float(defocus_nm), 3)
        if not (math.isfinite(key) and abs(key) <= 1e6):
            raise SimulationError(f"defocus must be finite, within +-1e6 nm; got {defocus_nm!r}")
        if key == round(self.defocus_nm, 3):
            return self
        with self._lock:
            siblings = self._shared.by_defocus
            sim = siblings.get(key)
            if sim is None:
                config = self.config.model_validate({**self.config.model_dump(), "defocus_nm": key})
                sim = TEMSimulator(config, tile_cache=self._tile_cache)
                sim._shared = self._shared
                siblings[key] = sim
                while len(siblings) > _MAX_FOCUS_SIBLINGS:
                    siblings.popitem(last=False)
            else:
                siblings.move_to_end(key)
            return sim

    # ---- specimen ------------------------------------------------------------------------

    def transmission(self, x0: float, y0: float, height: int, width: int) -> F32:
        """The specimen map (intensity relative to vacuum) at time 0, without drift.

        Parameters
        ----------
        x0, y0
            Specimen-pixel coordinates of the top-left pixel; fractional values are
            interpolated (Lanczos-3).
        height, width
            Size in unbinned pixels.

        Returns
        -------
        numpy.ndarray
            float32 array ``(height, width)``.
        """
        _check_position("x0, y0", (x0, y0))
        if height <= 0 or width <= 0:
            raise SimulationError(f"height and width must be positive, got {height}x{width}")
        with self._lock:
            return self._sample(float(x0), float(y0), height, width, 0.0)

    def vacuum_mask(self, x0: int, y0: int, height: int, width: int) -> NDArray[np.bool_]:
        """Where the specimen map is vacuum (no material, intensity within 1 % of 1)."""
        with self._lock:
            return self.specimen.region(int(x0), int(y0), height, width).vacuum

    def particle_mask(self, x0: int, y0: int, height: int, width: int) -> NDArray[np.bool_]:
        """Where the specimen map has particles (nanoparticles, or the atomic kind's crystals)."""
        with self._lock:
            return self.specimen.region(int(x0), int(y0), height, width).change != 0.0

    def field_origin(
        self, stage_xy_px: Sequence[float] = (0.0, 0.0), t: float = 0.0
    ) -> tuple[float, float]:
        """Top-left specimen pixel ``(x, y)`` seen by the camera at time ``t`` (drift included)."""
        _check_position("stage_xy_px", stage_xy_px)
        vx, vy = self.config.drift_px_per_s
        half = self.size / 2.0
        return (
            float(stage_xy_px[0]) + vx * t - half,
            float(stage_xy_px[1]) + vy * t - half,
        )

    def vacuum_fraction(self, stage_xy_px: Sequence[float] = (0.0, 0.0)) -> float:
        """Fraction of the field at ``stage_xy_px`` (time 0) that is vacuum."""
        x, y = self.field_origin(stage_xy_px, 0.0)
        mask = self.vacuum_mask(math.floor(x), math.floor(y), self.size, self.size)
        return float(mask.mean())

    def particle_fraction(self, stage_xy_px: Sequence[float] = (0.0, 0.0)) -> float:
        """Fraction of the field at ``stage_xy_px`` (time 0) covered by particles."""
        x, y = self.field_origin(stage_xy_px, 0.0)
        mask = self.particle_mask(math.floor(x), math.floor(y), self.size, self.size)
        return float(mask.mean())

    def film_fraction(self, stage_xy_px: Sequence[float] = (0.0, 0.0)) -> float:
        """Fraction of the field at ``stage_xy_px`` covered by support film (not holes).

        Cheap (no image is rendered), so it suits scanning many positions for fields with or
        without vacuum; a field with ``film_fraction == 1`` has no holes in view.
        """
        x, y = self.field_origin(stage_xy_px, 0.0)
        ys = np.arange(self.size, dtype=np.float64) + math.floor(y)
        xs = np.arange(self.size, dtype=np.float64) + math.floor(x)
        with self._lock:
            return float(self.specimen.film_mask(ys, xs).mean())

    # ---- frames --------------------------------------------------------------------------

    def expected_electrons(
        self,
        exposure_s: float,
        stage_xy_px: Sequence[float] = (0.0, 0.0),
        t: float = 0.0,
        binning: int = 1,
        region: Region | None = None,
    ) -> F32:
        """Noise-free expected electrons per output pixel of one exposure (the ground truth).

        Parameters
        ----------
        exposure_s
            Exposure time in seconds.
        stage_xy_px
            Field centre in specimen pixels.
        t
            Start of the exposure, seconds since the simulator's start (the drift clock).
        binning
            Camera binning, one of 1, 2, 4, 8; must divide ``size``.
        region
            The part of the sensor read out, ``(x, y, width, height)`` in unbinned pixels,
            each a multiple of ``binning``; ``None`` for the full ``size x size`` sensor.

        Returns
        -------
        numpy.ndarray
            float32 ``(height / binning, width / binning)``; a fresh copy.
        """
        with self._lock:
            return self._electrons(exposure_s, stage_xy_px, t, binning, region).copy()

    def render(
        self,
        exposure_s: float,
        stage_xy_px: Sequence[float] = (0.0, 0.0),
        t: float = 0.0,
        binning: int = 1,
        region: Region | None = None,
    ) -> U16:
        """One camera frame: uint16 counts ``(height / binning, width / binning)``.

        Parameters are those of :meth:`expected_electrons`; each call draws fresh noise from the
        simulator's noise generator.
        """
        with self._lock:
            lam = self._electrons(exposure_s, stage_xy_px, t, binning, region)
            return self.detector.sample(lam, self.rng, binning)

    def render_with_truth(
        self,
        exposure_s: float,
        stage_xy_px: Sequence[float] = (0.0, 0.0),
        t: float = 0.0,
        binning: int = 1,
        region: Region | None = None,
    ) -> tuple[U16, F32]:
        """:meth:`render` and :meth:`expected_electrons` of the same exposure in one call."""
        with self._lock:
            lam = self._electrons(exposure_s, stage_xy_px, t, binning, region)
            return self.detector.sample(lam, self.rng, binning), lam.copy()

    def dark_frame(self, binning: int = 1, region: Region | None = None) -> U16:
        """A frame with the beam blanked: the detector sampled at zero electrons.

        Offset and read noise (clipped at 0) for the integrating detector, zeros for counting.
        """
        with self._lock:
            _, _, width, height = self._region(binning, region)
            zero = np.zeros((height // binning, width // binning), np.float32)
            return self.detector.sample(zero, self.rng, binning)

    def expose(
        self,
        exposure_s: float,
        stage_xy_px: Sequence[float] = (0.0, 0.0),
        t: float = 0.0,
        binning: int = 1,
        region: Region | None = None,
        *,
        beam_open: bool = True,
    ) -> tuple[U16, float]:
        """One exposure as a camera behind a beam blanker takes it, with the specimen's dose.

        With the beam open: :meth:`render`'s frame, and the field under the stage takes
        ``dose_rate_e_per_A2_s * exposure_s``. Blanked: :meth:`dark_frame`, and no dose.

        Returns
        -------
        tuple
            The frame and the field's accumulated dose after it (e-/A^2, :attr:`dose`).
        """
        with self._lock:
            if not beam_open:
                _check_position("stage_xy_px", stage_xy_px)
                return self.dark_frame(binning, region), self.dose.dose(stage_xy_px)
            frame = self.render(exposure_s, stage_xy_px, t, binning, region)
            return frame, self.dose.add(stage_xy_px, self.dose_rate_e_per_A2_s * exposure_s)

    # ---- internals -----------------------------------------------------------------------

    def _electrons(
        self,
        exposure_s: float,
        stage_xy_px: Sequence[float],
        t: float,
        binning: int,
        region: Region | None,
    ) -> F32:
        if not (math.isfinite(exposure_s) and exposure_s >= 0):
            raise SimulationError(f"exposure_s must be finite and >= 0, got {exposure_s!r}")
        if not math.isfinite(t):
            raise SimulationError(f"t must be finite, got {t!r}")
        box = self._region(binning, region)
        dose = self.dose_per_pixel(exposure_s, binning)
        if dose > 1e12:
            raise SimulationError(
                f"{dose:.3g} electrons per pixel is beyond any camera; shorten the exposure"
            )
        geometry = self._geometry(exposure_s, stage_xy_px, t, binning, box)
        if geometry != self._cache_key or self._cache_value is None:
            self._cache_value = self._binned_transmission(geometry)
            self._cache_key = geometry
        return self._cache_value * np.float32(self.config.dose_rate * exposure_s)

    def _region(self, binning: int, region: Region | None) -> Region:
        """The checked readout region (the full sensor for ``None``)."""
        if binning not in BINNINGS:
            raise SimulationError(f"binning must be one of {BINNINGS}, got {binning!r}")
        if self.size % binning:
            raise SimulationError(f"binning {binning} does not divide the sensor size {self.size}")
        if region is None:
            return (0, 0, self.size, self.size)
        try:
            x, y, width, height = (int(v) for v in region)
        except (TypeError, ValueError):
            raise SimulationError(
                f"region must be (x, y, width, height) integers, got {region!r}"
            ) from None
        inside = min(x, y) >= 0 and min(width, height) > 0
        if not (inside and x + width <= self.size and y + height <= self.size):
            raise SimulationError(
                f"region {region!r} is not inside the {self.size}x{self.size} sensor"
            )
        if any(v % binning for v in (x, y, width, height)):
            raise SimulationError(f"region {region!r} is not on the binning-{binning} pixel grid")
        return (x, y, width, height)

    def _geometry(
        self,
        exposure_s: float,
        stage_xy_px: Sequence[float],
        t: float,
        binning: int,
        region: Region,
    ) -> _Geometry:
        cfg = self.config
        travel = cfg.drift_speed_px_per_s * exposure_s
        steps = 1
        if travel > 0.1:
            steps = min(_MAX_MOTION_STEPS, math.ceil(travel / _MOTION_STEP_PX) + 1)
        origins = tuple(
            self.field_origin(stage_xy_px, t + (k + 0.5) * exposure_s / steps) for k in range(steps)
        )
        change = min(cfg.specimen_change_per_s * (t + 0.5 * exposure_s), 1.0)
        return _Geometry(origins, change, binning, region)

    def _binned_transmission(self, g: _Geometry) -> F32:
        acc: F32 | None = None
        rx, ry, width, height = g.region
        for x, y in g.origins:
            sample = self._sample(x + rx, y + ry, height, width, g.change)
            acc = sample if acc is None else acc + sample
        assert acc is not None
        if len(g.origins) > 1:
            acc *= np.float32(1.0 / len(g.origins))
        return _block_sum(acc, g.binning)

    def _sample(self, x: float, y: float, height: int, width: int, change: float) -> F32:
        """Intensity at ``(x + j, y + i)``: integer-aligned slices, else Lanczos-3 interpolation.

        Lanczos-3 keeps the shift and amplitude of spatial frequencies up to 0.3 cycles/px within
        1 % (Au lattice fringes at 0.5 A/px lie at 0.21-0.35 cycles/px); the residual error is
        confined to the band next to Nyquist.
        """
        ix, iy = math.floor(x), math.floor(y)
        fx, fy = x - ix, y - iy
        taps = _LANCZOS_A
        pad = 2 * taps - 1
        region = self.specimen.region(ix - taps + 1, iy - taps + 1, height + pad, width + pad)
        t = region.transmission
        if change != 0.0:
            t *= np.exp(np.float32(change) * region.change)
        if fx:
            wx = _lanczos_weights(fx)
            acc = wx[0] * t[:, 0:width]
            for k in range(1, 2 * taps):
                acc += wx[k] * t[:, k : k + width]
            t = acc
        else:
            t = t[:, taps - 1 : taps - 1 + width]
        if fy:
            wy = _lanczos_weights(fy)
            acc = wy[0] * t[0:height]
            for k in range(1, 2 * taps):
                acc += wy[k] * t[k : k + height]
            t = acc
        else:
            t = t[taps - 1 : taps - 1 + height]
        # interpolation may overshoot below zero next to opaque edges
        return np.maximum(t, np.float32(0.0))


_LANCZOS_A = 3


def _lanczos_weights(f: float) -> list[np.float32]:
    """Normalised Lanczos-3 weights for samples at offsets -2..3 around a point ``f`` in [0, 1)."""
    x = np.arange(1 - _LANCZOS_A, _LANCZOS_A + 1, dtype=np.float64) - f
    w = np.sinc(x) * np.sinc(x / _LANCZOS_A)
    w /= w.sum()
    return [np.float32(v) for v in w]


def _block_sum(a: F32, b: int) -> F32:
    """Sum ``b x b`` blocks (counts-preserving binning); strided adds beat reshape-sum here."""
    if b == 1:
        return np.ascontiguousarray(a)
    rows = a[0::b].copy()
    for k in range(1, b):
        rows += a[k::b]
    out = rows[:, 0::b].copy()
    for k in range(1, b):
        out += rows[:, k::b]
    return out


def _check_position(name: str, xy: Sequence[float]) -> None:
    try:
        ok = len(xy) == 2 and all(math.isfinite(float(v)) for v in xy)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise SimulationError(f"{name} must be two finite numbers (x, y), got {xy!r}")
