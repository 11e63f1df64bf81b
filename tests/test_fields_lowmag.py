"""Low-magnification training and test fields: shapes, materials, support, optics, recipes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tem_acq.errors import ConfigError
from tem_acq.sim.fields import Field
from tem_acq.sim.fields._shapes import random_rotation, tilt_rotation
from tem_acq.sim.fields.lowmag import (
    LOWMAG_INDEPENDENT,
    LOWMAG_TRAIN,
    SHAPES,
    LowMagRecipe,
    lowmag_field,
    particle_thickness_A,
)


def _rotation(seed: int) -> list[float]:
    return [float(v) for v in random_rotation(np.random.default_rng(seed)).ravel()]


#: One spec per shape with its volume written out independently of the module (Å^3).
_R = 40.0
_SOLIDS: dict[str, tuple[dict[str, object], float]] = {
    "sphere": ({"radius_A": _R}, 4 / 3 * math.pi * _R**3),
    "rod": (
        {"length_A": 150.0, "radius_A": 15.0, "rotation": list(tilt_rotation(0.7, 0.5).ravel())},
        math.pi * 15.0**2 * 120.0 + 4 / 3 * math.pi * 15.0**3,
    ),
    "cube": ({"edge_A": 60.0, "rotation": _rotation(1)}, 60.0**3),
    "plate": ({"half_A": [40.0, 25.0, 6.0], "rotation": _rotation(2)}, 80.0 * 50.0 * 12.0),
    "octahedron": ({"edge_A": 80.0, "rotation": _rotation(3)}, 4 / 3 * 40.0**3),
    "shell": ({"outer_A": _R, "inner_A": 30.0}, 4 / 3 * math.pi * (_R**3 - 30.0**3)),
    "aggregate": (
        {
            "centres_A": [[-30.0, 0.0, 0.0], [0.0, 0.0, 0.0], [30.0, 0.0, 5.0]],
            "radii_A": [15.0] * 3,
        },
        3 * 4 / 3 * math.pi * 15.0**3,
    ),
    "tetrahedron": ({"edge_A": 90.0, "rotation": _rotation(4)}, 90.0**3 / (6 * math.sqrt(2))),
    "triangular_plate": (
        {"edge_A": 90.0, "height_A": 20.0, "rotation": _rotation(5)},
        math.sqrt(3) / 4 * 90.0**2 * 20.0,
    ),
    # pentagonal bipyramid: 2/3 * pentagon area * half height
    "decahedron": (
        {"radius_A": _R, "half_height_A": 30.0, "rotation": _rotation(6)},
        2 / 3 * (2.5 * _R**2 * math.sin(2 * math.pi / 5)) * 30.0,
    ),
    "core_shell": ({"outer_A": _R, "inner_A": 25.0}, 4 / 3 * math.pi * _R**3),
}


def _recipe(**changes: object) -> LowMagRecipe:
    base = {
        "name": "test",
        "shapes": {"sphere": 1.0},
        "materials": {"Au": 1.0},
        "pixel_size_A": (8.0, 8.0),
        "defocus_nm": ((-2000.0, -2000.0, 1.0),),
        "voltages_kv": (200.0,),
        "convergence_mrad": (0.1, 0.1),
    }
    return LowMagRecipe.model_validate({**base, **changes})


def _far_from(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels of ``mask`` whose whole (2r+1)^2 neighbourhood is in ``mask``."""
    n = mask.shape[0]
    c = np.pad(mask.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    i = np.arange(n)
    lo, hi = np.clip(i - radius, 0, n), np.clip(i + radius + 1, 0, n)
    total = c[hi][:, hi] - c[lo][:, hi] - c[hi][:, lo] + c[lo][:, lo]
    return mask & (total == (hi - lo)[:, None] * (hi - lo)[None, :])


def _box_smooth(a: np.ndarray, radius: int) -> np.ndarray:
    k = 2 * radius + 1
    c = np.pad(a, radius, mode="reflect").cumsum(0).cumsum(1)
    c = np.pad(c, ((1, 0), (1, 0)))
    n = a.shape[0]
    return (c[k : k + n, k : k + n] - c[:n, k : k + n] - c[k : k + n, :n] + c[:n, :n]) / k**2


def test_every_shape_has_a_volume_check() -> None:
    assert set(_SOLIDS) == set(SHAPES)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("step_A", [0.5, 2.0])
def test_projected_thickness_integrates_to_the_volume(shape: str, step_A: float) -> None:
    # a fine grid, and one with 15 samples across the smallest part (an aggregate's sphere)
    spec, volume = _SOLIDS[shape]
    g = np.arange(-110.0, 110.0, step_A) + step_A / 2
    main, shell = particle_thickness_A(shape, spec, g[None, :], g[:, None])
    assert main.min() >= 0 and shell.min() >= 0
    integral = (main + shell).sum() * step_A**2
    assert integral == pytest.approx(volume, rel=0.001 if step_A < 1 else 0.02)


def test_field_has_the_contract_shape_and_json_settings() -> None:
    field = lowmag_field(LOWMAG_TRAIN, 96, np.random.default_rng(3))
    assert isinstance(field, Field) and field.kind == "low-mag"
    assert field.intensity.shape == (96, 96) and field.intensity.dtype == np.float32
    assert field.intensity.min() >= 0 and np.isfinite(field.intensity).all()
    assert 5.0 <= field.pixel_size_A <= 50.0
    assert field.settings["recipe"] == "train"
    json.dumps(field.settings)


def test_vacuum_far_from_material_is_exactly_flat() -> None:
    # big holes, a particle over them, strong underfocus and weak convergence: long fringes
    recipe = _recipe(
        supports={"holey": 1.0},
        hole_radius_nm=(400.0, 600.0),
        over_holes=1.0,
        particle_count=(8, 8),
        particle_span_px=(6.0, 12.0),
        defocus_nm=((-5000.0, -5000.0, 1.0),),
        convergence_mrad=(0.05, 0.05),
    )
    checked = 0
    for seed in range(4):
        field = lowmag_field(recipe, 160, np.random.default_rng(seed))
        reach = math.ceil(field.settings["reach_px"]) + 4
        far = _far_from(field.vacuum, reach)
        # material beyond the field's border is not in its mask: stay a reach inside too
        far[:reach] = far[-reach:] = far[:, :reach] = far[:, -reach:] = False
        checked += int(far.sum())
        if far.any():
            assert np.abs(field.intensity[far] - 1.0).max() < 1e-3
    assert checked > 1000


def _film_texture(roughness_nm: float) -> float:
    recipe = _recipe(
        supports={"film": 1.0},
        particle_count=(0, 0),
        film_thickness_nm=(20.0, 20.0),
        film_roughness_nm=(roughness_nm, roughness_nm),
    )
    field = lowmag_field(recipe, 128, np.random.default_rng(0))
    assert not field.vacuum.any() and not field.particles.any()
    assert 0.7 < field.intensity.mean() < 0.95  # 20 nm of carbon (mean free path 150 nm)
    fine = field.intensity - _box_smooth(field.intensity.astype(np.float64), 3)
    return float(fine[8:-8, 8:-8].std())


def test_film_has_a_fine_amorphous_texture() -> None:
    # 20 nm of carbon at 8 A/px, 2 um underfocus; the shot noise at 5 e-/px is 45 % rms
    atoms_only, rough = _film_texture(0.0), _film_texture(1.0)
    assert 5e-3 < atoms_only < 0.06  # the random count of carbon atoms per pixel
    assert 0.04 < rough < 0.15  # plus 1 nm rms of surface roughness
    assert rough > 1.5 * atoms_only


def _particle_contrast(recipe: LowMagRecipe, seed: int = 1) -> float:
    field = lowmag_field(recipe, 96, np.random.default_rng(seed))
    assert field.particles.sum() > 20
    film = field.intensity[~field.particles & ~field.vacuum].mean()
    return float(1.0 - field.intensity[field.particles].mean() / film)


def test_heavier_or_thicker_particles_give_more_contrast() -> None:
    base = {"supports": {"film": 1.0}, "particle_count": (3, 3)}
    gold = _particle_contrast(_recipe(**base, particle_span_px=(20.0, 20.0)))
    silica = _particle_contrast(
        _recipe(**base, particle_span_px=(20.0, 20.0), materials={"SiO2": 1.0})
    )
    thick_gold = _particle_contrast(_recipe(**base, particle_span_px=(40.0, 40.0)))
    assert silica > 0.0
    assert gold > 2.0 * silica
    assert thick_gold > gold


def _rim_fringe(defocus_nm: float) -> float:
    recipe = _recipe(
        supports={"holey": 1.0},
        hole_radius_nm=(300.0, 300.0),
        particle_count=(0, 0),
        defocus_nm=((defocus_nm, defocus_nm, 1.0),),
    )
    field = lowmag_field(recipe, 128, np.random.default_rng(4))
    near_rim = field.vacuum & ~_far_from(field.vacuum, 2)
    assert near_rim.sum() > 50
    return float(field.intensity[near_rim].mean() - 1.0)


def test_fresnel_fringe_at_a_hole_edge_changes_sign_with_focus() -> None:
    under, over = _rim_fringe(-2000.0), _rim_fringe(2000.0)
    assert under > 0.005  # a bright fringe inside the hole when underfocused
    assert over < -0.005  # a dark one when overfocused
    assert abs(_rim_fringe(0.0)) < 0.5 * min(abs(under), abs(over))


def test_same_generator_state_same_field() -> None:
    a = lowmag_field(LOWMAG_TRAIN, 64, np.random.default_rng(11))
    b = lowmag_field(LOWMAG_TRAIN, 64, np.random.default_rng(11))
    c = lowmag_field(LOWMAG_TRAIN, 64, np.random.default_rng(12))
    np.testing.assert_array_equal(a.intensity, b.intensity)
    np.testing.assert_array_equal(a.vacuum, b.vacuum)
    assert a.settings == b.settings
    assert not np.array_equal(a.intensity, c.intensity)


def test_independent_recipe_never_draws_a_train_shape_material_or_voltage() -> None:
    assert not set(LOWMAG_INDEPENDENT.shapes) & set(LOWMAG_TRAIN.shapes)
    assert not set(LOWMAG_INDEPENDENT.materials) & set(LOWMAG_TRAIN.materials)
    assert not set(LOWMAG_INDEPENDENT.voltages_kv) & set(LOWMAG_TRAIN.voltages_kv)
    drawn: set[str] = set()
    for seed in range(4):
        field = lowmag_field(LOWMAG_INDEPENDENT, 64, np.random.default_rng(seed))
        assert field.settings["voltage_kv"] not in LOWMAG_TRAIN.voltages_kv
        for p in field.settings["particles"]:
            drawn |= {p["shape"], p["material"], p.get("shell_material", p["material"])}
    assert drawn and not drawn & (set(LOWMAG_TRAIN.shapes) | set(LOWMAG_TRAIN.materials))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"shapes": {"blob": 1.0}}, "blob"),
        ({"materials": {"Unobtainium": 1.0}}, "Unobtainium"),
        ({"pixel_size_A": (50.0, 5.0)}, "pixel_size_A"),
        ({"defocus_nm": ((-200.0, -5000.0, 1.0),)}, "defocus_nm"),
        ({"shapes": {"sphere": 0.0}}, "shapes"),
        ({"voltages_kv": ()}, "voltages_kv"),
        ({"film_thickness_nm": (-5.0, 30.0)}, "film_thickness_nm"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_recipe_is_refused_in_one_line(change: dict[str, object], named: str) -> None:
    recipe = {**_recipe().model_dump(), **change}
    with pytest.raises(ConfigError, match=named) as info:
        lowmag_field(recipe, 64, np.random.default_rng(0))
    assert "\n" not in str(info.value) and "invalid low-mag recipe" in str(info.value)


@pytest.mark.parametrize("size", [8, 5000, 64.0, True])
def test_bad_size_is_refused_in_one_line(size: object) -> None:
    with pytest.raises(ConfigError, match="size") as info:
        lowmag_field(LOWMAG_TRAIN, size, np.random.default_rng(0))  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [LOWMAG_TRAIN, LOWMAG_INDEPENDENT], ids=lambda r: r.name)
def test_many_fields_keep_the_contract(recipe: LowMagRecipe) -> None:
    supports: set[str] = set()
    flat_vacuum = 0
    for seed in range(16):
        field = lowmag_field(recipe, 256, np.random.default_rng(seed))
        settings = field.settings
        json.dumps(settings)
        assert np.isfinite(field.intensity).all() and field.intensity.min() >= 0
        assert recipe.pixel_size_A[0] <= field.pixel_size_A <= recipe.pixel_size_A[1]
        assert settings["voltage_kv"] in recipe.voltages_kv
        supports.add(str(settings["support"]))
        for p in settings["particles"]:
            assert p["shape"] in recipe.shapes and p["material"] in recipe.materials
            lo, hi = recipe.particle_span_px
            assert lo <= p["size_px"] <= hi
        reach = math.ceil(settings["reach_px"]) + 4
        far = _far_from(field.vacuum, reach)
        far[:reach] = far[-reach:] = far[:, :reach] = far[:, -reach:] = False
        if far.any():
            flat_vacuum += 1
            assert np.abs(field.intensity[far] - 1.0).max() < 1e-3
        assert not (field.vacuum & field.particles).any()
    assert supports == set(recipe.supports) and flat_vacuum >= 3
