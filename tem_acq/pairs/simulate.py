"""Training and test pairs straight from the simulated microscope.

The frames come from :class:`~tem_acq.sim.TEMSimulator`, the same physics as the simulated
camera that paired-collection runs record into pairs stores: specimen, dose, Poisson shot
noise, and the counting or integrating (OneView-like) detector. Making them here skips the
store round-trip, which matters when generating thousands of pairs for the shipped models.

A specimen is fixed by the simulator's seed, so data made with different seeds never share a
field: train with one seed, evaluate with another.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tem_acq.detector import DEFAULT_MODELS
from tem_acq.errors import TemAcqError
from tem_acq.pairs.arrays import PairArrays

#: Fields are this many frame widths apart along x, so no two fields overlap.
FIELD_SPACING = 4
#: The simulator's dose rate (e-/px/s at binning 1); exposures are chosen for the wanted dose.
DOSE_RATE = 1000.0
#: Candidate stage positions tried per field when the field should show something.
MAX_TRIES = 60


def simulate_pairs(
    specimen: str,
    detector: str,
    *,
    n_fields: int,
    short_doses: Sequence[float] = (5.0,),
    shorts_per_dose: int = 1,
    random_doses: int = 0,
    long_dose: float | None = 1000.0,
    long_frame_dose: float = 250.0,
    size: int = 256,
    seed: int = 0,
    max_shift_px: float = 0.0,
    min_vacuum_fraction: float = 0.0,
    max_vacuum_fraction: float = 0.7,
    vacuum_field_share: float = 0.0,
    min_contrast: float = 0.0,
    min_particle_fraction: float = 0.0,
    sim_options: dict[str, Any] | None = None,
) -> PairArrays:
    """Simulate ``n_fields`` fields with short exposures and one long exposure each.

    Parameters
    ----------
    specimen
        ``"nanoparticles"`` (low magnification) or ``"atomic"``.
    detector
        ``"counting"`` or ``"integrating"``.
    n_fields
        Number of fields.
    short_doses
        Doses of the short frames of each field (e-/px); ``shorts_per_dose`` frames each.
    shorts_per_dose
        Short frames per dose and field (noise2noise needs two or more).
    random_doses
        If > 0, each field instead gets this many short frames at doses drawn log-uniformly
        between ``min(short_doses)`` and ``max(short_doses)``.
    long_dose
        Dose of the long exposure (e-/px); ``None`` for no long exposure.
    long_frame_dose
        The long exposure is summed from frames of at most this dose each (``long_mode`` "sum"
        of a pairs store), which keeps integrating-camera counts far from uint16 saturation.
    size
        Frame side in pixels (binning 1).
    seed
        Simulator seed: fixes the specimen, the field positions and the noise.
    max_shift_px
        The long exposure is taken at a stage offset drawn uniformly within this many pixels
        per axis; the shift is recorded (as registration would measure it).
    min_vacuum_fraction, max_vacuum_fraction, vacuum_field_share
        At least ``vacuum_field_share`` of the fields contain between the two fractions of
        vacuum (specimen beside vacuum: a frame of vacuum alone has no data range).
    min_contrast
        Each field's noise-free image spans at least this fraction of its maximum
        (``(max - min) / max``): 0.3 keeps nanoparticle fields that show particles.
    min_particle_fraction
        Particles cover at least this fraction of each field (atomic-resolution fields that
        show nanocrystals). These three wishes are met by trying up to 60 stage positions per
        field; when none meets them, the closest is used.
    sim_options
        Further :class:`~tem_acq.sim.SimulationConfig` fields (``cs_mm``, ``gain_cv``...).

    Returns
    -------
    The pairs, one per short frame, with ``truth``, ``vacuum`` and ``particles`` filled in.
    """
    if n_fields < 1 or shorts_per_dose < 1 or not short_doses:
        raise TemAcqError("need at least one field, one short dose and one frame per dose")
    sim = _simulator(specimen, detector, seed=seed, size=size, sim_options=sim_options)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF1E1D]))
    wishes = _FieldWishes(
        min_vacuum_fraction, max_vacuum_fraction, min_contrast, min_particle_fraction
    )
    n_vac = math.ceil(vacuum_field_share * n_fields) if min_vacuum_fraction > 0 else 0
    fields = []
    for f in range(n_fields):
        # only the first n_vac fields are asked for vacuum
        wish = wishes if f < n_vac else dataclasses.replace(wishes, min_vacuum=0.0)
        stage = _pick_stage(sim, rng, f, size, wish)
        doses = _short_doses(rng, short_doses, shorts_per_dose, random_doses)
        long = _LongExposure(long_dose, long_frame_dose, max_shift_px)
        fields.append(_simulate_field(sim, rng, stage, size, doses, long))
    source = (
        f"tem_acq.sim {specimen}/{detector} seed {seed}, {n_fields} fields of {size}x{size}, "
        f"short {'/'.join(f'{d:g}' for d in short_doses)} e-/px"
        f"{' (log-uniform)' if random_doses else ''}, long "
        f"{long_dose if long_dose is not None else 'none'} e-/px"
    )
    return _as_pairs(
        fields, sim, specimen=specimen, detector=detector, long_dose=long_dose, source=source
    )


def _simulator(
    specimen: str, detector: str, *, seed: int, size: int, sim_options: dict[str, Any] | None
) -> Any:
    """The simulated microscope at :data:`DOSE_RATE` (imported here: the simulator is heavy)."""
    from tem_acq.sim import SimulationConfig, TEMSimulator

    cfg = SimulationConfig(
        specimen=specimen,  # type: ignore[arg-type]
        detector=detector,  # type: ignore[arg-type]
        dose_rate=DOSE_RATE,
        seed=seed,
        size=size,
        **(sim_options or {}),
    )
    return TEMSimulator(cfg)


@dataclass(frozen=True)
class _FieldWishes:
    """What a field should show; a zero minimum is no wish.

    Attributes
    ----------
    min_vacuum, max_vacuum
        The range of its area that is vacuum.
    min_contrast
        Least ``(max - min) / max`` of its noise-free image.
    min_particles
        Least fraction of its area covered by particles.
    """

    min_vacuum: float
    max_vacuum: float
    min_contrast: float
    min_particles: float

    @property
    def any(self) -> bool:
        """Whether there is a wish at all (else any position will do)."""
        return self.min_vacuum > 0 or self.min_contrast > 0 or self.min_particles > 0

    def shortfall(self, sim: Any, pos: tuple[float, float]) -> float:
        """How far the field at ``pos`` falls short of the wishes (0: it meets them all).

        Checked in order (vacuum, contrast, particles); a later, costlier check is made only
        while the earlier ones are met.
        """
        err = 0.0
        if self.min_vacuum > 0:
            vac = sim.vacuum_fraction(pos)
            err += max(self.min_vacuum - vac, vac - self.max_vacuum, 0.0)
        if self.min_contrast > 0 and err == 0.0:
            t = sim.expected_electrons(1.0, pos)
            contrast = float((t.max() - t.min()) / max(float(t.max()), 1e-12))
            err += max(self.min_contrast - contrast, 0.0)
        if self.min_particles > 0 and err == 0.0:
            err += max(self.min_particles - sim.particle_fraction(pos), 0.0)
        return err


def _pick_stage(
    sim: Any, rng: np.random.Generator, f: int, size: int, wishes: _FieldWishes
) -> tuple[float, float]:
    """A stage position for field ``f``: spaced along x, random along y (integer pixels).

    Candidates are drawn (up to :data:`MAX_TRIES`) until one meets the wishes; otherwise the
    one that came closest is used.
    """
    base_x = float((f + 1) * FIELD_SPACING * size)
    best: tuple[float, float] | None = None
    best_err = math.inf
    tries = MAX_TRIES if wishes.any else 1
    for _ in range(tries):
        pos = (base_x, float(rng.integers(-(10**6), 10**6)))
        if tries == 1:
            return pos
        err = wishes.shortfall(sim, pos)
        if err == 0.0:
            return pos
        if err < best_err:
            best, best_err = pos, err
    assert best is not None
    return best


def _short_doses(
    rng: np.random.Generator, short_doses: Sequence[float], per_dose: int, random_doses: int
) -> list[float]:
    """The doses of one field's short frames: fixed ones, or drawn log-uniformly."""
    if random_doses > 0:
        lo, hi = math.log(min(short_doses)), math.log(max(short_doses))
        return [float(math.exp(v)) for v in rng.uniform(lo, hi, random_doses)]
    return [float(d) for d in short_doses for _ in range(per_dose)]


@dataclass
class _Field:
    """One simulated field: its short frames, masks and long exposure.

    Attributes
    ----------
    shorts
        ``(counts, expected electrons, dose)`` of each short frame.
    vacuum, particles
        The field's masks.
    long_counts
        The long exposure (``None``: none taken).
    shift
        ``(dy, dx)`` of the long exposure relative to the shorts, as registration measures it.
    """

    shorts: list[tuple[np.ndarray, np.ndarray, float]]
    vacuum: np.ndarray
    particles: np.ndarray
    long_counts: np.ndarray | None
    shift: tuple[float, float]


@dataclass(frozen=True)
class _LongExposure:
    """How a field's long exposure is taken.

    Attributes
    ----------
    dose
        Its dose (e-/px); ``None``: no long exposure.
    frame_dose
        It is summed from frames of at most this dose each.
    max_shift_px
        It is taken at a stage offset drawn uniformly within this many pixels per axis.
    """

    dose: float | None
    frame_dose: float
    max_shift_px: float


def _simulate_field(
    sim: Any,
    rng: np.random.Generator,
    stage: tuple[float, float],
    size: int,
    doses: list[float],
    long: _LongExposure,
) -> _Field:
    """Render one field at ``stage``: masks, a short frame per dose, then the long exposure."""
    x0, y0 = sim.field_origin(stage)
    vac = sim.vacuum_mask(math.floor(x0), math.floor(y0), size, size)
    parts = sim.particle_mask(math.floor(x0), math.floor(y0), size, size)
    shorts = []
    for dose in doses:
        counts, expected = sim.render_with_truth(dose / DOSE_RATE, stage)
        shorts.append((counts, expected, dose))
    long_counts: np.ndarray | None = None
    shift = (0.0, 0.0)
    if long.dose is not None:
        m = long.max_shift_px
        sx, sy = rng.uniform(-m, m, 2) if m > 0 else (0, 0)
        # Moving the stage by +s moves the image content by -s: high(y, x) = low(y + sy, ...).
        shift = (-float(sy), -float(sx))
        pos = (stage[0] + float(sx), stage[1] + float(sy))
        k = max(1, math.ceil(long.dose / long.frame_dose))
        long_counts = np.zeros((size, size), np.float32)
        for _ in range(k):
            long_counts += sim.render(long.dose / k / DOSE_RATE, pos)
    return _Field(shorts, vac, parts, long_counts, shift)


def _as_pairs(
    fields: list[_Field],
    sim: Any,
    *,
    specimen: str,
    detector: str,
    long_dose: float | None,
    source: str,
) -> PairArrays:
    """One pair per short frame of every field, in order."""
    rows = [(f, fld, short) for f, fld in enumerate(fields) for short in fld.shorts]
    n = len(rows)
    highs = [fld.long_counts for _, fld, _ in rows if fld.long_counts is not None]
    model = sim.config.detector_model  # recorded when it is not the kind's default
    return PairArrays(
        low=np.stack([counts for _, _, (counts, _, _) in rows]),
        high=np.stack(highs) if highs else None,
        counts_per_electron=np.full(n, sim.counts_per_electron),
        low_dose=np.array([dose for _, _, (_, _, dose) in rows]),
        high_dose=np.full(n, long_dose if long_dose is not None else np.nan),
        field=np.array([f for f, _, _ in rows]),
        shift=np.array([fld.shift for _, fld, _ in rows]),
        truth=np.stack([expected for _, _, (_, expected, _) in rows]),
        vacuum=np.stack([fld.vacuum for _, fld, _ in rows]),
        particles=np.stack([fld.particles for _, fld, _ in rows]),
        detector=[detector] * n,
        specimen=[specimen] * n,
        pixel_size_A=np.full(n, sim.pixel_size_A),
        detector_model=None if model == DEFAULT_MODELS[detector] else [model] * n,
        source=source,
    )
