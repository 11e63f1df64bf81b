"""Training and test pairs straight from the simulated microscope.

The frames come from :class:`~tem_acq.sim.TEMSimulator`, the same physics as the simulated
camera that paired-collection runs record into pairs stores: specimen, dose, Poisson shot
noise, and the counting or integrating (OneView-like) detector. Making them here skips the
store round-trip, which matters when generating thousands of pairs for the shipped models.

A specimen is fixed by the simulator's seed, so data made with different seeds never share a
field: train with one seed, evaluate with another.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tem_acq.errors import TemAcqError
from tem_acq.train.data import PairArrays

#: Fields are this many frame widths apart along x, so no two fields overlap.
FIELD_SPACING = 4
#: The simulator's dose rate (e-/px/s at binning 1); exposures are chosen for the wanted dose.
DOSE_RATE = 1000.0


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
        At least ``vacuum_field_share`` of the fields are chosen (from up to 60 candidate
        positions each) to contain between ``min_vacuum_fraction`` and ``max_vacuum_fraction``
        vacuum (specimen and vacuum side by side: a frame of vacuum alone has no data range).
    min_contrast
        Choose each field (from up to 60 candidate positions) so that its noise-free image
        spans at least this fraction of its maximum (``(max - min) / max``): e.g. 0.3 keeps
        nanoparticle fields that show particles, not bare film and holes only.
    min_particle_fraction
        Choose each field (from up to 60 candidate positions) so that particles cover at
        least this fraction of it: e.g. atomic-resolution fields that show nanocrystals
        rather than amorphous film alone.
    sim_options
        Further :class:`~tem_acq.sim.SimulationConfig` fields (``cs_mm``, ``gain_cv``...).

    Returns
    -------
    The pairs, one per short frame, with ``truth``, ``vacuum`` and ``particles`` filled in.
    """
    from tem_acq.sim import SimulationConfig, TEMSimulator

    if n_fields < 1 or shorts_per_dose < 1 or not short_doses:
        raise TemAcqError("need at least one field, one short dose and one frame per dose")
    cfg = SimulationConfig(
        specimen=specimen,  # type: ignore[arg-type]
        detector=detector,  # type: ignore[arg-type]
        dose_rate=DOSE_RATE,
        seed=seed,
        size=size,
        **(sim_options or {}),
    )
    sim = TEMSimulator(cfg)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xF1E1D]))
    n_vac = math.ceil(vacuum_field_share * n_fields) if min_vacuum_fraction > 0 else 0
    low, high, truth, vacuum, shifts, fields, low_dose = [], [], [], [], [], [], []
    particles = []
    for f in range(n_fields):
        stage = _pick_stage(
            sim,
            rng,
            f,
            size,
            min_vacuum_fraction if f < n_vac else 0.0,
            max_vacuum_fraction,
            min_contrast,
            min_particle_fraction,
        )
        x0, y0 = sim.field_origin(stage)
        vac = sim.vacuum_mask(math.floor(x0), math.floor(y0), size, size)
        parts = sim.particle_mask(math.floor(x0), math.floor(y0), size, size)
        frames = []
        if random_doses > 0:
            lo, hi = math.log(min(short_doses)), math.log(max(short_doses))
            doses = [float(math.exp(v)) for v in rng.uniform(lo, hi, random_doses)]
        else:
            doses = [float(d) for d in short_doses for _ in range(shorts_per_dose)]
        for dose in doses:
            counts, expected = sim.render_with_truth(dose / DOSE_RATE, stage)
            frames.append((counts, expected, dose))
        long_counts: np.ndarray | None = None
        shift = (0.0, 0.0)
        if long_dose is not None:
            sx, sy = rng.uniform(-max_shift_px, max_shift_px, 2) if max_shift_px > 0 else (0, 0)
            # Moving the stage by +s moves the image content by -s: high(y, x) = low(y + sy, ...).
            shift = (-float(sy), -float(sx))
            k = max(1, math.ceil(long_dose / long_frame_dose))
            pos = (stage[0] + float(sx), stage[1] + float(sy))
            long_counts = np.zeros((size, size), np.float32)
            for _ in range(k):
                long_counts += sim.render(long_dose / k / DOSE_RATE, pos)
        for counts, expected, dose in frames:
            low.append(counts)
            truth.append(expected)
            vacuum.append(vac)
            particles.append(parts)
            low_dose.append(dose)
            fields.append(f)
            shifts.append(shift)
            if long_counts is not None:
                high.append(long_counts)
    n = len(low)
    return PairArrays(
        low=np.stack(low),
        high=np.stack(high) if high else None,
        counts_per_electron=np.full(n, sim.counts_per_electron),
        low_dose=np.array(low_dose),
        high_dose=np.full(n, long_dose if long_dose is not None else np.nan),
        field=np.array(fields),
        shift=np.array(shifts),
        truth=np.stack(truth),
        vacuum=np.stack(vacuum),
        particles=np.stack(particles),
        detector=[detector] * n,
        specimen=[specimen] * n,
        pixel_size_nm=np.full(n, sim.pixel_size_A / 10.0),
        source=(
            f"tem_acq.sim {specimen}/{detector} seed {seed}, {n_fields} fields of {size}x{size}, "
            f"short {'/'.join(f'{d:g}' for d in short_doses)} e-/px"
            f"{' (log-uniform)' if random_doses else ''}, long "
            f"{long_dose if long_dose is not None else 'none'} e-/px"
        ),
    )


def _pick_stage(
    sim: Any,
    rng: np.random.Generator,
    f: int,
    size: int,
    min_vacuum: float,
    max_vacuum: float,
    min_contrast: float = 0.0,
    min_particles: float = 0.0,
) -> tuple[float, float]:
    """A stage position for field ``f``: spaced along x, random along y (integer pixels).

    Candidates are drawn until one meets the vacuum, contrast and particle wishes; otherwise
    the one that came closest is used.
    """
    base_x = float((f + 1) * FIELD_SPACING * size)
    best: tuple[float, float] | None = None
    best_err = math.inf
    tries = 60 if (min_vacuum > 0 or min_contrast > 0 or min_particles > 0) else 1
    for _ in range(tries):
        pos = (base_x, float(rng.integers(-(10**6), 10**6)))
        if tries == 1:
            return pos
        err = 0.0
        if min_vacuum > 0:
            vac = sim.vacuum_fraction(pos)
            err += max(min_vacuum - vac, vac - max_vacuum, 0.0)
        if min_contrast > 0 and err == 0.0:
            t = sim.expected_electrons(1.0, pos)
            contrast = float((t.max() - t.min()) / max(float(t.max()), 1e-12))
            err += max(min_contrast - contrast, 0.0)
        if min_particles > 0 and err == 0.0:
            err += max(min_particles - sim.particle_fraction(pos), 0.0)
        if err == 0.0:
            return pos
        if err < best_err:
            best, best_err = pos, err
    assert best is not None
    return best
