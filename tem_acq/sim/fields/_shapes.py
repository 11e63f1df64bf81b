"""Projected thickness of particle shapes: the length of material along the beam (z), analytic.

Every function takes the pixel-centre coordinates ``x, y`` (Å, relative to the particle's
centre, broadcastable arrays) and returns the thickness in Å. Convex bodies are solved exactly
per ray: a convex polyhedron ``{r : n_k . r <= d_k}`` (any 3-D rotation) is cut by each ray into
one interval, bounded above by the faces that face the beam's exit and below by those facing its
entry; a spherocylinder (rod) is the union of a clipped infinite cylinder and two end spheres,
convex, so its chord runs from the lowest entry to the highest exit of the three. Sampling
these on a grid finer than the detector pixel and averaging (the caller's binning) is the
anti-aliasing. Volumes in closed form (``*_volume``) are what the tests integrate against.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]

_PARALLEL = 1e-9


def random_rotation(rng: np.random.Generator) -> F64:
    """A rotation matrix drawn uniformly over SO(3) (a normalised Gaussian quaternion)."""
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def tilt_rotation(in_plane_rad: float, tilt_rad: float) -> F64:
    """Tilt the body's x axis out of the image plane by ``tilt_rad``, then turn it about the beam.

    ``in_plane_rad`` is the turn about the beam (z).
    """
    c, s = math.cos(in_plane_rad), math.sin(in_plane_rad)
    ct, st = math.cos(tilt_rad), math.sin(tilt_rad)
    about_z = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    about_y = np.array([[ct, 0.0, -st], [0.0, 1.0, 0.0], [st, 0.0, ct]])
    out: F64 = about_z @ about_y
    return out


def sphere(x: F64, y: F64, radius: float) -> F64:
    """Chord through a sphere of ``radius`` centred at the origin."""
    return 2.0 * np.sqrt(np.maximum(radius * radius - x * x - y * y, 0.0))


def shell(x: F64, y: F64, outer: float, inner: float) -> F64:
    """Chord through a hollow sphere (the material between ``inner`` and ``outer`` radii)."""
    return sphere(x, y, outer) - sphere(x, y, inner)


def polyhedron(x: F64, y: F64, normals: F64, distances: F64, rotation: F64) -> F64:
    """Chord through the convex polyhedron ``{r : n_k . r <= d_k}`` rotated by ``rotation``.

    Parameters
    ----------
    x, y
        Ray positions (Å), broadcastable.
    normals
        ``(k, 3)`` outward unit face normals in the body's frame.
    distances
        ``(k,)`` distances of the faces from the centre (Å).
    rotation
        ``(3, 3)`` body-to-specimen rotation.
    """
    n = normals @ rotation.T
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    top = np.full(x.shape, np.inf)
    bottom = np.full(x.shape, -np.inf)
    for (nx, ny, nz), d in zip(n, distances, strict=True):
        rest = d - nx * x - ny * y
        if nz > _PARALLEL:
            np.minimum(top, rest / nz, out=top)
        elif nz < -_PARALLEL:
            np.maximum(bottom, rest / nz, out=bottom)
        else:  # a face along the beam: the ray is outside when it lies beyond it
            bottom = np.where(rest < 0.0, np.inf, bottom)
    return np.maximum(top - bottom, 0.0)


def spherocylinder(x: F64, y: F64, length: float, radius: float, rotation: F64) -> F64:
    """Chord through a rod: a cylinder of ``radius`` with hemispherical caps.

    ``length`` runs tip to tip, along the body's x axis before ``rotation``.
    """
    half = max(length / 2.0 - radius, 0.0)
    u = rotation @ np.array([1.0, 0.0, 0.0])
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    lows, highs = [], []
    for sign in (-1.0, 1.0):  # the end spheres
        cx, cy, cz = sign * half * u
        chord2 = radius * radius - (x - cx) ** 2 - (y - cy) ** 2
        h = np.sqrt(np.maximum(chord2, 0.0))
        lows.append(np.where(chord2 > 0.0, cz - h, np.inf))
        highs.append(np.where(chord2 > 0.0, cz + h, -np.inf))
    # cylinder: |w|^2 - (w.u)^2 <= r^2 with w = (x, y, z), and |w.u| <= half
    a = max(1.0 - u[2] * u[2], _PARALLEL)
    t0 = x * u[0] + y * u[1]
    b = -2.0 * t0 * u[2]
    c = x * x + y * y - t0 * t0 - radius * radius
    disc = b * b - 4.0 * a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    z_lo, z_hi = (-b - root) / (2 * a), (-b + root) / (2 * a)
    if abs(u[2]) > _PARALLEL:  # the slab of the axis segment, in z
        s1, s2 = (-half - t0) / u[2], (half - t0) / u[2]
        z_lo, z_hi = np.maximum(z_lo, np.minimum(s1, s2)), np.minimum(z_hi, np.maximum(s1, s2))
        ok = (disc > 0.0) & (z_hi > z_lo)
    else:
        ok = (disc > 0.0) & (np.abs(t0) <= half)
    lows.append(np.where(ok, z_lo, np.inf))
    highs.append(np.where(ok, z_hi, -np.inf))
    return np.maximum(np.maximum.reduce(highs) - np.minimum.reduce(lows), 0.0)


def _faces_from_triangles(vertices: F64, triangles: list[tuple[int, int, int]]) -> tuple[F64, F64]:
    """Outward unit normals and centre distances of a convex body's triangular faces."""
    normals, distances = [], []
    for i, j, k in triangles:
        a, b, c = vertices[i], vertices[j], vertices[k]
        n = np.cross(b - a, c - a)
        n /= np.linalg.norm(n)
        d = float(n @ a)
        if d < 0.0:
            n, d = -n, -d
        normals.append(n)
        distances.append(d)
    return np.array(normals), np.array(distances)


def box_faces(half_x: float, half_y: float, half_z: float) -> tuple[F64, F64]:
    """Faces of a rectangular box with the given half extents (a cube when all are equal)."""
    normals = np.vstack([np.eye(3), -np.eye(3)])
    return normals, np.array([half_x, half_y, half_z] * 2)


def octahedron_faces(half_diagonal: float) -> tuple[F64, F64]:
    """Faces of a regular octahedron with vertices at ``+-half_diagonal`` on each axis."""
    signs = np.array([[sx, sy, sz] for sx in (1, -1) for sy in (1, -1) for sz in (1, -1)], float)
    return signs / math.sqrt(3.0), np.full(8, half_diagonal / math.sqrt(3.0))


def tetrahedron_faces(edge: float) -> tuple[F64, F64]:
    """Faces of a regular tetrahedron of ``edge`` centred at its centroid."""
    h = edge / (2.0 * math.sqrt(2.0))
    vertices = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], float) * h
    return -vertices / np.linalg.norm(vertices[0]), np.full(4, h / math.sqrt(3.0))


def prism_faces(edge: float, height: float) -> tuple[F64, F64]:
    """Faces of a triangular prism (a triangular plate when thin).

    An equilateral triangle of ``edge`` in the x-y plane, ``height`` along z.
    """
    inradius = edge / (2.0 * math.sqrt(3.0))
    angles = math.pi / 2.0 + np.arange(3) * 2.0 * math.pi / 3.0
    sides = np.column_stack([np.cos(angles), np.sin(angles), np.zeros(3)])
    normals = np.vstack([sides, [[0, 0, 1.0], [0, 0, -1.0]]])
    return normals, np.array([inradius] * 3 + [height / 2.0] * 2)


def bipyramid_faces(radius: float, half_height: float, sides: int = 5) -> tuple[F64, F64]:
    """Faces of a regular ``sides``-gonal bipyramid (5: the decahedron of fcc metals).

    Its equator, of circumradius ``radius``, lies in the x-y plane; its apices at ``+-half_height``.
    """
    angles = np.arange(sides) * 2.0 * math.pi / sides
    ring = np.column_stack([radius * np.cos(angles), radius * np.sin(angles), np.zeros(sides)])
    vertices = np.vstack([ring, [[0, 0, half_height], [0, 0, -half_height]]])
    triangles = [(sides + apex, k, (k + 1) % sides) for apex in (0, 1) for k in range(sides)]
    return _faces_from_triangles(vertices, triangles)


def octahedron_volume(half_diagonal: float) -> float:
    """Volume of :func:`octahedron_faces`' body."""
    return 4.0 / 3.0 * half_diagonal**3


def tetrahedron_volume(edge: float) -> float:
    """Volume of :func:`tetrahedron_faces`' body."""
    return edge**3 / (6.0 * math.sqrt(2.0))


def prism_volume(edge: float, height: float) -> float:
    """Volume of :func:`prism_faces`' body."""
    return math.sqrt(3.0) / 4.0 * edge * edge * height


def bipyramid_volume(radius: float, half_height: float, sides: int = 5) -> float:
    """Volume of :func:`bipyramid_faces`' body."""
    base = 0.5 * sides * radius * radius * math.sin(2.0 * math.pi / sides)
    return 2.0 / 3.0 * base * half_height


def spherocylinder_volume(length: float, radius: float) -> float:
    """Volume of :func:`spherocylinder`'s body."""
    cylinder = max(length - 2.0 * radius, 0.0)
    return math.pi * radius * radius * cylinder + 4.0 / 3.0 * math.pi * radius**3
