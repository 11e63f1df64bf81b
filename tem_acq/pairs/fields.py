"""Training and test pairs from noise-free fields (:mod:`tem_acq.sim.fields`) and drawn cameras.

Each field is recorded as a paired-collection run would: a few short exposures, then one long
exposure (summed from frames of ``long_frame_dose``) taken after a small stage move that is
recorded (and registered away in training, as for real pairs). The camera of each field is drawn
from a :class:`~tem_acq.sim.fields.detectors.DetectorRecipe`: its detector model, counts per
electron and binning travel with every pair, so the normalisation corrects for the camera the
frame came from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from tem_acq.errors import TemAcqError
from tem_acq.pairs.arrays import PairArrays
from tem_acq.registration import shift_image
from tem_acq.sim.detector import detector_from_model
from tem_acq.sim.fields import Field
from tem_acq.sim.fields.detectors import Camera, DetectorRecipe

#: The project's specimen label of each field kind (evaluation targets are per specimen kind).
SPECIMEN_OF_FIELD = {"atomic": "atomic", "low-mag": "nanoparticles"}


def pairs_from_fields(
    fields: Sequence[Field],
    detectors: DetectorRecipe,
    *,
    seed: int,
    short_doses: Sequence[float] | None = None,
    dose_range: tuple[float, float] = (0.5, 50.0),
    shorts_per_field: int = 3,
    long_dose: float = 1000.0,
    long_frame_dose: float = 250.0,
    max_shift_px: float = 2.0,
    source: str = "",
) -> PairArrays:
    """Record every field with a camera drawn from ``detectors``: one pair per short frame.

    Parameters
    ----------
    fields
        Noise-free fields (any mix of kinds and pixel sizes; one frame size).
    detectors
        The cameras to draw from (one per field).
    seed
        Seeds the cameras, doses, stage moves and noise (field ``i`` uses ``(seed, i)``).
    short_doses
        Fixed short-frame doses (e-/px) recorded for every field (test sets); ``None``: draw
        ``shorts_per_field`` doses log-uniformly in ``dose_range`` (training).
    long_dose, long_frame_dose
        The long exposure's dose and the dose of each frame summed into it.
    max_shift_px
        Largest stage move (per axis, px) between the short frames and the long exposure.
    source
        Provenance text.

    Returns
    -------
    PairArrays
        With truth, vacuum and particle masks, per-pair detector models and binnings.
    """
    if not fields:
        raise TemAcqError("no fields to record: generate fields first")
    rows: list[dict[str, Any]] = []
    for i, fld in enumerate(fields):
        rng = np.random.default_rng([seed, i])
        camera = detectors.draw(rng)
        doses = _doses(rng, short_doses, dose_range, shorts_per_field)
        rows.extend(_record(fld, i, camera, doses, rng, long_dose, long_frame_dose, max_shift_px))
    n = len(rows)
    return PairArrays(
        low=np.stack([r["low"] for r in rows]),
        high=np.stack([r["high"] for r in rows]),
        counts_per_electron=np.array([r["cpe"] for r in rows]),
        low_dose=np.array([r["dose"] for r in rows]),
        high_dose=np.full(n, long_dose),
        field=np.array([r["field"] for r in rows]),
        shift=np.array([r["shift"] for r in rows]),
        truth=np.stack([r["truth"] for r in rows]),
        vacuum=np.stack([r["vacuum"] for r in rows]),
        particles=np.stack([r["particles"] for r in rows]),
        detector=[str(r["kind"]) for r in rows],
        specimen=[str(r["specimen"]) for r in rows],
        pixel_size_A=np.array([r["pixel_size_A"] for r in rows]),
        detector_model=[r["model"] for r in rows],
        binning=np.array([r["binning"] for r in rows]),
        source=source,
    )


def _doses(
    rng: np.random.Generator,
    fixed: Sequence[float] | None,
    dose_range: tuple[float, float],
    n: int,
) -> list[float]:
    if fixed is not None:
        return [float(d) for d in fixed]
    lo, hi = math.log(dose_range[0]), math.log(dose_range[1])
    return [float(math.exp(v)) for v in rng.uniform(lo, hi, n)]


def _record(
    fld: Field,
    index: int,
    camera: Camera,
    doses: list[float],
    rng: np.random.Generator,
    long_dose: float,
    long_frame_dose: float,
    max_shift_px: float,
) -> list[dict[str, Any]]:
    """The short frames and the long exposure of one field, as pair rows."""
    det = detector_from_model(camera.model, camera.counts_per_electron)
    b = camera.binning
    intensity = np.maximum(fld.intensity.astype(np.float32), 0.0)
    sy, sx = rng.uniform(-max_shift_px, max_shift_px, 2) if max_shift_px > 0 else (0.0, 0.0)
    # the long exposure after a stage move: its content moves by (sy, sx); registration finds it
    moved = np.maximum(shift_image(intensity, float(sy), float(sx)), 0.0)
    k = max(1, math.ceil(long_dose / long_frame_dose))
    high = np.zeros(intensity.shape, np.float32)
    for _ in range(k):
        high += det.sample(moved * np.float32(long_dose / k), rng, binning=b)
    common = {
        "field": index,
        "cpe": camera.counts_per_electron,
        "kind": camera.model.kind,
        "model": camera.model,
        "binning": b,
        "specimen": SPECIMEN_OF_FIELD.get(fld.kind, fld.kind),
        "pixel_size_A": fld.pixel_size_A,
        "vacuum": fld.vacuum,
        "particles": fld.particles,
        "high": high,
        "shift": (float(sy), float(sx)),
    }
    rows = []
    for dose in doses:
        truth = intensity * np.float32(dose)
        rows.append({**common, "dose": dose, "truth": truth, "low": det.sample(truth, rng, b)})
    return rows


__all__ = ["SPECIMEN_OF_FIELD", "pairs_from_fields"]
