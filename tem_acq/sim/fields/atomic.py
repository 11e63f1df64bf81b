"""Atomic-resolution fields by multislice: recipes, and one field per draw.

A field is nanocrystals (one material per field; fcc metals or oxides, spheres or {111}+{100}
polyhedra, 1.5-10 nm, along a zone axis or randomly oriented, some with a (111) twin) on an
amorphous carbon film 2-10 nm thick, some over the edge of a hole (vacuum), imaged by
multislice (:mod:`~tem_acq.sim.fields.multislice`) with a drawn lens (uncorrected: Cs 0.5-1.5 mm
near Scherzer defocus; or Cs-corrected: |Cs| up to 20 um, small defocus), aperture and partial
coherence, at a drawn detector pixel size.

Two recipes ship: :data:`ATOMIC_TRAIN` for training data and :data:`ATOMIC_INDEPENDENT`, an
independent test set **held out whole, not by seed**: its materials (Cu, Ir, Rh, ZrO2, MgO), zone
axes ([111], [112]), particle shape (cuboctahedron), voltages (80, 120 kV) and focal spreads
(45-70 A) are never drawn by the training recipe (which draws Au, Pt, Pd, Ag, CeO2; [001],
[011] and random orientations; spheres and truncated octahedra; 200 and 300 kV; 20-45 A).

The structure is laid out periodically: the carbon film wraps the simulation cell, the hole is a
disk on the periodic cell, and the cell is the field plus a margin, so delocalised contrast
wraps as it would from neighbouring specimen one cell away.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import Field as PydanticField
from pydantic import field_validator, model_validator

from tem_acq.errors import ConfigError
from tem_acq.schema import StrictModel, as_model
from tem_acq.sim.config import electron_wavelength_A, scherzer_defocus_nm
from tem_acq.sim.fields import Field
from tem_acq.sim.fields.multislice import (
    Grid,
    Optics,
    exit_wave,
    fast_size,
    fourier_resample,
    image,
)
from tem_acq.sim.fields.structures import (
    MATERIALS,
    Atoms,
    Shape,
    amorphous_carbon,
    nanoparticle,
    random_rotation,
    zone_axis_rotation,
)

Share = Annotated[float, PydanticField(ge=0.0, le=1.0)]
Range = tuple[float, float]
Zone = tuple[int, int, int]


class AtomicRecipe(StrictModel):
    """What an atomic-resolution field may be: every range is drawn uniformly unless noted."""

    name: str
    materials: tuple[str, ...] = PydanticField(min_length=1)
    shapes: tuple[Shape, ...] = PydanticField(min_length=1)
    #: Truncation of the truncated octahedra ({100} over {111} face distance).
    truncation: Range = (1.0, 1.5)
    size_nm: Range = (1.5, 10.0)
    zone_axes: tuple[Zone, ...] = ()
    random_orientation_share: Share = 0.0
    twin_share: Share = 0.0
    carbon_thickness_nm: Range = (2.0, 10.0)
    voltages_kv: tuple[float, ...] = PydanticField(min_length=1)
    corrected_share: Share = 0.5
    #: Cs of a corrected lens (um; either sign) and its defocus (nm).
    cs_corrected_um: Range = (-20.0, 20.0)
    defocus_corrected_nm: Range = (-8.0, 8.0)
    #: Cs of an uncorrected lens (mm) and the spread of its defocus around Scherzer (nm, +-).
    cs_uncorrected_mm: Range = (0.5, 1.5)
    scherzer_spread_nm: float = PydanticField(default=10.0, ge=0.0)
    aperture_mrad: Range = (15.0, 30.0)
    focal_spread_A: Range = (20.0, 45.0)
    convergence_mrad: Range = (0.05, 0.4)
    #: Detector pixel size at the specimen, drawn log-uniformly (A/px).
    pixel_size_A: Range = (0.1, 1.0)
    particles_per_field: tuple[int, int] = (1, 3)
    vacuum_share: Share = 0.3
    slice_thickness_A: float = PydanticField(default=2.0, gt=0.5, le=5.0)
    margin_A: float = PydanticField(default=16.0, ge=0.0)

    @field_validator("materials")
    @classmethod
    def _known_materials(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [m for m in value if m not in MATERIALS]
        if unknown:
            raise ValueError(f"unknown {unknown}; choose from {', '.join(MATERIALS)}")
        return value

    @field_validator("zone_axes")
    @classmethod
    def _nonzero_zones(cls, value: tuple[Zone, ...]) -> tuple[Zone, ...]:
        if any(not any(z) for z in value):
            raise ValueError("a zone axis needs a nonzero direction, e.g. (0, 1, 1)")
        return value

    @field_validator(
        "truncation", "size_nm", "carbon_thickness_nm", "cs_uncorrected_mm", "aperture_mrad",
        "focal_spread_A", "convergence_mrad", "pixel_size_A", "cs_corrected_um",
        "defocus_corrected_nm", "particles_per_field",
    )  # fmt: skip
    @classmethod
    def _ordered(cls, value: Range) -> Range:
        if not value[0] <= value[1]:
            raise ValueError(f"a range needs low <= high, got {value}")
        return value

    @model_validator(mode="after")
    def _physical(self) -> AtomicRecipe:
        positive = {
            "size_nm": self.size_nm, "carbon_thickness_nm": self.carbon_thickness_nm,
            "pixel_size_A": self.pixel_size_A, "aperture_mrad": self.aperture_mrad,
            "particles_per_field": self.particles_per_field,
        }  # fmt: skip
        for name, (low, _) in positive.items():
            if low <= 0:
                raise ValueError(f"{name} must be > 0, got {low}")
        if not self.zone_axes and self.random_orientation_share < 1.0:
            raise ValueError("no zone_axes: set random_orientation_share to 1 or name zone axes")
        if any(v <= 0 for v in self.voltages_kv):
            raise ValueError(f"voltages_kv must be > 0, got {self.voltages_kv}")
        return self


def atomic_recipe(data: AtomicRecipe | dict[str, object]) -> AtomicRecipe:
    """``data`` as an :class:`AtomicRecipe`, or one ConfigError line naming every bad field."""
    return as_model(
        AtomicRecipe,
        data,
        "atomic recipe",
        ConfigError,
        fix="see tem_acq.sim.fields.atomic.AtomicRecipe",
    )


#: The training recipe (fcc Au, Pt, Pd, Ag and CeO2; [001], [011] and random orientations;
#: 200 and 300 kV; uncorrected and corrected; 0.1-1 A/px log-uniform).
ATOMIC_TRAIN = AtomicRecipe(
    name="atomic-train",
    materials=("Au", "Pt", "Pd", "Ag", "CeO2"),
    shapes=("sphere", "truncated-octahedron"),
    zone_axes=((0, 0, 1), (0, 1, 1)),
    random_orientation_share=0.3,
    twin_share=0.25,
    voltages_kv=(200.0, 300.0),
)

#: The independent test recipe, held out whole (not by seed): materials Cu, Ir, Rh, ZrO2, MgO,
#: zone axes [111] and [112] only, cuboctahedra, 80 and 120 kV, focal spread 45-70 A: none of
#: these is ever drawn by :data:`ATOMIC_TRAIN`.
ATOMIC_INDEPENDENT = AtomicRecipe(
    name="atomic-independent",
    materials=("Cu", "Ir", "Rh", "ZrO2", "MgO"),
    shapes=("cuboctahedron",),
    zone_axes=((1, 1, 1), (1, 1, 2)),
    random_orientation_share=0.0,
    twin_share=0.25,
    voltages_kv=(80.0, 120.0),
    focal_spread_A=(45.0, 70.0),
)


def _uniform(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def draw_optics(recipe: AtomicRecipe, rng: np.random.Generator) -> tuple[Optics, bool]:
    """The lens of one field and whether it is Cs-corrected."""
    kv = float(recipe.voltages_kv[int(rng.integers(len(recipe.voltages_kv)))])
    corrected = bool(rng.random() < recipe.corrected_share)
    if corrected:
        cs_mm = _uniform(rng, recipe.cs_corrected_um) * 1e-3
        defocus = _uniform(rng, recipe.defocus_corrected_nm)
    else:
        cs_mm = _uniform(rng, recipe.cs_uncorrected_mm)
        spread = recipe.scherzer_spread_nm
        defocus = scherzer_defocus_nm(kv, cs_mm) + float(rng.uniform(-spread, spread))
    optics = Optics(
        voltage_kv=kv,
        cs_mm=cs_mm,
        defocus_nm=defocus,
        aperture_mrad=_uniform(rng, recipe.aperture_mrad),
        focal_spread_A=_uniform(rng, recipe.focal_spread_A),
        convergence_mrad=_uniform(rng, recipe.convergence_mrad),
    )
    return optics, corrected


def simulation_sampling(pixel_size_A: float, optics: Optics) -> float:
    """The simulation grid's sampling (A): its band limit 1.5x the imaged band, and >= 1 /A.

    The imaged band is the smaller of the objective aperture and the detector's Nyquist
    frequency. The band limit ``1 / (3 sampling)`` is then at least 1 /A (sampling at most
    1/3 A, reached only at coarse detector pixels, >= 0.75 A/px) and 1.5x the aperture
    wherever the detector resolves it (e.g. 0.15 A for a 30 mrad aperture at 300 kV).
    """
    aperture_k = optics.aperture_mrad * 1e-3 / electron_wavelength_A(optics.voltage_kv)
    imaged_k = min(aperture_k, 0.5 / pixel_size_A)
    k_max = max(1.5 * imaged_k, 1.0)
    return 1.0 / (3.0 * k_max)


def _orientation(recipe: AtomicRecipe, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A rotation into the lab frame and its name (a zone axis ``[uvw]`` or ``random``)."""
    if not recipe.zone_axes or rng.random() < recipe.random_orientation_share:
        return random_rotation(rng), "random"
    zone = recipe.zone_axes[int(rng.integers(len(recipe.zone_axes)))]
    angle = float(rng.uniform(0.0, 2.0 * math.pi))
    return zone_axis_rotation(zone, angle), "[" + "".join(str(i) for i in zone) + "]"


def draw_particles(
    recipe: AtomicRecipe, rng: np.random.Generator, field_A: float, margin_A: float, z0_A: float
) -> tuple[list[Atoms], dict[str, object]]:
    """The nanocrystals of one field (one material), centred in the field, resting on ``z0_A``.

    Particles do not overlap (a centre is drawn again, up to 20 times, else the particle is
    left out), and each is cut to the periodic cell (``field_A + 2 margin_A`` across): one
    larger than the cell is seen in part, never wrapped onto itself.
    """
    name = recipe.materials[int(rng.integers(len(recipe.materials)))]
    fcc = MATERIALS[name].lattice == "fcc"
    count = int(rng.integers(recipe.particles_per_field[0], recipe.particles_per_field[1] + 1))
    cell_A = field_A + 2.0 * margin_A
    parts: list[Atoms] = []
    drawn: list[dict[str, object]] = []
    placed: list[tuple[np.ndarray, float]] = []
    for _ in range(count):
        shape = recipe.shapes[int(rng.integers(len(recipe.shapes)))]
        low, high = recipe.size_nm
        diameter = 10.0 * math.exp(rng.uniform(math.log(low), math.log(high)))
        rotation, orientation = _orientation(recipe, rng)
        twin = fcc and bool(rng.random() < recipe.twin_share)
        truncation = _uniform(rng, recipe.truncation)
        centre = _free_centre(rng, field_A, margin_A, 0.5 * diameter, placed)
        if centre is None:
            continue
        placed.append((centre, 0.5 * diameter))
        atoms = nanoparticle(name, shape, diameter, rotation, twin=twin, truncation=truncation)
        atoms = atoms.moved((centre[0], centre[1], z0_A + 0.5 * diameter))
        xy = atoms.positions[:, :2]
        parts.append(atoms.selected(np.all((xy >= 0.0) & (xy < cell_A), axis=1)))
        drawn.append(
            {"shape": shape, "diameter_nm": round(diameter / 10.0, 3), "orientation": orientation,
             "twin": twin, "truncation": round(truncation, 3), "centre_A": centre.round(2).tolist()}
        )  # fmt: skip
    return parts, {"material": name, "particles": drawn}


def _free_centre(
    rng: np.random.Generator,
    field_A: float,
    margin_A: float,
    radius_A: float,
    placed: list[tuple[np.ndarray, float]],
) -> np.ndarray | None:
    """A centre in the field at least the sum of radii from every placed particle, or None."""
    for _ in range(20):
        centre = margin_A + rng.uniform(0.0, field_A, size=2)
        if all(np.hypot(*(centre - c)) >= radius_A + r for c, r in placed):
            return centre
    return None


def carbon_film(
    recipe: AtomicRecipe, rng: np.random.Generator, cell_A: float
) -> tuple[Atoms, dict[str, object]]:
    """The carbon film over the periodic cell, with a hole (a disk on the cell) in some fields."""
    thickness = 10.0 * _uniform(rng, recipe.carbon_thickness_nm)
    film = amorphous_carbon((cell_A, cell_A), thickness, rng)
    drawn: dict[str, object] = {"carbon_thickness_nm": round(thickness / 10.0, 3), "hole": None}
    if rng.random() < recipe.vacuum_share:
        centre = rng.uniform(0.0, cell_A, size=2)
        radius = cell_A * float(rng.uniform(0.2, 0.45))
        film = film.selected(~_in_hole(film.positions[:, :2], centre, radius, cell_A))
        drawn["hole"] = {"centre_A": centre.round(2).tolist(), "radius_A": round(radius, 2)}
    return film, drawn


def _in_hole(xy: np.ndarray, centre: np.ndarray, radius: float, cell_A: float) -> np.ndarray:
    d = xy - centre
    d -= cell_A * np.round(d / cell_A)
    return np.asarray(np.einsum("ij,ij->i", d, d) < radius * radius)


def atomic_field(recipe: AtomicRecipe, size: int, rng: np.random.Generator) -> Field:
    """One noise-free atomic-resolution field of ``size`` x ``size`` detector pixels.

    Parameters
    ----------
    recipe
        What to draw (:data:`ATOMIC_TRAIN`, :data:`ATOMIC_INDEPENDENT` or your own).
    size
        Field size in detector pixels (>= 16).
    rng
        The only source of randomness: the same generator state gives the same field.

    Returns
    -------
    Field
        Intensity relative to vacuum at the drawn detector pixel size, the vacuum and particle
        masks, and ``settings``: everything drawn (material, particles, film, hole, lens,
        pixel size, simulation sampling, slices, atoms).
    """
    recipe = atomic_recipe(recipe)
    if size < 16:
        raise ConfigError(f"an atomic field needs size >= 16 pixels, got {size}")
    optics, corrected = draw_optics(recipe, rng)
    low, high = recipe.pixel_size_A
    pixel = math.exp(rng.uniform(math.log(low), math.log(high))) if high > low else low
    margin_px = math.ceil(recipe.margin_A / pixel)
    n_det = fast_size(size + 2 * margin_px)
    cell = n_det * pixel
    n_sim = fast_size(math.ceil(cell / simulation_sampling(pixel, optics)))
    grid = Grid((n_sim, n_sim), cell / n_sim)
    film, film_drawn = carbon_film(recipe, rng, cell)
    top = 10.0 * float(film_drawn["carbon_thickness_nm"])  # type: ignore[arg-type]
    parts, particle_drawn = draw_particles(recipe, rng, size * pixel, margin_px * pixel, top)
    atoms = Atoms.join([film, *parts])
    wave = exit_wave(atoms, grid, optics.voltage_kv, slice_thickness_A=recipe.slice_thickness_A,
                     z0_A=0.0)  # fmt: skip
    detected = fourier_resample(image(wave, grid, optics), (n_det, n_det))
    crop = (slice(margin_px, margin_px + size), slice(margin_px, margin_px + size))
    particles = _near_atoms(Atoms.join(parts), n_det, pixel)[crop]
    hole = film_drawn["hole"]
    vacuum = ~particles & _hole_mask(hole, n_det, pixel)[crop]  # type: ignore[arg-type]
    settings: dict[str, object] = {
        "recipe": recipe.name, **particle_drawn, **film_drawn, "corrected": corrected,
        "voltage_kv": optics.voltage_kv, "cs_mm": optics.cs_mm, "defocus_nm": optics.defocus_nm,
        "aperture_mrad": optics.aperture_mrad, "focal_spread_A": optics.focal_spread_A,
        "convergence_mrad": optics.convergence_mrad, "pixel_size_A": pixel,
        "simulation_sampling_A": grid.sampling_A, "simulation_shape": list(grid.shape),
        "slice_thickness_A": recipe.slice_thickness_A, "atoms": len(atoms),
    }  # fmt: skip
    intensity = np.clip(detected[crop], 0.0, None).astype(np.float32)
    return Field(intensity, pixel, vacuum, particles, "atomic", settings)


def _near_atoms(atoms: Atoms, n: int, pixel_A: float, radius_A: float = 2.0) -> np.ndarray:
    """Pixels of an ``n`` x ``n`` periodic detector grid within about ``radius_A`` of an atom."""
    if len(atoms) == 0:
        return np.zeros((n, n), dtype=bool)
    index = np.floor(atoms.positions[:, :2] / pixel_A).astype(np.int64) % n
    hits = np.bincount(index[:, 1] * n + index[:, 0], minlength=n * n).reshape(n, n) > 0
    k2 = np.fft.fftfreq(n, d=pixel_A)[:, None] ** 2 + np.fft.fftfreq(n, d=pixel_A)[None, :] ** 2
    sigma = max(radius_A, pixel_A) / 1.2
    kernel = np.exp(-2.0 * (math.pi * sigma) ** 2 * k2) * (2.0 * math.pi * sigma**2) / pixel_A**2
    blurred = np.fft.ifft2(np.fft.fft2(hits.astype(np.float64)) * kernel).real
    return np.asarray(blurred > 0.5)


def _hole_mask(hole: dict[str, object] | None, n: int, pixel_A: float) -> np.ndarray:
    """Pixels of the ``n`` x ``n`` periodic detector grid whose centre lies in the hole."""
    if hole is None:
        return np.zeros((n, n), dtype=bool)
    ij = np.indices((n, n)).reshape(2, -1).T[:, ::-1] * pixel_A
    centre = np.asarray(hole["centre_A"], dtype=np.float64)
    inside = _in_hole(ij, centre, float(hole["radius_A"]), n * pixel_A)  # type: ignore[arg-type]
    return inside.reshape(n, n)


__all__ = [
    "ATOMIC_INDEPENDENT",
    "ATOMIC_TRAIN",
    "AtomicRecipe",
    "atomic_field",
    "atomic_recipe",
    "draw_optics",
    "simulation_sampling",
]
