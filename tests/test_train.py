"""Training: config, data layer (normalisation, registration, split, crops), loop, checkpoints."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tem_acq.denoise import dose_scale, load_package
from tem_acq.denoise.dihedral import dihedral, inverse_dihedral
from tem_acq.errors import TemAcqError
from tem_acq.pairs import PairArrays, concatenate, simulate_pairs
from tem_acq.registration import align_to_low, border_for, phase_correlation_shift, shift_image
from tem_acq.train import CropSampler, TrainConfig, prepare, split_by_field, train

#: The smallest useful training run: fast architecture, 32 px crops, a handful of steps.
TINY = {
    "fast": True,
    "crop": 32,
    "batch_size": 2,
    "max_steps": 4,
    "warmup_steps": 1,
    "val_every": 2,
    "checkpoint_every": 2,
    "val_fraction": 0.34,
    "val_max_frames": 2,
    "num_threads": 2,
    "precision": "fp32",  # bf16 autocast costs more than it saves on 32 px crops
}


@pytest.fixture(scope="module")
def pairs() -> PairArrays:
    return simulate_pairs(
        "nanoparticles", "counting", n_fields=3, short_doses=(2.0, 5.0), size=64, seed=3,
        max_shift_px=1.5,
    )


# --- config ------------------------------------------------------------------------------------


def test_config_defaults_are_the_papers() -> None:
    cfg = TrainConfig()
    assert cfg.model_kwargs["encoder_name"] == "resnet18"
    assert (cfg.lr, cfg.batch_size, cfg.effective_loss) == (1e-4, 4, "l1")
    assert TrainConfig(mode="noise2noise").effective_loss == "l2"
    assert TrainConfig(fast=True).encoder_depth == 4


def test_config_depth_and_decoder_widths() -> None:
    # the shipped default's compact form: the paper's widths of the finest four levels
    cfg = TrainConfig(encoder="tu-resnet18", depth=4, crop=128)
    assert cfg.model_kwargs == {
        "encoder_name": "tu-resnet18", "encoder_depth": 4, "decoder_channels": [128, 64, 32, 16]
    }
    assert cfg.encoder_depth == 4
    assert TrainConfig(depth=3, decoder_channels=(32, 16, 8), crop=64).model_kwargs[
        "decoder_channels"] == [32, 16, 8]
    with pytest.raises(ValidationError, match="one width per level"):
        TrainConfig(depth=3, decoder_channels=(16, 8))
    with pytest.raises(ValidationError, match="multiple of 8"):
        TrainConfig(depth=3, crop=36)


def test_config_rejects_unknown_and_bad_fields(tmp_path: Path) -> None:
    bad = tmp_path / "train.yaml"
    bad.write_text("crop: 100\nlearning_rate: 0.1\n")
    with pytest.raises(TemAcqError) as exc:
        TrainConfig.from_yaml(bad)
    assert "learning_rate: Extra inputs are not permitted" in str(exc.value)
    with pytest.raises(TemAcqError, match="multiple of 32"):
        TrainConfig.from_mapping({"crop": 100})
    with pytest.raises(TemAcqError, match="does not exist"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")
    with pytest.raises(TemAcqError, match="max_steps or epochs"):
        TrainConfig.from_mapping({"max_steps": None})


def test_config_yaml_round_trip(tmp_path: Path) -> None:
    cfg = TrainConfig(fast=True, crop=64, loss="l1+ssim", epochs=3.0, seed=7)
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    assert TrainConfig.from_yaml(p) == cfg


def test_learning_rate_schedule() -> None:
    cfg = TrainConfig(lr=1e-3, warmup_steps=10, min_lr_fraction=0.1)
    lrs = [cfg.lr_at(s, 110) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))
    assert lrs[-1] == pytest.approx(1e-4, rel=0.01)
    assert TrainConfig(schedule="constant", warmup_steps=0).lr_at(50, 100) == 1e-4
    assert TrainConfig(max_steps=1000, epochs=2, batch_size=4).total_steps(10) == 5


# --- data --------------------------------------------------------------------------------------


def test_pair_arrays_validate_shapes() -> None:
    low = np.zeros((2, 16, 16), np.uint16)
    with pytest.raises(TemAcqError, match="high has shape"):
        PairArrays(low, np.zeros((2, 8, 8)), 1.0, 5.0, 1000.0, [0, 1])
    with pytest.raises(TemAcqError, match="one per pair"):
        PairArrays(low, None, [1.0, 1.0, 1.0], 5.0, 1000.0, [0, 1])
    with pytest.raises(TemAcqError, match="counts_per_electron"):
        PairArrays(low, None, 0.0, 5.0, 1000.0, [0, 1])


def test_simulated_pairs_pick_fields_with_particles() -> None:
    plain = simulate_pairs("atomic", "counting", n_fields=3, size=64, seed=7)
    rich = simulate_pairs(
        "atomic", "counting", n_fields=3, size=64, seed=7, min_particle_fraction=0.3
    )
    assert plain.particles is not None and rich.particles is not None
    assert rich.particles.shape == rich.low.shape and rich.particles.dtype == bool
    assert rich.particles.mean(axis=(1, 2)).min() >= 0.3
    assert plain.particles.mean() < rich.particles.mean()
    assert plain.subset([0]).particles.shape == (1, 64, 64)
    assert concatenate([plain, rich]).particles.shape == (6, 64, 64)


def test_simulated_shift_sign_matches_phase_correlation() -> None:
    # atomic fields: structure everywhere, so the correlation peak is sharp
    p = simulate_pairs("atomic", "counting", n_fields=2, size=64, seed=5, max_shift_px=2.0)
    assert p.high is not None and p.truth is not None and p.shift is not None
    for i in range(2):
        measured = phase_correlation_shift(p.truth[i], p.high[i])
        np.testing.assert_allclose(measured, p.shift[i], atol=0.2)


def test_shift_image_and_registration() -> None:
    # a band-limited periodic image: the Fourier shift is exact
    yy, xx = np.mgrid[:64, :64].astype(float)

    def wave(dy: float, dx: float) -> np.ndarray:
        return (
            1.0
            + 0.3 * np.sin(2 * np.pi * 3 * (xx - dx) / 64)
            + 0.2 * np.cos(2 * np.pi * 5 * (yy - dy) / 64 + 2 * np.pi * 2 * (xx - dx) / 64)
        )

    img = wave(0, 0)
    moved = shift_image(img, 2.3, -1.6)  # out(y, x) = img(y - dy, x - dx)
    np.testing.assert_allclose(moved, wave(2.3, -1.6), atol=1e-5)
    # align_to_low undoes a shift recorded as phase_correlation_shift(low, high) returns it
    np.testing.assert_allclose(align_to_low(moved, (2.3, -1.6), "fourier"), img, atol=1e-5)
    rolled = np.roll(img, (2, 3), (0, 1))
    np.testing.assert_allclose(shift_image(img, 2, 3, "integer"), rolled, rtol=1e-6)
    np.testing.assert_allclose(align_to_low(img, (np.nan, 1.0), "fourier"), img, rtol=1e-6)
    assert border_for((0.4, -2.2), "integer") == 4
    assert border_for((0.4, -2.2), "none") == 0


def test_prepare_follows_the_dose_normalisation(pairs: PairArrays) -> None:
    data = prepare(pairs, "supervised", "fourier")
    assert data.truth is not None
    low_e = pairs.low[0].astype(np.float32) / pairs.counts_per_electron[0]
    s = float(np.asarray(dose_scale(low_e)).item())
    assert data.scale[0] == pytest.approx(s)
    np.testing.assert_allclose(data.inputs[0], low_e / s, rtol=1e-6)
    # target = long exposure rescaled to the short's dose, over the SAME scale: it matches the
    # truth (noise-free at the short's dose) to the long exposure's noise (~3 % at 1000 e-/px)
    m = int(data.border.max())
    inner = (slice(None), slice(m, -m or None), slice(m, -m or None))
    rel = np.abs(data.targets - data.truth)[inner].mean() / data.truth[inner].mean()
    assert rel < 0.05
    unregistered = prepare(pairs, "supervised", "none")
    rel_none = np.abs(unregistered.targets - data.truth)[inner].mean() / data.truth[inner].mean()
    assert rel < rel_none


def test_noise2noise_pairs_shorts_of_one_field() -> None:
    p = simulate_pairs("nanoparticles", "counting", n_fields=2, short_doses=(5.0,),
                       shorts_per_dose=2, long_dose=None, size=64, seed=4)
    assert p.high is None
    with pytest.raises(TemAcqError, match="noise2noise"):
        prepare(p, "supervised", "none")
    data = prepare(p, "noise2noise", "none")
    assert len(data.inputs) == 4
    # the target of frame 0 is frame 1 (same field) in frame 0's units
    e1 = p.low[1].astype(np.float32) / p.counts_per_electron[1]
    np.testing.assert_allclose(data.targets[0], e1 / data.scale[0], rtol=1e-5)
    single = p.subset([0, 2])  # one frame per field
    with pytest.raises(TemAcqError, match="at least two short frames"):
        prepare(single, "noise2noise", "none")


def test_split_is_by_field_and_seeded() -> None:
    fields = np.repeat(np.arange(10), 3)
    tr, va = split_by_field(fields, 0.2, seed=1)
    assert set(fields[tr]).isdisjoint(fields[va])
    assert len(set(fields[va])) == 2 and len(tr) + len(va) == 30
    _, va2 = split_by_field(fields, 0.2, seed=1)
    np.testing.assert_array_equal(va, va2)
    assert len(split_by_field(np.zeros(5, int), 0.5, 0)[1]) == 0  # one field: no validation
    assert len(split_by_field(fields, 0.0, 0)[1]) == 0


def test_dihedral_group() -> None:
    a = np.arange(12.0).reshape(3, 4)
    sq = np.arange(16.0).reshape(4, 4)
    outs = {dihedral(sq, k).tobytes() for k in range(8)}
    assert len(outs) == 8
    for k in range(8):
        np.testing.assert_array_equal(inverse_dihedral(dihedral(a, k), k), a)


def test_crop_sampler_respects_borders(pairs: PairArrays) -> None:
    data = prepare(pairs, "supervised", "fourier")
    sampler = CropSampler(data, np.arange(len(pairs)), 32, True, np.random.default_rng(0))
    x, t = sampler.batch(5)
    assert x.shape == t.shape == (5, 32, 32)
    assert x.dtype == np.float32
    with pytest.raises(TemAcqError, match="no training pairs"):
        CropSampler(data, np.array([], int), 32, True, np.random.default_rng(0))


def test_concatenate_keeps_fields_apart(pairs: PairArrays) -> None:
    both = concatenate([pairs, pairs])
    assert len(both) == 2 * len(pairs)
    assert len(np.unique(both.field)) == 2 * len(np.unique(pairs.field))
    assert both.sha256() != pairs.sha256()
    with pytest.raises(TemAcqError, match="different frame sizes"):
        concatenate([pairs, simulate_pairs("nanoparticles", "counting", n_fields=1, size=32)])


# --- the loop ----------------------------------------------------------------------------------


def test_train_writes_a_loadable_package(pairs: PairArrays, tmp_path: Path) -> None:
    out = tmp_path / "m"
    seen: list[dict[str, float]] = []
    result = train(pairs, TrainConfig(**TINY), out, on_validation=seen.append)
    assert result.steps == 4 and not result.interrupted
    assert [r["step"] for r in seen] == [2.0, 4.0]
    assert math.isfinite(result.best_val_psnr_db)
    pkg = load_package(out)
    card = pkg.card
    assert card.trained and card.detectors == ["counting"]
    assert card.dose_range_e_per_px == (2.0, 5.0)
    assert card.training_data is not None
    assert card.training_data.sha256 == pairs.sha256()
    assert card.training_data.n_pairs == len(pairs)
    assert card.weights_dtype == "float16"
    record = json.loads((out / "training.json").read_text())
    assert record["config"]["crop"] == 32 and record["steps"] == 4
    assert record["val_fields"] == 1 and record["train_fields"] == 2
    # the checkpoint is JSON + safetensors only
    ckpt = result.checkpoint_dir
    assert ckpt is not None
    assert sorted(p.name for p in ckpt.iterdir()) == ["state.json", "state.safetensors"]
    # an existing package or checkpoint is never silently replaced
    with pytest.raises(TemAcqError, match="already exists"):
        train(pairs, TrainConfig(**TINY), out)
    with pytest.raises(TemAcqError, match="checkpoint of an earlier run"):
        train(pairs, TrainConfig(**TINY), tmp_path / "other", checkpoint_dir=ckpt)
    # --init: start from this package's weights
    tuned = train(pairs, TrainConfig(**{**TINY, "max_steps": 1, "lr": 1e-9}), tmp_path / "b",
                  init=out)
    w = "decoder.blocks.0.conv1.0.weight"
    np.testing.assert_allclose(pkg.model.state_dict()[w].numpy(),
                               load_package(tuned.package).model.state_dict()[w].numpy(),
                               atol=1e-3)
    tuned_record = json.loads((tmp_path / "b" / "training.json").read_text())
    assert tuned_record["init"]["package_hash"] == pkg.package_hash


def test_resume_continues_and_checks_config(pairs: PairArrays, tmp_path: Path) -> None:
    out = tmp_path / "m"
    first = train(pairs, TrainConfig(**{**TINY, "max_steps": 2}), out)
    assert first.steps == 2
    with pytest.raises(TemAcqError, match="config differs in lr"):
        train(pairs, TrainConfig(**{**TINY, "lr": 0.01}), out, resume=True)
    with pytest.raises(TemAcqError, match="pairs differ"):
        train(pairs.subset(range(len(pairs) - 1)), TrainConfig(**TINY), out, resume=True)
    resumed = train(pairs, TrainConfig(**TINY), out, resume=True)
    assert resumed.steps == 4 and len(resumed.history) == 2
    record = json.loads((out / "training.json").read_text())
    assert record["wall_s_total"] > record["wall_s"]  # both runs counted
    # resumed run == uninterrupted run (same seed, RNG and Adam state restored)
    straight = train(pairs, TrainConfig(**TINY), tmp_path / "straight")
    a, b = load_package(out).model.state_dict(), load_package(straight.package).model.state_dict()
    for k in a:
        np.testing.assert_allclose(a[k].numpy(), b[k].numpy(), atol=1e-3, err_msg=k)
    with pytest.raises(TemAcqError, match="no checkpoint"):
        train(pairs, TrainConfig(**TINY), tmp_path / "fresh", resume=True)


def test_ctrl_c_keeps_the_best_model(pairs: PairArrays, tmp_path: Path) -> None:
    def stop(rec: dict[str, float]) -> None:
        if rec["step"] == 2:
            raise KeyboardInterrupt

    result = train(pairs, TrainConfig(**{**TINY, "max_steps": 50}), tmp_path / "m",
                   on_validation=stop)
    assert result.interrupted and result.steps == 2
    assert load_package(tmp_path / "m").card.trained
    assert "interrupted" in load_package(tmp_path / "m").card.description
    assert json.loads((tmp_path / "m" / "training.json").read_text())["interrupted"]


def test_train_needs_detector_and_long_exposures(pairs: PairArrays, tmp_path: Path) -> None:
    anon = pairs.subset(range(len(pairs)))
    anon.detector = []
    with pytest.raises(TemAcqError, match="detector"):
        train(anon, TrainConfig(**TINY), tmp_path / "a")
    n2n = TrainConfig(**{**TINY, "mode": "noise2noise"})
    with pytest.raises(TemAcqError, match="at least two short frames"):
        train(pairs.subset([0, 2, 4]), n2n, tmp_path / "b")

