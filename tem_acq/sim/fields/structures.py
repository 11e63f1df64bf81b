"""Atomic structures for the multislice (numpy only).

Crystals along zone axes, nanoparticle shapes, twins, amorphous carbon.

Every structure is an :class:`Atoms`: positions in A (``x, y`` across the beam, ``z`` along it)
and atomic numbers. Crystals are built in their own frame (cubic axes) and turned into the
laboratory frame by a rotation that puts a zone axis along the beam (:func:`zone_axis_rotation`)
or a uniformly random one (:func:`random_rotation`), followed by an in-plane rotation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from tem_acq.errors import ConfigError
from tem_acq.sim.fields.scattering import ELEMENTS

F64 = NDArray[np.float64]
Lattice = Literal["fcc", "fluorite", "rocksalt"]
Shape = Literal["sphere", "truncated-octahedron", "cuboctahedron"]
SHAPES: tuple[Shape, ...] = ("sphere", "truncated-octahedron", "cuboctahedron")

_FCC = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]])


@dataclass(frozen=True)
class Atoms:
    """Atoms as ``(n, 3)`` positions (A) and ``(n,)`` atomic numbers."""

    positions: F64
    numbers: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.numbers.shape[0])

    def moved(self, shift: F64 | tuple[float, float, float]) -> Atoms:
        """These atoms translated by ``shift`` (A)."""
        return Atoms(self.positions + np.asarray(shift, dtype=np.float64), self.numbers)

    def rotated(self, rotation: F64) -> Atoms:
        """These atoms rotated about the origin by the 3x3 matrix ``rotation``."""
        return Atoms(self.positions @ np.asarray(rotation).T, self.numbers)

    def selected(self, keep: NDArray[np.bool_] | NDArray[np.int64]) -> Atoms:
        """The atoms where ``keep`` is True (or at the indices ``keep``)."""
        return Atoms(self.positions[keep], self.numbers[keep])

    @staticmethod
    def join(parts: list[Atoms]) -> Atoms:
        """All atoms of ``parts`` in one set."""
        if not parts:
            return Atoms(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
        return Atoms(
            np.concatenate([p.positions for p in parts]),
            np.concatenate([p.numbers for p in parts]),
        )


@dataclass(frozen=True)
class Material:
    """A cubic crystal: its lattice kind, lattice constant (A) and elements (cation, anion)."""

    lattice: Lattice
    a_A: float
    elements: tuple[str, ...]


#: Lattice constants at room temperature (A).
MATERIALS: dict[str, Material] = {
    "Au": Material("fcc", 4.078, ("Au",)),
    "Pt": Material("fcc", 3.924, ("Pt",)),
    "Pd": Material("fcc", 3.891, ("Pd",)),
    "Ag": Material("fcc", 4.086, ("Ag",)),
    "Cu": Material("fcc", 3.615, ("Cu",)),
    "Ir": Material("fcc", 3.839, ("Ir",)),
    "Rh": Material("fcc", 3.803, ("Rh",)),
    "Ni": Material("fcc", 3.524, ("Ni",)),
    "CeO2": Material("fluorite", 5.411, ("Ce", "O")),
    "ZrO2": Material("fluorite", 5.07, ("Zr", "O")),
    "MgO": Material("rocksalt", 4.212, ("Mg", "O")),
}


def material(name: str) -> Material:
    """The :data:`MATERIALS` entry ``name``, or ConfigError naming the choices."""
    if name not in MATERIALS:
        raise ConfigError(f"material {name!r} is not known; choose one of {', '.join(MATERIALS)}")
    return MATERIALS[name]


def unit_cell(mat: Material) -> tuple[F64, NDArray[np.int64]]:
    """Fractional positions and atomic numbers of the cubic cell's basis."""
    cation = ELEMENTS[mat.elements[0]]
    if mat.lattice == "fcc":
        return _FCC.copy(), np.full(4, cation)
    anion = ELEMENTS[mat.elements[1]]
    if mat.lattice == "rocksalt":
        frac = np.concatenate([_FCC, (_FCC + np.array([0.5, 0.0, 0.0])) % 1.0])
        return frac, np.repeat([cation, anion], 4)
    frac = np.concatenate([_FCC, _FCC + 0.25, _FCC + 0.75]) % 1.0
    return frac, np.repeat([cation, anion, anion], 4)


def crystal_ball(mat: Material, radius_A: float) -> Atoms:
    """All atoms of the crystal within ``radius_A`` of a cation at the origin (cubic frame)."""
    frac, numbers = unit_cell(mat)
    m = math.ceil(radius_A / mat.a_A) + 1
    r = np.arange(-m, m + 1)
    cells = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 1, 3)
    pos = ((cells + frac[None]) * mat.a_A).reshape(-1, 3)
    num = np.tile(numbers, cells.shape[0])
    keep = np.einsum("ij,ij->i", pos, pos) <= radius_A * radius_A
    return Atoms(pos[keep], num[keep])


def twinned(atoms: Atoms) -> Atoms:
    """A (111) twin: the half above the (111) plane through the origin mirrored across it."""
    n = np.ones(3) / math.sqrt(3.0)
    height = atoms.positions @ n
    mirrored = atoms.positions - 2.0 * height[:, None] * n[None]
    below = height <= 1e-6
    strictly_below = height < -1e-6
    images = Atoms(mirrored[strictly_below], atoms.numbers[strictly_below])
    return Atoms.join([atoms.selected(below), images])


def cut_shape(atoms: Atoms, shape: Shape, diameter_A: float, truncation: float = 1.15) -> Atoms:
    """The atoms inside a particle shape centred at the origin (cubic frame).

    Parameters
    ----------
    atoms
        A crystal ball at least ``diameter_A`` across (larger for polyhedra).
    shape
        ``sphere``; ``truncated-octahedron``: {111} faces at ``diameter_A / 2`` from the centre and
        {100} faces at ``truncation`` times that (1.155: the regular truncated octahedron, 1.732:
        the octahedron); ``cuboctahedron``: the same with ``truncation = 0.866``.
    diameter_A
        Size across the {111} faces (the sphere's diameter).
    """
    half = 0.5 * diameter_A
    pos = atoms.positions
    if shape == "sphere":
        return atoms.selected(np.einsum("ij,ij->i", pos, pos) <= half * half)
    ratio = 0.866 if shape == "cuboctahedron" else truncation
    inside_111 = np.abs(pos).sum(axis=1) <= half * math.sqrt(3.0) + 1e-6
    inside_100 = np.abs(pos).max(axis=1) <= ratio * half + 1e-6
    return atoms.selected(inside_111 & inside_100)


def zone_axis_rotation(zone: tuple[int, int, int], in_plane_rad: float = 0.0) -> F64:
    """Rotation taking the cubic direction ``zone`` onto the beam (z), then ``in_plane_rad``."""
    z_axis = np.asarray(zone, dtype=np.float64)
    if not np.any(z_axis):
        raise ConfigError("a zone axis needs a nonzero direction, e.g. (0, 1, 1)")
    z_axis /= np.linalg.norm(z_axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z_axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x_axis = helper - (helper @ z_axis) * z_axis
    x_axis /= np.linalg.norm(x_axis)
    frame = np.stack([x_axis, np.cross(z_axis, x_axis), z_axis])
    return np.asarray(in_plane_rotation(in_plane_rad) @ frame)


def in_plane_rotation(angle_rad: float) -> F64:
    """Rotation by ``angle_rad`` about the beam (z)."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def random_rotation(rng: np.random.Generator) -> F64:
    """A rotation drawn uniformly (a normalised Gaussian quaternion)."""
    w, x, y, z = rng.normal(size=4)
    n = math.sqrt(w * w + x * x + y * y + z * z)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def nanoparticle(
    name: str,
    shape: Shape,
    diameter_A: float,
    rotation: F64,
    *,
    twin: bool = False,
    truncation: float = 1.15,
) -> Atoms:
    """A nanocrystal of material ``name`` centred at the origin, rotated into the lab frame."""
    mat = material(name)
    ball = crystal_ball(mat, 0.5 * diameter_A * (1.8 if shape != "sphere" else 1.0) + mat.a_A)
    crystal = twinned(ball) if twin else ball
    return cut_shape(crystal, shape, diameter_A, truncation).rotated(rotation)


def carbon_number_density(density_g_cm3: float = 2.0) -> float:
    """Atoms per A^3 of carbon at ``density_g_cm3`` (0.1003 at 2.0 g/cm^3)."""
    return density_g_cm3 / 12.011 * 0.602214076


def amorphous_carbon(
    extent_A: tuple[float, float],
    thickness_A: float,
    rng: np.random.Generator,
    *,
    density_g_cm3: float = 2.0,
    min_distance_A: float = 1.3,
    rounds: int = 40,
) -> Atoms:
    """An amorphous carbon slab, periodic across ``extent_A`` (x, y), from z = 0 to ``thickness_A``.

    One atom per cell of a grid at the number density (stratified sampling: uniform in its cell,
    so the positions carry no lattice peak), then atoms closer than ``min_distance_A`` to a
    neighbour are drawn again in their cells (``rounds`` times, checking the 26 neighbouring
    cells only: O(N)); any still too close are removed.
    """
    n = carbon_number_density(density_g_cm3)
    a0 = n ** (-1.0 / 3.0)
    cells_xy = (max(1, round(extent_A[0] / a0)), max(1, round(extent_A[1] / a0)))
    cell = np.array([extent_A[0] / cells_xy[0], extent_A[1] / cells_xy[1], 0.0])
    cell[2] = 1.0 / (n * cell[0] * cell[1])
    counts = np.array([*cells_xy, max(1, round(thickness_A / cell[2]))])
    index = np.indices(tuple(int(c) for c in counts)).reshape(3, -1).T
    pos = (index + rng.random(index.shape)) * cell
    todo = np.flatnonzero(_too_close_all(pos.reshape(*counts, 3), cell, min_distance_A))
    for _ in range(rounds):
        if todo.size == 0:
            break
        pos[todo] = (index[todo] + rng.random((todo.size, 3))) * cell
        todo = todo[_too_close(pos, index[todo], counts, cell, min_distance_A)]
    still = todo[_too_close(pos, index[todo], counts, cell, min_distance_A)]
    ok = np.ones(len(index), dtype=bool)
    ok[still] = False
    return Atoms(pos[ok], np.full(int(ok.sum()), ELEMENTS["C"], dtype=np.int64))


def _too_close_all(grid: F64, cell: F64, d_min: float) -> NDArray[np.bool_]:
    """Whether each cell's atom has a neighbour nearer than ``d_min`` (flattened).

    ``grid`` is ``(nx, ny, nz, 3)``; 13 forward directions check each pair once.
    """
    extent = np.array(grid.shape[:3]) * cell
    close = np.zeros(grid.shape[:3], dtype=bool)
    offsets = np.indices((3, 3, 3)).reshape(3, -1).T - 1
    for offset in offsets[14:]:
        other = np.roll(grid, tuple(-offset), axis=(0, 1, 2))
        d = other - grid
        d[..., :2] -= extent[:2] * np.round(d[..., :2] / extent[:2])
        near = np.einsum("...i,...i->...", d, d) < d_min * d_min
        if offset[2] != 0:
            near[:, :, -1 if offset[2] > 0 else 0] = False
        close |= near
    return close.reshape(-1)


def _too_close(
    pos: F64, which: NDArray[np.int64], counts: NDArray[np.int64], cell: F64, d_min: float
) -> NDArray[np.bool_]:
    """Whether each of the cells ``which`` (``(m, 3)``) has a neighbour nearer than d_min."""
    flat = np.ravel_multi_index(which.T, counts)
    extent = counts * cell
    close = np.zeros(len(which), dtype=bool)
    for offset in np.indices((3, 3, 3)).reshape(3, -1).T - 1:
        if not offset.any():
            continue
        other = which + offset
        valid = (other[:, 2] >= 0) & (other[:, 2] < counts[2])
        other[:, :2] %= counts[:2]
        other_flat = np.ravel_multi_index(np.clip(other, 0, counts - 1).T, counts)
        d = pos[other_flat] - pos[flat]
        d[:, :2] -= extent[:2] * np.round(d[:, :2] / extent[:2])
        close |= valid & (np.einsum("ij,ij->i", d, d) < d_min * d_min)
    return close


__all__ = [
    "MATERIALS",
    "SHAPES",
    "Atoms",
    "Material",
    "amorphous_carbon",
    "carbon_number_density",
    "crystal_ball",
    "cut_shape",
    "in_plane_rotation",
    "material",
    "nanoparticle",
    "random_rotation",
    "twinned",
    "unit_cell",
    "zone_axis_rotation",
]
