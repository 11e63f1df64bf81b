"""Procedural, tiled specimens: an unbounded map of transmitted intensity in specimen pixels.

A specimen is generated lazily in square tiles of ``TILE`` unbinned pixels. Each tile depends only
on (seed, tile position): features (particles, holes) are drawn per cell of a coarse grid from a
generator keyed by the cell, and continuous fields (film roughness, amorphous texture) come from
coordinate hashing, so tiles join seamlessly and the map is the same whatever order it is read in.
Each tile is rendered with an apron (margin) so blurs and the CTF see their neighbourhood, then
cropped. Rendered tiles are kept in an LRU cache.

Per pixel a tile stores the transmitted intensity relative to vacuum at time 0, a "change" map
(``d log I / d s`` for a fractional particle mass loss ``s``, used for slow specimen change) and
a vacuum mask (no material and intensity within 1 % of vacuum).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from tem_acq.sim._procedural import (
    cell_rng,
    fractal_noise,
    gaussian_filter_fourier,
    hash_uniform,
    stream_key,
    value_noise,
    value_noise_points,
)
from tem_acq.sim._sampling import normal_table
from tem_acq.sim.config import electron_wavelength_A
from tem_acq.sim.optics import atom_phase_integral, ctf, delocalisation_px, interaction_constant

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]
Features = dict[str, F64]

# feature / noise streams (part of every random key, so kinds never share numbers)
_HOLES, _PARTICLES, _ROUGH, _TEXTURE, _HOLE_EDGE, _CARBON = 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class SpecimenRegion:
    """A rectangle of the specimen map (unbinned pixels, time 0, no drift).

    Attributes
    ----------
    transmission
        Transmitted intensity relative to vacuum (float32; vacuum is 1).
    change
        ``d log(intensity) / d s`` where ``s`` is the fraction of particle mass lost (float32).
    vacuum
        True where there is no material and the intensity is within 1 % of vacuum.
    """

    transmission: F32
    change: F32
    vacuum: NDArray[np.bool_]


@dataclass(frozen=True)
class _Tile:
    transmission: F32
    change: F32
    vacuum: NDArray[np.bool_]


class SpecimenMap(ABC):
    """Base class: tiling, caching and feature bookkeeping of a procedural specimen.

    Parameters
    ----------
    seed
        The specimen depends on this and on nothing else (not on the call order).
    pixel_size_A
        Unbinned pixel size in A; physical feature sizes are converted with it.
    voltage_kv, cs_mm, defocus_nm
        Microscope settings used by the image formation.
    cache_tiles
        Number of rendered tiles kept in memory.
    """

    kind: ClassVar[str]
    TILE: ClassVar[int] = 256

    def __init__(
        self,
        seed: int,
        pixel_size_A: float,
        voltage_kv: float = 200.0,
        cs_mm: float = 1.2,
        defocus_nm: float = 0.0,
        cache_tiles: int = 64,
    ) -> None:
        self.seed = int(seed)
        self.pixel_size_A = float(pixel_size_A)
        self.voltage_kv = float(voltage_kv)
        self.cs_mm = float(cs_mm)
        self.defocus_nm = float(defocus_nm)
        self.wavelength_A = electron_wavelength_A(voltage_kv)
        self.cache_tiles = int(cache_tiles)
        self._tiles: OrderedDict[tuple[int, int], _Tile] = OrderedDict()
        self._cells: OrderedDict[tuple[int, int, int], Features] = OrderedDict()
        self._setup()

    def _setup(self) -> None:  # noqa: B027 - an optional hook, deliberately empty here
        """Derive pixel-unit constants once the base attributes are set (subclasses extend)."""

    # ---- public --------------------------------------------------------------------------

    def region(self, x0: int, y0: int, height: int, width: int) -> SpecimenRegion:
        """Assemble the rectangle with top-left pixel ``(x0, y0)`` from cached tiles.

        Parameters
        ----------
        x0, y0
            Integer specimen-pixel coordinates of the top-left pixel (any sign, any size).
        height, width
            Size in pixels.

        Returns
        -------
        SpecimenRegion
            Fresh arrays (the caller may modify them).
        """
        t = np.empty((height, width), np.float32)
        c = np.empty((height, width), np.float32)
        v = np.empty((height, width), np.bool_)
        s = self.TILE
        for ty in range(y0 // s, (y0 + height - 1) // s + 1):
            ys0, ys1 = max(y0, ty * s), min(y0 + height, (ty + 1) * s)
            for tx in range(x0 // s, (x0 + width - 1) // s + 1):
                xs0, xs1 = max(x0, tx * s), min(x0 + width, (tx + 1) * s)
                tile = self._tile(tx, ty)
                src = (slice(ys0 - ty * s, ys1 - ty * s), slice(xs0 - tx * s, xs1 - tx * s))
                dst = (slice(ys0 - y0, ys1 - y0), slice(xs0 - x0, xs1 - x0))
                t[dst] = tile.transmission[src]
                c[dst] = tile.change[src]
                v[dst] = tile.vacuum[src]
        return SpecimenRegion(t, c, v)

    # ---- tiles and features --------------------------------------------------------------

    def _tile(self, tx: int, ty: int) -> _Tile:
        key = (tx, ty)
        tile = self._tiles.get(key)
        if tile is None:
            tile = self._render(tx * self.TILE, ty * self.TILE, self.TILE)
            for arr in (tile.transmission, tile.change, tile.vacuum):
                arr.setflags(write=False)
            self._tiles[key] = tile
            while len(self._tiles) > self.cache_tiles:
                self._tiles.popitem(last=False)
        else:
            self._tiles.move_to_end(key)
        return tile

    def _cell_features(
        self, stream: int, cell_px: float, cx: int, cy: int, make: Callable[..., Features]
    ) -> Features:
        key = (stream, cx, cy)
        feats = self._cells.get(key)
        if feats is None:
            feats = make(cell_rng(self.seed, stream, cx, cy), cx * cell_px, cy * cell_px, cell_px)
            self._cells[key] = feats
            while len(self._cells) > 4096:
                self._cells.popitem(last=False)
        return feats

    def _features_near(
        self,
        stream: int,
        cell_px: float,
        reach_px: float,
        box: tuple[float, float, float, float],
        make: Callable[..., Features],
    ) -> Features:
        """Features of every cell that can reach into ``box = (x0, y0, x1, y1)``."""
        x0, y0, x1, y1 = box
        parts: list[Features] = []
        cy0, cy1 = math.floor((y0 - reach_px) / cell_px), math.floor((y1 + reach_px) / cell_px)
        cx0, cx1 = math.floor((x0 - reach_px) / cell_px), math.floor((x1 + reach_px) / cell_px)
        for cy in range(cy0, cy1 + 1):
            for cx in range(cx0, cx1 + 1):
                parts.append(self._cell_features(stream, cell_px, cx, cy, make))
        keys = parts[0].keys()
        return {k: np.concatenate([p[k] for p in parts]) for k in keys}

    @abstractmethod
    def film_mask(self, ys: F64, xs: F64) -> F64:
        """Support-film coverage in [0, 1] on the grid ``ys x xs`` (0 inside holes)."""

    @abstractmethod
    def _render(self, x0: int, y0: int, n: int) -> _Tile:
        """Render the ``n`` x ``n`` tile whose top-left pixel is ``(x0, y0)``."""


class _HoleySupport(SpecimenMap):
    """A carbon support film with holes (vacuum); subclasses set the physical scales."""

    #: hole radii (A), holes per A^2, hole edge roughness (fraction of radius)
    HOLE_RADIUS_A: ClassVar[tuple[float, float]]
    HOLE_DENSITY_PER_A2: ClassVar[float]
    HOLE_ROUGHNESS: ClassVar[float] = 0.06
    FILM_THICKNESS_A: ClassVar[float]
    FILM_ROUGHNESS: ClassVar[float] = 0.08

    def _setup(self) -> None:
        super()._setup()
        px = self.pixel_size_A
        self._hole_rmax_px = self.HOLE_RADIUS_A[1] / px
        self._hole_cell_px = max(4.0 * self._hole_rmax_px, 2.0 * self.TILE)
        self._hole_edge_spacing = 0.5 * (self.HOLE_RADIUS_A[0] / px)
        self._edge_key = stream_key(self.seed, _HOLE_EDGE)
        self._rough_key = stream_key(self.seed, _ROUGH)

    def _make_holes(self, rng: np.random.Generator, x0: float, y0: float, cell: float) -> Features:
        area_A2 = (cell * self.pixel_size_A) ** 2
        n = rng.poisson(self.HOLE_DENSITY_PER_A2 * area_A2)
        lo, hi = self.HOLE_RADIUS_A
        return {
            "x": x0 + cell * rng.random(n),
            "y": y0 + cell * rng.random(n),
            "r": rng.uniform(lo, hi, n) / self.pixel_size_A,
        }

    def _holes(self, box: tuple[float, float, float, float]) -> Features:
        reach = self._hole_rmax_px * (1.0 + self.HOLE_ROUGHNESS) + 2.0
        return self._features_near(_HOLES, self._hole_cell_px, reach, box, self._make_holes)

    def film_mask(self, ys: F64, xs: F64) -> F64:
        """Film coverage in [0, 1] on the grid ``ys x xs`` (0 inside holes, 1 on film)."""
        mask = np.ones((len(ys), len(xs)))
        holes = self._holes((xs[0], ys[0], xs[-1], ys[-1]))
        if holes["x"].size == 0:
            return mask
        rough = None
        for hx, hy, r in zip(holes["x"], holes["y"], holes["r"], strict=True):
            reach = r * (1.0 + self.HOLE_ROUGHNESS) + 2.0
            ix = np.flatnonzero(np.abs(xs - hx) <= reach)
            iy = np.flatnonzero(np.abs(ys - hy) <= reach)
            if ix.size == 0 or iy.size == 0:
                continue
            if rough is None:
                rough = value_noise(self._edge_key, ys, xs, self._hole_edge_spacing)
            sy, sx = slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1)
            d = np.hypot(xs[sx][None, :] - hx, ys[sy][:, None] - hy)
            edge = d - r * (1.0 + self.HOLE_ROUGHNESS * rough[sy, sx])
            # a one-pixel soft edge: coverage of the pixel by film
            np.minimum(mask[sy, sx], np.clip(edge + 0.5, 0.0, 1.0), out=mask[sy, sx])
        return mask

    def on_film(self, y: F64, x: F64) -> NDArray[np.bool_]:
        """Whether the points ``(y[i], x[i])`` lie on the film (not in a hole)."""
        inside = np.zeros(np.shape(x), np.bool_)
        if inside.size == 0:
            return ~inside
        holes = self._holes((float(x.min()), float(y.min()), float(x.max()), float(y.max())))
        if holes["x"].size == 0:
            return ~inside
        rough = value_noise_points(self._edge_key, y, x, self._hole_edge_spacing)
        for hx, hy, r in zip(holes["x"], holes["y"], holes["r"], strict=True):
            d = np.hypot(x - hx, y - hy)
            inside |= d < r * (1.0 + self.HOLE_ROUGHNESS * rough)
        return ~inside

    def film_thickness_A(self, ys: F64, xs: F64, mask: F64) -> F64:
        """Film thickness (A): nominal thickness with a few % smooth roughness, zero in holes."""
        rough = fractal_noise(self._rough_key, ys, xs, 2000.0 / self.pixel_size_A, 4)
        return self.FILM_THICKNESS_A * (1.0 + self.FILM_ROUGHNESS * rough) * mask


class NanoparticleSpecimen(_HoleySupport):
    """Low-magnification specimen: nanoparticle aggregates on holey amorphous carbon.

    Contrast is mass-thickness (``I = exp(-t_film/mfp_C - t_particle/mfp_particle)``) plus a mild
    Fresnel term at edges from the defocus acting on the mean-inner-potential phase, in the
    transport-of-intensity approximation ``I -> I (1 - lambda df / 2 pi laplacian(phase))``, with
    the phase smoothed by the partial coherence (``COHERENCE_BLUR_PX``).
    """

    kind: ClassVar[str] = "nanoparticles"
    # holey carbon: holes of 0.4-1.5 um radius covering about 20 % of the area
    HOLE_RADIUS_A: ClassVar[tuple[float, float]] = (4000.0, 15000.0)
    HOLE_DENSITY_PER_A2: ClassVar[float] = 0.065e-8
    FILM_THICKNESS_A: ClassVar[float] = 200.0
    #: mass-thickness mean free paths with an objective aperture (A)
    FILM_MFP_A: ClassVar[float] = 1500.0
    PARTICLE_MFP_A: ClassVar[float] = 600.0
    #: mean inner potentials (V): amorphous carbon, Au-like particles
    FILM_MIP_V: ClassVar[float] = 10.0
    PARTICLE_MIP_V: ClassVar[float] = 30.0
    #: particle radii: lognormal (median, sigma of log), clipped (A)
    PARTICLE_RADIUS_A: ClassVar[tuple[float, float, float, float]] = (150.0, 0.45, 45.0, 600.0)
    CLUSTERS_PER_A2: ClassVar[float] = 2.5e-8
    MEAN_PARTICLES_PER_CLUSTER: ClassVar[float] = 8.0
    MAX_PARTICLES_PER_CLUSTER: ClassVar[int] = 40
    CLUSTER_RADIUS_A: ClassVar[float] = 2500.0
    RESOLUTION_BLUR_PX: ClassVar[float] = 0.5
    COHERENCE_BLUR_PX: ClassVar[float] = 1.0
    APRON: ClassVar[int] = 12

    def _setup(self) -> None:
        super()._setup()
        px = self.pixel_size_A
        self._rmax_px = self.PARTICLE_RADIUS_A[3] / px
        self._cluster_cell_px = float(self.TILE)
        self._cluster_reach_px = self.CLUSTER_RADIUS_A / px + self._rmax_px + 2.0
        self._sigma = interaction_constant(self.voltage_kv)

    def _make_clusters(
        self, rng: np.random.Generator, x0: float, y0: float, cell: float
    ) -> Features:
        px = self.pixel_size_A
        med, sig, lo, hi = self.PARTICLE_RADIUS_A
        n_clusters = rng.poisson(self.CLUSTERS_PER_A2 * (cell * px) ** 2)
        xs: list[float] = []
        ys: list[float] = []
        rs: list[float] = []
        rho: list[float] = []
        limit = self.CLUSTER_RADIUS_A / px
        for _ in range(n_clusters):
            cx, cy = x0 + cell * rng.random(), y0 + cell * rng.random()
            count = min(
                int(rng.geometric(1.0 / self.MEAN_PARTICLES_PER_CLUSTER)),
                self.MAX_PARTICLES_PER_CLUSTER,
            )
            radii = np.clip(med * np.exp(sig * rng.standard_normal(count)), lo, hi) / px
            px_list, py_list = [cx], [cy]
            for r in radii[1:]:
                # attach to a random member, slightly sintered (centres 75-95 % of touching)
                for _attempt in range(8):
                    k = int(rng.integers(len(px_list)))
                    ang = rng.uniform(0.0, 2.0 * math.pi)
                    dist = (radii[k] + r) * rng.uniform(0.75, 0.95)
                    nx, ny = px_list[k] + dist * math.cos(ang), py_list[k] + dist * math.sin(ang)
                    if math.hypot(nx - cx, ny - cy) + r <= limit:
                        px_list.append(nx)
                        py_list.append(ny)
                        break
            xs += px_list
            ys += py_list
            rs += list(radii[: len(px_list)])
            rho += list(rng.uniform(0.7, 1.0, len(px_list)))
        return {"x": np.array(xs), "y": np.array(ys), "r": np.array(rs), "rho": np.array(rho)}

    def particles(self, box: tuple[float, float, float, float]) -> Features:
        """Particles (centre px, radius px, density factor) that can reach into ``box``.

        Particles whose centre lies over a hole are dropped: nothing holds them there.
        """
        f = self._features_near(
            _PARTICLES, self._cluster_cell_px, self._cluster_reach_px, box, self._make_clusters
        )
        x0, y0, x1, y1 = box
        near = (
            (f["x"] + f["r"] >= x0)
            & (f["x"] - f["r"] <= x1)
            & (f["y"] + f["r"] >= y0)
            & (f["y"] - f["r"] <= y1)
        )
        f = {k: v[near] for k, v in f.items()}
        keep = self.on_film(f["y"], f["x"])
        return {k: v[keep] for k, v in f.items()}

    def _render(self, x0: int, y0: int, n: int) -> _Tile:
        a = self.APRON
        px = self.pixel_size_A
        ys = np.arange(y0 - a, y0 + n + a, dtype=np.float64)
        xs = np.arange(x0 - a, x0 + n + a, dtype=np.float64)
        mask = self.film_mask(ys, xs)
        t_film = self.film_thickness_A(ys, xs, mask)
        t_part = np.zeros_like(t_film)
        mip_part = np.zeros_like(t_film)
        parts = self.particles((xs[0], ys[0], xs[-1], ys[-1]))
        for cx, cy, r, rho in zip(parts["x"], parts["y"], parts["r"], parts["rho"], strict=True):
            ix = np.flatnonzero(np.abs(xs - cx) <= r + 1.0)
            iy = np.flatnonzero(np.abs(ys - cy) <= r + 1.0)
            if ix.size == 0 or iy.size == 0:
                continue
            sy, sx = slice(iy[0], iy[-1] + 1), slice(ix[0], ix[-1] + 1)
            d2 = (xs[sx][None, :] - cx) ** 2 + (ys[sy][:, None] - cy) ** 2
            chord = 2.0 * np.sqrt(np.maximum(r * r - d2, 0.0)) * px  # A
            t_part[sy, sx] += rho * chord
            mip_part[sy, sx] += rho * chord * self.PARTICLE_MIP_V
        od_part = t_part / self.PARTICLE_MFP_A
        t_mass = np.exp(-t_film / self.FILM_MFP_A - od_part)
        phase = self._sigma * (self.FILM_MIP_V * t_film + mip_part)  # rad
        shape = t_mass.shape
        blur = gaussian_filter_fourier(shape, self.RESOLUTION_BLUR_PX)
        t_mass = np.fft.ifft2(np.fft.fft2(t_mass) * blur).real
        gy = np.fft.fftfreq(shape[0], d=px)[:, None]
        gx = np.fft.fftfreq(shape[1], d=px)[None, :]
        laplace = -4.0 * math.pi**2 * (gx * gx + gy * gy)
        coherent = gaussian_filter_fourier(shape, self.COHERENCE_BLUR_PX)
        lap_phase = np.fft.ifft2(np.fft.fft2(phase) * laplace * coherent).real  # rad / A^2
        df = self.defocus_nm * 10.0
        fresnel = 1.0 - self.wavelength_A * df / (2.0 * math.pi) * lap_phase
        intensity = np.maximum(t_mass * fresnel, 0.0)
        crop = (slice(a, a + n), slice(a, a + n))
        inten = intensity[crop].astype(np.float32)
        vac = (mask[crop] == 0.0) & (t_part[crop] == 0.0) & (np.abs(inten - 1.0) < 0.01)
        return _Tile(inten, od_part[crop].astype(np.float32), vac)


class AtomicSpecimen(_HoleySupport):
    """Atomic-resolution specimen: Au nanocrystals (random zone axis and rotation) on lacey carbon.

    The projected potential (Au columns on the projected fcc lattice, amorphous carbon as random
    atoms) gives a phase-object exit wave ``exp((i - absorption) phase)``, imaged through the CTF
    with partial-coherence envelopes; the intensity is ``|ifft(fft(psi) H)|^2``.
    """

    kind: ClassVar[str] = "atomic"
    # lacey carbon: holes of 15-60 nm radius covering about 30 % of the area
    HOLE_RADIUS_A: ClassVar[tuple[float, float]] = (150.0, 600.0)
    HOLE_DENSITY_PER_A2: ClassVar[float] = 6.0e-7
    FILM_THICKNESS_A: ClassVar[float] = 40.0
    CARBON_ATOMS_PER_A3: ClassVar[float] = 0.1
    #: electron scattering factors f_e(0) (A) and thermal-smeared atom widths (A)
    F_AU_A: ClassVar[float] = 10.0
    F_C_A: ClassVar[float] = 2.5
    SIGMA_AU_A: ClassVar[float] = 0.45
    SIGMA_C_A: ClassVar[float] = 0.40
    ABSORPTION: ClassVar[float] = 0.05
    LATTICE_A: ClassVar[float] = 4.078
    PARTICLE_RADIUS_A: ClassVar[tuple[float, float, float, float]] = (25.0, 0.35, 10.0, 60.0)
    PARTICLES_PER_A2: ClassVar[float] = 4.5e-5

    def _setup(self) -> None:
        super()._setup()
        px = self.pixel_size_A
        self._rmax_px = self.PARTICLE_RADIUS_A[3] / px
        self._particle_cell_px = float(self.TILE)
        deloc = delocalisation_px(px, self.voltage_kv, self.cs_mm, self.defocus_nm)
        self.apron = int(min(max(math.ceil(deloc) + 16, 32), 256))
        m = self.TILE + 2 * self.apron
        self._fft_n = 32 * math.ceil(m / 32)
        shape = (self._fft_n, self._fft_n)
        self._ctf = ctf(shape, px, self.voltage_kv, self.cs_mm, self.defocus_nm)
        self._phi_au = atom_phase_integral(self.voltage_kv, self.F_AU_A) / (px * px)
        self._phi_c = atom_phase_integral(self.voltage_kv, self.F_C_A) / (px * px)
        self._carbon_key = stream_key(self.seed, _CARBON)
        self._blur_au = gaussian_filter_fourier(shape, self.SIGMA_AU_A / px)
        self._blur_c = gaussian_filter_fourier(shape, self.SIGMA_C_A / px)
        a = self.LATTICE_A
        s2 = math.sqrt(2.0)
        # projected fcc lattices: (basis vectors, column offsets, atoms per A along the beam)
        self._zones: list[tuple[F64, F64, float]] = [
            (np.array([[a / 2, 0.0], [0.0, a / 2]]), np.zeros((1, 2)), 1.0 / a),  # [001]
            (
                np.array([[a / s2, 0.0], [0.0, a]]),
                np.array([[0.0, 0.0], [a / (2 * s2), a / 2]]),
                s2 / a,
            ),  # [110]
            (
                np.array([[a / math.sqrt(6.0), 0.0], [a / (2 * math.sqrt(6.0)), a / (2 * s2)]]),
                np.zeros((1, 2)),
                1.0 / (a * math.sqrt(3.0)),
            ),  # [111]
        ]

    def _make_particles(
        self, rng: np.random.Generator, x0: float, y0: float, cell: float
    ) -> Features:
        px = self.pixel_size_A
        med, sig, lo, hi = self.PARTICLE_RADIUS_A
        n = rng.poisson(self.PARTICLES_PER_A2 * (cell * px) ** 2)
        return {
            "x": x0 + cell * rng.random(n),
            "y": y0 + cell * rng.random(n),
            "r": np.clip(med * np.exp(sig * rng.standard_normal(n)), lo, hi) / px,
            "zone": rng.integers(0, len(self._zones), n).astype(np.float64),
            "theta": rng.uniform(0.0, 2.0 * math.pi, n),
            "ox": rng.random(n),
            "oy": rng.random(n),
        }

    def particles(self, box: tuple[float, float, float, float]) -> Features:
        """Nanocrystals that can reach into ``box`` (centres over holes are dropped)."""
        f = self._features_near(
            _PARTICLES, self._particle_cell_px, self._rmax_px + 2.0, box, self._make_particles
        )
        x0, y0, x1, y1 = box
        near = (
            (f["x"] + f["r"] >= x0)
            & (f["x"] - f["r"] <= x1)
            & (f["y"] + f["r"] >= y0)
            & (f["y"] - f["r"] <= y1)
        )
        f = {k: v[near] for k, v in f.items()}
        keep = self.on_film(f["y"], f["x"])
        return {k: v[keep] for k, v in f.items()}

    def _columns(self, p: dict[str, float]) -> tuple[F64, F64, F64]:
        """Column positions (px) and atoms per column of one spherical nanocrystal."""
        px = self.pixel_size_A
        basis, offsets, per_A = self._zones[int(p["zone"])]
        c, s = math.cos(p["theta"]), math.sin(p["theta"])
        rot = np.array([[c, -s], [s, c]])
        vecs = basis @ rot.T  # rows: rotated basis vectors (A)
        r_A = p["r"] * px
        m = math.ceil(r_A / min(np.linalg.norm(vecs[0]), np.linalg.norm(vecs[1]))) + 2
        i, j = np.meshgrid(np.arange(-m, m + 1), np.arange(-m, m + 1))
        lattice = (i.reshape(-1, 1) + p["ox"]) * vecs[0] + (j.reshape(-1, 1) + p["oy"]) * vecs[1]
        pos = (lattice[:, None, :] + (offsets @ rot.T)[None, :, :]).reshape(-1, 2)
        d2 = np.sum(pos * pos, axis=1)
        inside = d2 < r_A * r_A
        pos, d2 = pos[inside], d2[inside]
        atoms = 2.0 * np.sqrt(r_A * r_A - d2) * per_A
        return p["x"] + pos[:, 0] / px, p["y"] + pos[:, 1] / px, atoms

    def _render(self, x0: int, y0: int, n: int) -> _Tile:
        nf = self._fft_n
        a = (nf - n) // 2
        gx0, gy0 = x0 - a, y0 - a
        ys = np.arange(gy0, gy0 + nf, dtype=np.float64)
        xs = np.arange(gx0, gx0 + nf, dtype=np.float64)
        mask = self.film_mask(ys, xs)
        t_film = self.film_thickness_A(ys, xs, mask)
        # amorphous carbon: random atom count per pixel (Gaussian approximation to Poisson)
        mean_atoms = self.CARBON_ATOMS_PER_A3 * t_film * self.pixel_size_A**2
        iy, ix = ys.astype(np.int64)[:, None], xs.astype(np.int64)[None, :]
        u = hash_uniform(self._carbon_key, iy, ix)
        z = normal_table()[(u * 65536.0).astype(np.intp)]
        carbon = np.maximum(mean_atoms + np.sqrt(mean_atoms) * z, 0.0)
        gold = np.zeros(nf * nf)
        support = np.zeros((nf, nf), np.bool_)
        parts = self.particles((xs[0], ys[0], xs[-1], ys[-1]))
        for k in range(parts["x"].size):
            p = {key: float(val[k]) for key, val in parts.items()}
            cx, cy, atoms = self._columns(p)
            fx, fy = cx - gx0, cy - gy0
            ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
            wx, wy = fx - ix, fy - iy
            for dy, dx, w in (
                (0, 0, (1 - wx) * (1 - wy)),
                (0, 1, wx * (1 - wy)),
                (1, 0, (1 - wx) * wy),
                (1, 1, wx * wy),
            ):
                yy, xx = iy + dy, ix + dx
                ok = (yy >= 0) & (yy < nf) & (xx >= 0) & (xx < nf)
                flat = yy[ok] * nf + xx[ok]
                gold += np.bincount(flat, weights=(atoms * w)[ok], minlength=nf * nf)
            r = p["r"]
            bx = np.flatnonzero(np.abs(xs - p["x"]) <= r)
            by = np.flatnonzero(np.abs(ys - p["y"]) <= r)
            if bx.size and by.size:
                sy, sx = slice(by[0], by[-1] + 1), slice(bx[0], bx[-1] + 1)
                disc = (xs[sx][None, :] - p["x"]) ** 2 + (ys[sy][:, None] - p["y"]) ** 2 <= r * r
                support[sy, sx] |= disc
        spectrum = np.fft.fft2(gold.reshape(nf, nf)) * (self._phi_au * self._blur_au) + np.fft.fft2(
            carbon
        ) * (self._phi_c * self._blur_c)
        phase = np.fft.ifft2(spectrum).real
        psi = np.exp((1j - self.ABSORPTION) * phase)
        image = np.fft.ifft2(np.fft.fft2(psi) * self._ctf)
        intensity = image.real**2 + image.imag**2
        crop = (slice(a, a + n), slice(a, a + n))
        inten = intensity[crop].astype(np.float32)
        sup = support[crop]
        change = np.where(sup, -np.log(np.maximum(inten, 1e-3)), 0.0).astype(np.float32)
        vac = (mask[crop] == 0.0) & ~sup & (np.abs(inten - 1.0) < 0.01)
        return _Tile(inten, change, vac)


def make_specimen(
    kind: str,
    seed: int,
    pixel_size_A: float,
    voltage_kv: float,
    cs_mm: float,
    defocus_nm: float,
    cache_tiles: int = 64,
) -> SpecimenMap:
    """Build the specimen map of ``kind`` (one of :data:`tem_acq.sim.SPECIMEN_KINDS`)."""
    classes: dict[str, type[SpecimenMap]] = {
        NanoparticleSpecimen.kind: NanoparticleSpecimen,
        AtomicSpecimen.kind: AtomicSpecimen,
    }
    if kind not in classes:
        raise ValueError(f"unknown specimen kind {kind!r}; choose one of {sorted(classes)}")
    return classes[kind](
        seed,
        pixel_size_A,
        voltage_kv=voltage_kv,
        cs_mm=cs_mm,
        defocus_nm=defocus_nm,
        cache_tiles=cache_tiles,
    )
