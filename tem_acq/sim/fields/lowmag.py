"""Low-magnification fields: particles of many shapes and materials on holey or lacey carbon.

One field is made in five steps, each drawn from a :class:`LowMagRecipe` with the caller's
``numpy.random.Generator`` (so a field is fixed by the generator's state):

1. **optics**: pixel size (log-uniform), voltage, defocus (from weighted bands: underfocus,
   near focus, overfocus), focal spread and beam convergence (the partial-coherence envelopes);
2. **support**: a continuous film, a holey film (round holes with rough rims) or a lacey film
   (strands along the zero set of a smooth random field), 5-30 nm of amorphous carbon whose
   projected thickness varies smoothly (a fractal field), with its surfaces' nm-scale
   roughness, and finely (the count of carbon atoms in each simulation pixel is random): the
   amorphous texture, whose spectrum the optics shape;
   holes hold nothing at all;
3. **particles**: shapes (:mod:`._shapes`, exact projected thicknesses) of one or two
   materials (:mod:`._materials`), sized to span ``particle_span_px`` detector pixels;
4. **image formation**: the exit wave ``exp(i sigma (V0 t) - t / 2L)`` on a grid 2-4x finer
   than the detector, propagated through the transfer function of
   :func:`tem_acq.sim.optics.ctf` (defocus, Cs, temporal and spatial coherence envelopes), so
   edges carry Fresnel fringes; the intensity ``|psi|^2`` is averaged over each detector pixel;
5. the grid carries an apron wider than the optics' reach (the largest delocalisation any
   frequency the envelopes pass suffers), cut off at the end, so the periodic FFT never wraps
   into the field and a vacuum pixel farther than the reach from any material is exactly 1
   (within float32 rounding: the wave there is the unscattered plane wave).

:data:`LOWMAG_TRAIN` is the training recipe. :data:`LOWMAG_INDEPENDENT` is held out *whole*,
not by seed: its shapes (tetrahedra, triangular plates, decahedra, core-shell particles), its
materials (Ir, Cu, ZrO2, Co3O4, Al2O3) and its voltage (120 kV) are ones the training recipe
never draws, so a model judged on it meets specimens and optics it has never seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import ConfigDict, Field, FiniteFloat, PositiveFloat, field_validator, model_validator

from tem_acq.errors import ConfigError
from tem_acq.schema import StrictModel, as_model
from tem_acq.sim._procedural import fractal_noise
from tem_acq.sim.config import electron_wavelength_A
from tem_acq.sim.fields import Field as TemField
from tem_acq.sim.fields import _shapes
from tem_acq.sim.fields._materials import CARBON_ATOMS_PER_A3, MATERIALS, Material
from tem_acq.sim.optics import ctf, interaction_constant

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
Range = tuple[FiniteFloat, FiniteFloat]

#: Every particle shape the generator can draw.
SHAPES: tuple[str, ...] = (
    "sphere",
    "rod",
    "cube",
    "plate",
    "octahedron",
    "shell",
    "aggregate",
    "tetrahedron",
    "triangular_plate",
    "decahedron",
    "core_shell",
)
#: The kinds of support film.
SUPPORTS: tuple[str, ...] = ("film", "holey", "lacey")
#: The largest field side :func:`lowmag_field` makes (detector pixels).
MAX_SIZE = 4096
#: Vacuum is exact to this level beyond the optics' reach: the envelope threshold that sets it.
_REACH_THRESHOLD = 1e-5


def _ordered(value: tuple[float, float], name: str) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value}")
    return value


def _weights(value: dict[str, float], known: tuple[str, ...], what: str) -> dict[str, float]:
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {list(known)}")
    if any(w < 0 or not math.isfinite(w) for w in value.values()) or sum(value.values()) <= 0:
        raise ValueError(f"{what} weights must be finite, >= 0 and not all 0, got {value}")
    return value


class LowMagRecipe(StrictModel):
    """What low-magnification fields are drawn from: specimens, support and optics.

    Parameters
    ----------
    name
        A label recorded in every field's settings (``"train"``, ``"independent"``).
    shapes, materials, supports
        Weights of the particle shapes (:data:`SHAPES`), particle materials
        (:data:`~tem_acq.sim.fields._materials.MATERIALS`) and support films (:data:`SUPPORTS`).
    particle_span_px
        Range of particle sizes in detector pixels (log-uniform per field, +-20 % per particle).
    particle_count
        Range of the number of particles (or aggregates) per field; fewer when big particles
        would cover more than ``max_coverage`` of the field.
    max_coverage
        Largest share of the field the particles' outlines may cover (about).
    over_holes
        Probability that a particle is placed anywhere, holes included; the others are
        placed on film (and dropped when there is hardly any).
    film_thickness_nm, film_variation
        Nominal carbon thickness and the rms of its smooth relative variation (ranges).
    film_roughness_nm, roughness_length_nm
        Rms of the film's surface roughness (both faces together) and its correlation length.
    hole_radius_nm
        Radius of the round holes of a holey film; lacey strands are spaced alike.
    defocus_nm
        Bands ``(low, high, weight)`` of defocus (negative = underfocus).
    voltages_kv
        Accelerating voltages drawn with equal weight.
    pixel_size_A
        Detector pixel size at the specimen (log-uniform).
    cs_mm, focal_spread_A, convergence_mrad
        Spherical aberration, rms focal spread and illumination semi-angle (ranges).
    max_tilt_deg
        Largest tilt of rods and plates out of the film's plane.
    """

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    shapes: dict[str, float]
    materials: dict[str, float]
    supports: dict[str, float] = Field(
        default_factory=lambda: {"film": 0.25, "holey": 0.5, "lacey": 0.25}
    )
    particle_span_px: Range = (4.0, 150.0)
    particle_count: tuple[int, int] = (0, 40)
    max_coverage: float = Field(default=0.35, gt=0.0, le=1.0)
    over_holes: float = Field(default=0.15, ge=0.0, le=1.0)
    film_thickness_nm: Range = (5.0, 30.0)
    film_variation: Range = (0.03, 0.2)
    film_roughness_nm: Range = (0.2, 2.0)
    roughness_length_nm: Range = (1.5, 6.0)
    hole_radius_nm: Range = (150.0, 1200.0)
    defocus_nm: tuple[tuple[FiniteFloat, FiniteFloat, PositiveFloat], ...] = (
        (-5000.0, -200.0, 0.8),
        (-200.0, 200.0, 0.1),
        (200.0, 1500.0, 0.1),
    )
    voltages_kv: tuple[float, ...] = (200.0, 300.0)
    pixel_size_A: Range = (5.0, 50.0)
    cs_mm: Range = (0.5, 2.7)
    focal_spread_A: Range = (20.0, 60.0)
    convergence_mrad: Range = (0.05, 0.3)
    max_tilt_deg: float = Field(default=40.0, ge=0.0, le=90.0)

    @field_validator("shapes")
    @classmethod
    def _known_shapes(cls, value: dict[str, float]) -> dict[str, float]:
        return _weights(value, SHAPES, "shapes")

    @field_validator("materials")
    @classmethod
    def _known_materials(cls, value: dict[str, float]) -> dict[str, float]:
        return _weights(value, tuple(m for m in MATERIALS if m != "C"), "materials")

    @field_validator("supports")
    @classmethod
    def _known_supports(cls, value: dict[str, float]) -> dict[str, float]:
        return _weights(value, SUPPORTS, "supports")

    @field_validator("voltages_kv")
    @classmethod
    def _voltages(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 60.0 <= v <= 1000.0 for v in value):
            raise ValueError(f"voltages_kv must be 60-1000 kV, at least one, got {value}")
        return value

    @model_validator(mode="after")
    def _ranges(self) -> LowMagRecipe:
        positive = {
            "particle_span_px": (1.0, 4096.0),
            "film_thickness_nm": (0.0, 500.0),
            "film_variation": (0.0, 1.0),
            "film_roughness_nm": (0.0, 50.0),
            "roughness_length_nm": (0.1, 1000.0),
            "hole_radius_nm": (1.0, 1e5),
            "pixel_size_A": (0.5, 1000.0),
            "cs_mm": (0.0, 10.0),
            "focal_spread_A": (0.0, 500.0),
            "convergence_mrad": (0.001, 5.0),
        }
        for name, (lo, hi) in positive.items():
            value = _ordered(getattr(self, name), name)
            if value[0] < lo or value[1] > hi:
                raise ValueError(f"{name} must lie within [{lo}, {hi}], got {value}")
        count = _ordered(self.particle_count, "particle_count")
        if count[0] < 0 or count[1] > 10_000:
            raise ValueError(f"particle_count must lie within [0, 10000], got {count}")
        for band in self.defocus_nm:
            _ordered((band[0], band[1]), "each defocus_nm band")
        if not self.defocus_nm:
            raise ValueError("defocus_nm needs at least one (low, high, weight) band")
        return self


@dataclass(frozen=True)
class _Grid:
    """The simulation grid: ``sub`` x finer than the detector, with an apron of detector pixels."""

    size: int
    pixel_size_A: float
    sub: int
    apron: int
    cells: int  # detector pixels per side, apron included

    @property
    def step_A(self) -> float:
        return self.pixel_size_A / self.sub

    @property
    def n(self) -> int:
        return self.cells * self.sub

    def coordinates_A(self) -> F64:
        """Pixel-centre coordinates of the simulation grid (Å; the field starts at 0)."""
        centres = (np.arange(self.n, dtype=np.float64) + 0.5) * self.step_A
        return centres - self.apron * self.pixel_size_A


def _pick(weights: dict[str, float], rng: np.random.Generator) -> str:
    names = list(weights)
    p = np.array([weights[k] for k in names], float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _log_uniform(bounds: tuple[float, float], rng: np.random.Generator) -> float:
    lo, hi = bounds
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _draw_optics(recipe: LowMagRecipe, rng: np.random.Generator) -> dict[str, float]:
    bands = recipe.defocus_nm
    weights = np.array([b[2] for b in bands])
    lo, hi, _ = bands[int(rng.choice(len(bands), p=weights / weights.sum()))]
    return {
        "pixel_size_A": _log_uniform(recipe.pixel_size_A, rng),
        "voltage_kv": float(recipe.voltages_kv[int(rng.integers(len(recipe.voltages_kv)))]),
        "defocus_nm": float(rng.uniform(lo, hi)),
        "cs_mm": float(rng.uniform(*recipe.cs_mm)),
        "focal_spread_A": float(rng.uniform(*recipe.focal_spread_A)),
        "convergence_mrad": float(rng.uniform(*recipe.convergence_mrad)),
    }


@lru_cache(maxsize=8)
def _window(n: int) -> NDArray[np.float32]:
    """Smooth band limit of the simulation grid: flat to half its Nyquist, cos^2 to 0 at it."""
    g = np.hypot(np.fft.fftfreq(n)[:, None], np.fft.fftfreq(n)[None, :]) / 0.5
    taper = np.cos(0.5 * math.pi * np.clip((g - 0.5) / 0.5, 0.0, 1.0)) ** 2
    out = taper.astype(np.float32)
    out.setflags(write=False)
    return out


def reach_A(optics: dict[str, float], step_A: float) -> float:
    """Largest delocalisation (Å) of any frequency the transfer function passes above 1e-5.

    A frequency ``g`` is displaced by ``lambda |df| g + Cs lambda^3 g^3``; beyond the largest
    such shift among frequencies the envelopes (and the grid's band limit) pass, an edge leaves
    no trace, so vacuum there is the plane wave.
    """
    lam = electron_wavelength_A(optics["voltage_kv"])
    df, cs = optics["defocus_nm"] * 10.0, optics["cs_mm"] * 1e7
    g = np.linspace(0.0, 0.5 / step_A, 4096)
    e_t = np.exp(-0.5 * (math.pi * lam * optics["focal_spread_A"]) ** 2 * g**4)
    grad = df * g + cs * lam * lam * g**3
    e_s = np.exp(-((math.pi * optics["convergence_mrad"] * 1e-3 * grad) ** 2))
    passed = e_t * e_s > _REACH_THRESHOLD
    shift = lam * np.abs(grad)
    return float(shift[passed].max()) if passed.any() else 0.0


def _grid(size: int, optics: dict[str, float]) -> _Grid:
    pixel = optics["pixel_size_A"]
    sub = int(min(4, max(2, math.ceil(pixel / 3.0))))
    reach_px = reach_A(optics, pixel / sub) / pixel
    apron = math.ceil(reach_px) + 4
    cells = 16 * math.ceil((size + 2 * apron) / 16)
    return _Grid(size, pixel, sub, (cells - size) // 2, cells)


# ---- support film --------------------------------------------------------------------------


def _noise_key(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63))


def _holey_coverage(recipe: LowMagRecipe, grid: _Grid, rng: np.random.Generator) -> F64:
    """Film coverage in [0, 1] of a film with 1-3 round holes (rough rims) near the field."""
    c = grid.coordinates_A()
    coverage = np.ones((grid.n, grid.n))
    side = grid.size * grid.pixel_size_A
    for _ in range(int(rng.integers(1, 4))):
        radius = 10.0 * _log_uniform(recipe.hole_radius_nm, rng)
        # the rim passes within 0.7 field sides of the field's centre, on either side
        offset = max(radius + rng.uniform(-0.7, 0.7) * side, 0.0)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        centre = (side / 2 + offset * math.cos(angle), side / 2 + offset * math.sin(angle))
        harmonics = np.arange(2, 7)
        amps = 0.02 / harmonics * rng.standard_normal(harmonics.size)
        phases = rng.uniform(0.0, 2.0 * math.pi, harmonics.size)
        _cut_hole(coverage, c, centre, radius, (harmonics, amps, phases), grid.step_A)
    return coverage


def _cut_hole(
    coverage: F64,
    c: F64,
    centre: tuple[float, float],
    radius: float,
    rim: tuple[NDArray[np.int64], F64, F64],
    step_A: float,
) -> None:
    """Set ``coverage`` to 0 inside one hole, with a one-pixel anti-aliased rough rim."""
    harmonics, amps, phases = rim
    wobble = radius * float(np.abs(amps).sum()) + 2.0 * step_A
    ix = np.flatnonzero(np.abs(c - centre[0]) <= radius + wobble)
    iy = np.flatnonzero(np.abs(c - centre[1]) <= radius + wobble)
    if ix.size == 0 or iy.size == 0:
        return
    box = (slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1))
    dx, dy = c[box[1]][None, :] - centre[0], c[box[0]][:, None] - centre[1]
    distance = np.hypot(dx, dy)
    coverage[box][distance < radius - wobble] = 0.0
    near = np.abs(distance - radius) <= wobble  # the rim's band: only there the angle matters
    theta = np.arctan2(
        np.broadcast_to(dy, distance.shape)[near], np.broadcast_to(dx, distance.shape)[near]
    )
    edge = radius * (
        1.0 + (amps[:, None] * np.cos(np.outer(harmonics, theta) + phases[:, None])).sum(0)
    )
    cut = np.clip((distance[near] - edge) / step_A + 0.5, 0.0, 1.0)
    coverage[box][near] = np.minimum(coverage[box][near], cut)


def _lacey_coverage(recipe: LowMagRecipe, grid: _Grid, rng: np.random.Generator) -> F64:
    """Film coverage of lacey carbon: strands along the zero set of a smooth random field."""
    spacing_px = 20.0 * _log_uniform(recipe.hole_radius_nm, rng) / grid.step_A
    idx = np.arange(grid.n, dtype=np.float64)
    f = fractal_noise(_noise_key(rng), idx, idx, spacing_px, 3)
    share = rng.uniform(0.3, 0.6)
    half_width = float(np.quantile(np.abs(f[::7, ::7]), share))
    gy, gx = np.gradient(f)
    distance_px = (half_width - np.abs(f)) / np.maximum(np.hypot(gx, gy), 1e-12)
    out: F64 = np.clip(distance_px + 0.5, 0.0, 1.0)
    return out


def _film_thickness_A(
    recipe: LowMagRecipe, grid: _Grid, coverage: F64, rng: np.random.Generator
) -> tuple[F64, dict[str, float]]:
    """Projected carbon thickness (Å), 0 in holes.

    Three parts: a smooth relative variation (a fractal field 80-400 nm across), the surface
    roughness (nm scale), and the random count of carbon atoms in each simulation pixel.
    """
    nominal = 10.0 * rng.uniform(*recipe.film_thickness_nm)
    variation = rng.uniform(*recipe.film_variation)
    spacing_A = 10.0 * rng.uniform(80.0, 400.0)
    roughness_A = 10.0 * rng.uniform(*recipe.film_roughness_nm)
    length_A = 10.0 * rng.uniform(*recipe.roughness_length_nm)
    idx = np.arange(grid.n, dtype=np.float64)
    smooth = fractal_noise(_noise_key(rng), idx, idx, spacing_A / grid.step_A, 4)
    rough = fractal_noise(_noise_key(rng), idx, idx, 2.0 * length_A / grid.step_A, 2)
    t = np.maximum(nominal * (1.0 + variation * smooth) + roughness_A * rough, 0.2 * nominal)
    t *= coverage
    # atoms per simulation pixel are random (Gaussian limit of Poisson): var(t) = t / (n a)
    sigma = np.sqrt(t / (CARBON_ATOMS_PER_A3 * grid.step_A**2))
    t = np.maximum(t + sigma * rng.standard_normal(t.shape), 0.0)
    settings = {
        "film_thickness_nm": nominal / 10.0,
        "film_variation": variation,
        "film_variation_spacing_nm": spacing_A / 10.0,
        "film_roughness_nm": roughness_A / 10.0,
        "roughness_length_nm": length_A / 10.0,
    }
    return t, settings


def _support(
    recipe: LowMagRecipe, grid: _Grid, rng: np.random.Generator
) -> tuple[F64, F64, dict[str, object]]:
    kind = _pick(recipe.supports, rng)
    if kind == "holey":
        coverage = _holey_coverage(recipe, grid, rng)
    elif kind == "lacey":
        coverage = _lacey_coverage(recipe, grid, rng)
    else:
        coverage = np.ones((grid.n, grid.n))
    thickness, settings = _film_thickness_A(recipe, grid, coverage, rng)
    return coverage, thickness, {"support": kind, **settings}


# ---- particles -----------------------------------------------------------------------------

Spec = dict[str, Any]


def _rotation_list(rotation: F64) -> list[float]:
    return [float(v) for v in rotation.ravel()]


def _tilted(recipe: LowMagRecipe, rng: np.random.Generator) -> F64:
    tilt = math.radians(rng.uniform(0.0, recipe.max_tilt_deg))
    return _shapes.tilt_rotation(rng.uniform(0.0, 2.0 * math.pi), tilt)


def _aggregate(size_A: float, rng: np.random.Generator) -> Spec:
    """Touching or slightly sintered spheres, each attached to a random earlier one."""
    count = int(rng.integers(3, 13))
    radii = 0.25 * size_A * np.exp(0.15 * rng.standard_normal(count))
    centres = np.zeros((count, 3))
    for k in range(1, count):
        j = int(rng.integers(k))
        direction = rng.standard_normal(3) * np.array([1.0, 1.0, 0.3])
        direction /= np.linalg.norm(direction)
        centres[k] = centres[j] + (radii[j] + radii[k]) * rng.uniform(0.85, 1.0) * direction
    centres -= centres.mean(axis=0)
    return {"centres_A": centres.tolist(), "radii_A": radii.tolist()}


def _shape_spec(shape: str, size_A: float, recipe: LowMagRecipe, rng: np.random.Generator) -> Spec:
    """The shape's parameters (JSON values) for a particle of nominal size ``size_A``."""
    half = size_A / 2.0
    if shape == "sphere":
        return {"radius_A": half}
    if shape == "rod":
        radius = half / rng.uniform(2.5, 8.0)
        return {
            "length_A": size_A,
            "radius_A": radius,
            "rotation": _rotation_list(_tilted(recipe, rng)),
        }
    if shape in ("shell", "core_shell"):
        return {"outer_A": half, "inner_A": half * rng.uniform(0.55, 0.85)}
    if shape == "aggregate":
        return _aggregate(size_A, rng)
    if shape == "plate":
        extents = [half, half * rng.uniform(0.5, 1.0), half * rng.uniform(0.08, 0.3)]
        return {"half_A": extents, "rotation": _rotation_list(_tilted(recipe, rng))}
    if shape == "triangular_plate":
        height = size_A * rng.uniform(0.1, 0.35)
        return {
            "edge_A": size_A,
            "height_A": height,
            "rotation": _rotation_list(_tilted(recipe, rng)),
        }
    rotation = _rotation_list(_shapes.random_rotation(rng))
    if shape == "decahedron":
        return {
            "radius_A": half,
            "half_height_A": half * rng.uniform(0.6, 0.9),
            "rotation": rotation,
        }
    return {"edge_A": size_A, "rotation": rotation}  # cube, octahedron, tetrahedron


def _faces(shape: str, spec: Spec) -> tuple[F64, F64]:
    """Face normals and distances of a polyhedral particle."""
    if shape == "cube":
        return _shapes.box_faces(*[spec["edge_A"] / 2.0] * 3)
    if shape == "plate":
        return _shapes.box_faces(*spec["half_A"])
    if shape == "octahedron":
        return _shapes.octahedron_faces(spec["edge_A"] / 2.0)
    if shape == "tetrahedron":
        return _shapes.tetrahedron_faces(spec["edge_A"])
    if shape == "triangular_plate":
        return _shapes.prism_faces(spec["edge_A"], spec["height_A"])
    return _shapes.bipyramid_faces(spec["radius_A"], spec["half_height_A"])


def particle_thickness_A(shape: str, spec: Spec, x: F64, y: F64) -> tuple[F64, F64]:
    """Projected thickness (Å) of a particle's main material and of its shell material.

    Parameters
    ----------
    shape
        One of :data:`SHAPES`.
    spec
        Its parameters, as :func:`lowmag_field` records them in ``settings["particles"]``.
    x, y
        Ray positions relative to the particle's centre (Å), broadcastable.

    Returns
    -------
    tuple
        ``(main, shell)`` thickness maps; ``shell`` is zero except for ``"core_shell"``.
    """
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    zero = np.zeros(x.shape)
    if shape == "sphere":
        return _shapes.sphere(x, y, spec["radius_A"]), zero
    if shape == "shell":
        return _shapes.shell(x, y, spec["outer_A"], spec["inner_A"]), zero
    if shape == "core_shell":
        core = _shapes.sphere(x, y, spec["inner_A"])
        return core, _shapes.sphere(x, y, spec["outer_A"]) - core
    if shape == "aggregate":
        total = zero.copy()
        for (cx, cy, _cz), r in zip(spec["centres_A"], spec["radii_A"], strict=True):
            total += _shapes.sphere(x - cx, y - cy, r)
        return total, zero
    rotation = np.asarray(spec["rotation"], np.float64).reshape(3, 3)
    if shape == "rod":
        return _shapes.spherocylinder(x, y, spec["length_A"], spec["radius_A"], rotation), zero
    normals, distances = _faces(shape, spec)
    return _shapes.polyhedron(x, y, normals, distances, rotation), zero


def extent_A(shape: str, spec: Spec) -> float:
    """Radius (Å) of a circle about the centre that holds the particle's whole projection."""
    if shape == "aggregate":
        return max(
            math.hypot(c[0], c[1]) + r
            for c, r in zip(spec["centres_A"], spec["radii_A"], strict=True)
        )
    if shape == "plate":
        return math.sqrt(sum(h * h for h in spec["half_A"]))
    if shape == "triangular_plate":
        return math.hypot(spec["edge_A"] / math.sqrt(3.0), spec["height_A"] / 2.0)
    if shape == "decahedron":
        return max(spec["radius_A"], spec["half_height_A"])
    if shape in ("cube", "tetrahedron"):
        return spec["edge_A"] * math.sqrt(3.0) / 2.0
    return float(max(v for k, v in spec.items() if k.endswith("_A") and isinstance(v, float)))


def _field_choices(weights: dict[str, float], rng: np.random.Generator, most: int) -> list[str]:
    """One to ``most`` distinct names by weight (most fields hold one kind)."""
    wanted = 1 if rng.random() < 0.6 else int(rng.integers(2, most + 1))
    chosen: list[str] = []
    for _ in range(4 * most):
        name = _pick(weights, rng)
        if name not in chosen:
            chosen.append(name)
        if len(chosen) >= min(wanted, len(weights)):
            break
    return chosen


def _place(
    grid: _Grid, coverage: F64, extent: float, over_holes: float, rng: np.random.Generator
) -> tuple[float, float] | None:
    """A centre (Å) near the field: anywhere with probability ``over_holes``, else on film.

    A particle bound for the film that finds none in 8 tries is dropped (``None``).
    """
    side = grid.size * grid.pixel_size_A
    anywhere = rng.random() < over_holes
    for _ in range(8):
        x, y = rng.uniform(-0.5 * extent, side + 0.5 * extent, 2)
        i = min(max(int((y / grid.step_A) + grid.apron * grid.sub), 0), grid.n - 1)
        j = min(max(int((x / grid.step_A) + grid.apron * grid.sub), 0), grid.n - 1)
        if anywhere or coverage[i, j] >= 0.5:
            return float(x), float(y)
    return None


def _draw_particles(
    recipe: LowMagRecipe, grid: _Grid, coverage: F64, rng: np.random.Generator
) -> list[Spec]:
    shapes = _field_choices(recipe.shapes, rng, 3)
    materials = _field_choices(recipe.materials, rng, 2)
    lo, hi = recipe.particle_span_px
    median_px = _log_uniform((lo, hi), rng)
    most = recipe.max_coverage * grid.size**2 / (0.8 * median_px**2)
    count = min(
        int(rng.integers(recipe.particle_count[0], recipe.particle_count[1] + 1)), int(most)
    )
    particles: list[Spec] = []
    for _ in range(count):
        shape = shapes[int(rng.integers(len(shapes)))]
        material = materials[int(rng.integers(len(materials)))]
        size_px = float(np.clip(median_px * math.exp(0.2 * rng.standard_normal()), lo, hi))
        spec = _shape_spec(shape, size_px * grid.pixel_size_A, recipe, rng)
        extent = extent_A(shape, spec)
        where = _place(grid, coverage, extent, recipe.over_holes, rng)
        if where is None:
            continue
        particle: Spec = {"shape": shape, "material": material, "x_A": where[0], "y_A": where[1]}
        if shape == "core_shell":
            others = [m for m in recipe.materials if m != material] or [material]
            particle["shell_material"] = others[int(rng.integers(len(others)))]
        particles.append({**particle, "size_px": size_px, "extent_A": extent, "spec": spec})
    return particles


# ---- image formation -----------------------------------------------------------------------


def _contrast(material: Material, voltage_kv: float) -> tuple[float, float]:
    """Phase (rad) and optical density (intensity ``exp(-od)``) per Å of ``material``."""
    phase = interaction_constant(voltage_kv) * material.mean_inner_potential_V
    return phase, 1.0 / (10.0 * material.mean_free_path_nm(voltage_kv))


def _render_particles(
    particles: list[Spec], grid: _Grid, voltage_kv: float
) -> tuple[F64, F64, F64]:
    """Phase, optical density and total thickness (Å) of every particle on the grid."""
    c = grid.coordinates_A()
    phase, density, thickness = (np.zeros((grid.n, grid.n)) for _ in range(3))
    for p in particles:
        reach = p["extent_A"] + grid.step_A
        ix = np.flatnonzero(np.abs(c - p["x_A"]) <= reach)
        iy = np.flatnonzero(np.abs(c - p["y_A"]) <= reach)
        if ix.size == 0 or iy.size == 0:
            continue
        box = (slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1))
        x, y = c[box[1]][None, :] - p["x_A"], c[box[0]][:, None] - p["y_A"]
        main, shell = particle_thickness_A(p["shape"], p["spec"], x, y)
        for name, t in ((p["material"], main), (p.get("shell_material"), shell)):
            if name is None:
                continue
            per_phase, per_density = _contrast(MATERIALS[name], voltage_kv)
            phase[box] += per_phase * t
            density[box] += per_density * t
            thickness[box] += t
    return phase, density, thickness


def _image(phase: F64, density: F64, grid: _Grid, optics: dict[str, float]) -> F32:
    """``|psi * h|^2`` of the exit wave through the transfer function, per detector pixel."""
    wave = (np.exp(-0.5 * density) * np.exp(1j * phase)).astype(np.complex64)
    transfer = ctf(
        (grid.n, grid.n),
        grid.step_A,
        optics["voltage_kv"],
        optics["cs_mm"],
        optics["defocus_nm"],
        focal_spread_A=optics["focal_spread_A"],
        convergence_mrad=optics["convergence_mrad"],
        aperture_fraction=1.5,  # no hard cut: the smooth band limit below instead
    )
    transfer = (transfer * _window(grid.n)).astype(np.complex64)
    image = np.fft.ifft2(np.fft.fft2(wave) * transfer)
    intensity = (image.real**2 + image.imag**2).astype(np.float32)
    return _crop(_bin_mean(intensity, grid.sub), grid)


def _bin_mean(a: NDArray[np.generic], sub: int) -> F32:
    n = a.shape[0] // sub
    out: F32 = a.reshape(n, sub, n, sub).mean(axis=(1, 3), dtype=np.float64).astype(np.float32)
    return out


def _crop(a: Any, grid: _Grid) -> Any:
    s = slice(grid.apron, grid.apron + grid.size)
    return a[s, s]


def _check_size(size: int) -> int:
    if (
        isinstance(size, bool)
        or not isinstance(size, int | np.integer)
        or not 16 <= size <= MAX_SIZE
    ):
        raise ConfigError(
            f"low-mag field size must be an integer from 16 to {MAX_SIZE} pixels, got {size!r}"
        )
    return int(size)


def lowmag_field(
    recipe: LowMagRecipe | Mapping[str, Any], size: int, rng: np.random.Generator
) -> TemField:
    """One noise-free low-magnification field drawn from ``recipe``.

    Parameters
    ----------
    recipe
        What to draw from (:data:`LOWMAG_TRAIN`, :data:`LOWMAG_INDEPENDENT`, or a mapping of
        :class:`LowMagRecipe` fields, validated: a bad value raises ConfigError in one line).
    size
        Field side in detector pixels (16 to :data:`MAX_SIZE`).
    rng
        The only source of randomness: the same generator state gives the same field.

    Returns
    -------
    tem_acq.sim.fields.Field
        Intensity relative to vacuum (float32, >= 0), ``vacuum`` (no film and no particle
        anywhere in the pixel), ``particles`` (a particle somewhere in the pixel) and the
        settings drawn (optics, support, every particle), JSON values.
    """
    recipe = as_model(LowMagRecipe, recipe, "invalid low-mag recipe", ConfigError)
    size = _check_size(size)
    optics = _draw_optics(recipe, rng)
    grid = _grid(size, optics)
    coverage, film_A, support = _support(recipe, grid, rng)
    particles = _draw_particles(recipe, grid, coverage, rng)
    phase, density, thickness = _render_particles(particles, grid, optics["voltage_kv"])
    carbon_phase, carbon_density = _contrast(MATERIALS["C"], optics["voltage_kv"])
    phase += carbon_phase * film_A
    density += carbon_density * film_A
    intensity = np.maximum(_image(phase, density, grid, optics), 0.0)
    n, sub = grid.cells, grid.sub
    material = ((coverage > 0.0) | (thickness > 0.0)).reshape(n, sub, n, sub).any(axis=(1, 3))
    in_particle = (thickness > 0.0).reshape(n, sub, n, sub).any(axis=(1, 3))
    settings: dict[str, object] = {
        "generator": "low-mag",
        "recipe": recipe.name,
        **optics,
        "oversampling": sub,
        "reach_px": reach_A(optics, grid.step_A) / grid.pixel_size_A,
        **support,
        "particles": particles,
    }
    return TemField(
        intensity=np.ascontiguousarray(intensity, dtype=np.float32),
        pixel_size_A=optics["pixel_size_A"],
        vacuum=np.ascontiguousarray(~_crop(material, grid)),
        particles=np.ascontiguousarray(_crop(in_particle, grid)),
        kind="low-mag",
        settings=settings,
    )


#: The training recipe: the shapes, materials and optics users image at low magnification.
LOWMAG_TRAIN = LowMagRecipe(
    name="train",
    shapes={
        "sphere": 2.0,
        "rod": 1.5,
        "cube": 1.0,
        "plate": 1.0,
        "octahedron": 1.0,
        "shell": 0.7,
        "aggregate": 1.5,
    },
    materials={
        "Au": 2.0,
        "Pt": 1.0,
        "Pd": 1.0,
        "Ag": 1.0,
        "CeO2": 1.0,
        "SiO2": 1.0,
        "Fe3O4": 1.0,
        "TiO2": 1.0,
        "ZnO": 0.7,
    },
)

#: The independent recipe, held out whole (not by seed): shapes (tetrahedra, triangular plates,
#: decahedra, core-shell particles), materials (Ir, Cu, ZrO2, Co3O4, Al2O3) and a voltage
#: (120 kV) that :data:`LOWMAG_TRAIN` never draws; the rest of the optics spans the same ranges.
LOWMAG_INDEPENDENT = LowMagRecipe(
    name="independent",
    shapes={"tetrahedron": 1.0, "triangular_plate": 1.0, "decahedron": 1.0, "core_shell": 1.0},
    materials={"Ir": 1.0, "Cu": 1.0, "ZrO2": 1.0, "Co3O4": 1.0, "Al2O3": 1.0},
    voltages_kv=(120.0,),
)

__all__ = [
    "LOWMAG_INDEPENDENT",
    "LOWMAG_TRAIN",
    "MAX_SIZE",
    "SHAPES",
    "SUPPORTS",
    "LowMagRecipe",
    "extent_A",
    "lowmag_field",
    "particle_thickness_A",
    "reach_A",
]
