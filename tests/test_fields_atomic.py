"""Atomic-resolution fields by multislice: scattering factors, structures, multislice, recipes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tem_acq.errors import ConfigError
from tem_acq.sim.config import scherzer_defocus_nm
from tem_acq.sim.fields.atomic import (
    ATOMIC_INDEPENDENT,
    ATOMIC_TRAIN,
    AtomicRecipe,
    atomic_field,
    atomic_recipe,
    draw_optics,
    draw_particles,
)
from tem_acq.sim.fields.multislice import (
    Grid,
    Optics,
    exit_wave,
    fourier_resample,
    image,
    propagator,
)
from tem_acq.sim.fields.scattering import ELEMENTS, electron_scattering_factor
from tem_acq.sim.fields.structures import (
    MATERIALS,
    Atoms,
    amorphous_carbon,
    carbon_number_density,
    crystal_ball,
    material,
    twinned,
    unit_cell,
)

#: abTEM 1.0.11's Lobato f_e (A) at k = 0, 0.5, 1, 2 /A (s = k / 2), measured when
#: benchmarks/check_multislice_abtem.py was written.
LOBATO = {"C": (2.5097, 1.1692, 0.41279, 0.11716), "Au": (10.5758, 6.0402, 3.0655, 1.2096)}

#: A fast recipe: one small Au sphere along [001] on thin carbon at 0.3 A/px.
SMALL = AtomicRecipe(
    name="small",
    materials=("Au",),
    shapes=("sphere",),
    size_nm=(1.5, 1.5),
    zone_axes=((0, 0, 1),),
    carbon_thickness_nm=(2.0, 2.0),
    voltages_kv=(300.0,),
    pixel_size_A=(0.3, 0.3),
    particles_per_field=(1, 1),
)


@pytest.mark.parametrize("symbol", ["C", "Au"])
def test_scattering_factor_matches_the_lobato_values_abtem_uses(symbol: str) -> None:
    """f_e(0) within 5 % of Lobato's (the fits differ most at s = 0), its decay within 1 %."""
    ours = electron_scattering_factor(symbol, 0.5 * np.array([0.0, 0.5, 1.0, 2.0]))
    theirs = np.array(LOBATO[symbol])
    assert abs(ours[0] / theirs[0] - 1.0) < 0.05
    np.testing.assert_allclose(ours[1:], theirs[1:], rtol=0.01)


def test_scattering_factor_is_finite_and_continuous_at_zero() -> None:
    for symbol in ELEMENTS:
        f = electron_scattering_factor(symbol, np.array([0.0, 1e-8, 1e-4, 0.05]))
        assert np.all(np.isfinite(f)) and f[0] > 0
        assert abs(f[1] - f[0]) < 1e-9 * f[0] and abs(f[2] - f[0]) < 1e-4 * f[0]
        assert f[3] < f[0]


def test_unknown_element_is_one_clear_line() -> None:
    with pytest.raises(ConfigError, match="element 'Xx' has no scattering factor") as err:
        electron_scattering_factor("Xx", 0.0)
    assert "\n" not in str(err.value)


def test_propagator_conserves_the_norm_of_a_band_limited_wave() -> None:
    grid = Grid((128, 96), 0.1)
    rng = np.random.default_rng(0)
    wave = np.fft.fft2(rng.normal(size=grid.shape) + 1j * rng.normal(size=grid.shape))
    wave *= grid.antialias()
    moved = wave * propagator(grid, 50.0, 200.0)
    assert np.sum(np.abs(moved) ** 2) == pytest.approx(np.sum(np.abs(wave) ** 2), rel=1e-5)
    assert not np.allclose(moved, wave)


def test_a_weak_phase_atom_is_dark_at_scherzer_and_bright_in_overfocus() -> None:
    grid = Grid((200, 200), 0.1)
    atom = Atoms(np.array([[10.0, 10.0, 1.0]]), np.array([ELEMENTS["Si"]]))
    wave = exit_wave(atom, grid, 200.0)
    scherzer = scherzer_defocus_nm(200.0, 1.0)
    at_atom = []
    for defocus in (scherzer, -scherzer):
        img = image(wave, grid, Optics(200.0, 1.0, defocus, 12.0, 30.0, 0.1))
        at_atom.append(img[95:106, 95:106].mean() - 1.0)
    assert at_atom[0] < -0.01 and at_atom[1] > 0.01


def _au_slab(cells: int, layers: int) -> Atoms:
    mat = material("Au")
    frac, numbers = unit_cell(mat)
    r = np.arange(cells)
    grid = np.stack(np.meshgrid(r, r, np.arange(layers), indexing="ij"), -1).reshape(-1, 1, 3)
    pos = ((grid + frac[None]) * mat.a_A).reshape(-1, 3)
    return Atoms(pos, np.tile(numbers, grid.shape[0]))


def test_fcc_along_001_images_its_half_lattice_spacing_at_the_detector_pixel() -> None:
    """Columns of Au [001] repeat every a/2: the strongest reflections at multiples of 2/a.

    (The (110) positions are weak, not zero: each layer alone has them, and the 2 A Fresnel
    propagation between the two kinds of layers keeps about 1 % of their amplitude.)
    """
    cells = 8
    a = MATERIALS["Au"].a_A
    grid = Grid((256, 256), cells * a / 256)
    wave = exit_wave(_au_slab(cells, 3), grid, 300.0, b_factors_A2={79: 0.6})
    img = image(wave, grid, Optics(300.0, -0.01, 2.0, 30.0, 20.0, 0.1))
    detected = fourier_resample(img, (96, 96))  # 96 px across 8 cells: 2/a is index 16
    power = np.abs(np.fft.fft2(detected - detected.mean())) ** 2
    strongest = np.argsort(power.ravel())[::-1][:8]
    for index in np.unravel_index(strongest, power.shape):
        assert np.all(np.minimum(index, 96 - index) % 16 == 0)
    assert power[0, 16] > 1e4 * np.median(power)
    assert power[0, 8] < 1e-6 * power[0, 16]  # (100): absent from every layer


def test_amorphous_carbon_has_its_density_and_minimum_distance() -> None:
    film = amorphous_carbon((20.0, 20.0), 20.0, np.random.default_rng(1))
    assert len(film) / (20.0 * 20.0 * 20.0) == pytest.approx(carbon_number_density(), rel=0.03)
    d = film.positions[:, None] - film.positions[None]
    d[..., :2] -= 20.0 * np.round(d[..., :2] / 20.0)
    r = np.sqrt((d**2).sum(-1)) + 100.0 * np.eye(len(film))
    assert r.min() >= 1.3


def test_twin_mirrors_the_stacking_across_111() -> None:
    ball = crystal_ball(material("Au"), 12.0)
    twin = twinned(ball)
    n = np.ones(3) / math.sqrt(3.0)
    above = twin.positions[twin.positions @ n > 0.1]
    mirrored = above - 2.0 * (above @ n)[:, None] * n[None]
    lattice = {tuple(p) for p in np.round(ball.positions, 3)}
    assert all(tuple(p) in lattice for p in np.round(mirrored, 3))
    assert not all(tuple(p) in lattice for p in np.round(above, 3))


def test_fields_are_deterministic_and_respect_the_pixel_size() -> None:
    first = atomic_field(SMALL, 48, np.random.default_rng(5))
    again = atomic_field(SMALL, 48, np.random.default_rng(5))
    other = atomic_field(SMALL, 48, np.random.default_rng(6))
    np.testing.assert_array_equal(first.intensity, again.intensity)
    assert first.settings == again.settings
    assert json.loads(json.dumps(first.settings)) == first.settings
    assert not np.array_equal(first.intensity, other.intensity)
    assert first.pixel_size_A == 0.3 and first.intensity.shape == (48, 48)
    assert first.kind == "atomic" and first.intensity.dtype == np.float32
    assert np.all(first.intensity >= 0) and 0.3 < first.intensity.mean() < 1.3
    assert first.particles.any()


def test_a_particle_larger_than_the_cell_is_cut_never_wrapped_onto_itself() -> None:
    """The grid is periodic: an atom outside the cell would land on top of the crystal's own."""
    big = SMALL.model_copy(update={"size_nm": (4.0, 4.0), "particles_per_field": (2, 2)})
    parts, drawn = draw_particles(big, np.random.default_rng(2), 12.0, 4.0, 0.0)
    assert len(parts) == len(drawn["particles"]) == 1  # type: ignore[arg-type]
    xy = parts[0].positions[:, :2]
    assert len(parts[0]) > 100 and np.all((xy >= 0.0) & (xy < 20.0))


def test_fields_depend_on_the_recipe() -> None:
    pt = SMALL.model_copy(update={"name": "small-pt", "materials": ("Pt",)})
    au = atomic_field(SMALL, 48, np.random.default_rng(5))
    other = atomic_field(pt, 48, np.random.default_rng(5))
    assert au.settings["material"] == "Au" and other.settings["material"] == "Pt"
    assert not np.array_equal(au.intensity, other.intensity)


def test_independent_recipe_is_held_out_whole() -> None:
    train, test = ATOMIC_TRAIN, ATOMIC_INDEPENDENT
    assert not set(train.materials) & set(test.materials)
    assert not set(train.zone_axes) & set(test.zone_axes)
    assert not set(train.shapes) & set(test.shapes)
    assert not set(train.voltages_kv) & set(test.voltages_kv)
    assert test.random_orientation_share == 0.0
    rng = np.random.default_rng(0)
    for _ in range(300):
        optics, _ = draw_optics(test, rng)
        assert optics.voltage_kv not in train.voltages_kv
        assert optics.focal_spread_A > train.focal_spread_A[1]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"materials": ("Unobtainium",)}, "materials: unknown"),
        ({"pixel_size_A": (1.0, 0.1)}, "pixel_size_A: a range needs low <= high"),
        ({"pixel_size_A": (0.0, 0.1)}, "pixel_size_A must be > 0"),
        ({"twin_share": 1.5}, "twin_share"),
        ({"zone_axes": ((0, 0, 0),)}, "zone axis needs a nonzero direction"),
        ({"zone_axes": ()}, "random_orientation_share to 1"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_recipe_values_are_one_clear_line(change: dict[str, object], named: str) -> None:
    data = {**SMALL.model_dump(), **change}
    with pytest.raises(ConfigError, match="atomic recipe") as err:
        atomic_recipe(data)
    assert named in str(err.value) and "\n" not in str(err.value)


def test_a_too_small_field_is_refused() -> None:
    with pytest.raises(ConfigError, match="size >= 16"):
        atomic_field(SMALL, 8, np.random.default_rng(0))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [ATOMIC_TRAIN, ATOMIC_INDEPENDENT], ids=lambda r: r.name)
def test_recipes_make_valid_256_fields(recipe: AtomicRecipe) -> None:
    rng = np.random.default_rng(14)
    for _ in range(3):
        field = atomic_field(recipe, 256, rng)
        assert field.intensity.shape == (256, 256) and np.all(np.isfinite(field.intensity))
        low, high = recipe.pixel_size_A
        assert low <= field.pixel_size_A <= high
        assert field.settings["material"] in recipe.materials
        if field.vacuum.sum() > 200:
            assert abs(float(np.median(field.intensity[field.vacuum])) - 1.0) < 0.1
