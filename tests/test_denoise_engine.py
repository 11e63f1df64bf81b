"""The inference engine: shapes, padding, tiling, batching, paths, mean, bad inputs."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tem_acq.denoise import (
    FAST_PATH_TOLERANCE,
    DoseNormalization,
    build_model,
    dose_scale,
    from_network,
    load_model,
    save_package,
    to_network,
)
from tem_acq.denoise.tiling import axis_plan, ramp
from tem_acq.errors import TemAcqError


@pytest.fixture(scope="module")
def eager(fast_pkg: Path):  # type: ignore[no-untyped-def]
    return load_model(fast_pkg, "cpu", path="eager")


def _poisson(shape: tuple[int, ...], dose: float = 5.0, cpe: float = 44.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(shape[-2]), np.arange(shape[-1]), indexing="ij")
    clean = 1 + 0.5 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    return (rng.poisson(dose * clean, size=shape) * cpe).astype(np.uint16)


def _close(a: np.ndarray, b: np.ndarray, rel: float = 1e-5) -> None:
    """Equal up to float rounding, relative to the output's magnitude (untrained outputs are
    large, and batch size changes the order of float sums)."""
    assert np.abs(a - b).max() <= rel * np.abs(b).max()


def test_odd_sizes_keep_shape_and_dtype(eager) -> None:  # type: ignore[no-untyped-def]
    frame = _poisson((509, 611))
    out = eager.denoise(frame, counts_per_electron=44.0)
    assert out.shape == (509, 611) and out.dtype == np.float32
    assert np.isfinite(out).all()
    stack = eager.denoise(np.stack([frame, frame[::-1]]), counts_per_electron=44.0)
    assert stack.shape == (2, 509, 611)
    _close(stack[0], out)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float16, np.float64])
def test_any_numeric_dtype(eager, dtype) -> None:  # type: ignore[no-untyped-def]
    frame = (_poisson((64, 80), cpe=1.0) % 120).astype(dtype)
    out = eager.denoise(frame)
    ref = eager.denoise(frame.astype(np.float32))
    assert out.dtype == np.float32
    _close(out, ref)


def test_tiny_frames_pad_by_replication(eager) -> None:  # type: ignore[no-untyped-def]
    out = eager.denoise(np.full((3, 5), 7, np.uint16))
    assert out.shape == (3, 5)
    assert out.mean() == pytest.approx(7.0, rel=1e-5)


def test_mean_preserved_in_electrons(eager) -> None:  # type: ignore[no-untyped-def]
    # Built into the normalisation: each frame's mean electrons per pixel is kept.
    stack = np.stack([_poisson((128, 160), dose=d, seed=i) for i, d in enumerate((1, 5, 20))])
    out = eager.denoise(stack, counts_per_electron=44.0)
    e = stack.astype(np.float64) / 44.0
    np.testing.assert_allclose(out.mean(axis=(1, 2)), e.mean(axis=(1, 2)), rtol=1e-4)
    assert out.mean() == pytest.approx(e.mean(), rel=0.01)


def test_counts_per_electron_only_changes_units(eager) -> None:  # type: ignore[no-untyped-def]
    frame = _poisson((96, 96))
    in_counts = eager.denoise(frame)
    in_electrons = eager.denoise(frame, counts_per_electron=44.0)
    _close(in_counts / 44.0, in_electrons)
    per_frame = eager.denoise_batch([frame, frame], [44.0, 22.0])
    _close(per_frame[1], 2 * per_frame[0])


def test_batching_equals_one_by_one(fast_pkg: Path) -> None:
    stack = np.stack([_poisson((96, 128), seed=i) for i in range(5)])
    one = load_model(fast_pkg, "cpu", path="eager", batch_size=1).denoise(stack)
    four = load_model(fast_pkg, "cpu", path="eager", batch_size=4)
    done: list[int] = []
    batched = four.denoise(stack, progress=done.append)
    _close(batched, one)
    assert done == [4, 5]
    _close(four.denoise_batch(list(stack)), one)


def test_tiny_trained_model_learns_with_the_shared_normalisation(tmp_path: Path) -> None:
    # A few dozen L1 steps on synthetic Poisson pairs through to_network/from_network (torch),
    # then save -> load -> denoise: the loaded model reproduces the trained one exactly and the
    # stack's mean matches the input's within 1 %.
    torch.manual_seed(0)
    model = build_model(
        {"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]}
    ).train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    yy, xx = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    losses = []
    for _step in range(30):
        phase = rng.uniform(0, 6, size=(4, 1, 1))
        clean = 1 + 0.5 * np.sin(xx / 6.0 + phase) * np.cos(yy / 9.0)
        noisy = torch.from_numpy(rng.poisson(5 * clean).astype(np.float32))
        target_e = torch.from_numpy((5 * clean).astype(np.float32))  # expected electrons
        s = dose_scale(noisy)
        x, t = to_network(noisy, s), to_network(target_e, s)
        loss = (model(x[:, None])[:, 0] - t).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    model.eval()
    save_package(model, tmp_path / "tiny", trained=False)
    den = load_model(tmp_path / "tiny", "cpu", path="eager")
    test = rng.poisson(5 * (1 + 0.5 * np.sin(xx / 6.0) * np.cos(yy / 9.0)), size=(3, 64, 64))
    out = den.denoise(test.astype(np.uint16))
    with torch.inference_mode():
        e = torch.from_numpy(test.astype(np.float32))
        s = dose_scale(e)
        x = to_network(e, s)
        ref = from_network(model(x[:, None])[:, 0], s, DoseNormalization(), network_input=x)
    _close(out, ref.numpy())
    assert out.mean() == pytest.approx(test.mean(), rel=0.01)


# --- tiling ----------------------------------------------------------------------------------


def test_axis_plan_covers_with_overlap() -> None:
    for n, tile, ov, m in [(4096, 2048, 448, 16), (1504, 1024, 288, 16), (8192, 1024, 96, 32)]:
        t, starts = axis_plan(n, tile, ov, m)
        assert t <= tile and t % m == 0
        assert starts[0] == 0 and starts[-1] + t == n
        assert all(s % m == 0 for s in starts)
        assert all(b - a <= t - ov for a, b in itertools.pairwise(starts))
    assert axis_plan(512, 1024, 128, 16) == (512, [0])


def test_ramp_weights_are_positive_where_tiles_meet() -> None:
    w = ramp(100, True, True, 40, 10, "cpu")
    assert float(w[:10].max()) == 0.0 and float(w[-10:].max()) == 0.0
    assert float(w[30:70].min()) == 1.0
    assert float(ramp(100, False, False, 40, 10, "cpu").min()) == 1.0


def test_tiled_equals_untiled(fast_pkg: Path) -> None:
    frame = _poisson((1500, 1700), seed=3)
    whole = load_model(fast_pkg, "cpu", path="eager", tile_size=2048)
    tiled = load_model(fast_pkg, "cpu", path="eager", tile_size=1024)
    a = whole.denoise(frame, counts_per_electron=44.0)
    b = tiled.denoise(frame, counts_per_electron=44.0)
    assert tiled.receptive_radius is not None
    assert tiled.tile_overlap >= 2 * tiled.receptive_radius
    # float rounding only: relative to the output's range
    assert np.abs(a - b).max() <= 1e-4 * (a.max() - a.min())


def test_tiled_with_small_overlap_has_no_seams(fast_pkg: Path) -> None:
    # A user-chosen overlap below the receptive field: not exact, but blended (no jumps).
    frame = _poisson((1024, 1024), seed=4)
    a = load_model(fast_pkg, "cpu", path="eager").denoise(frame)
    b = load_model(fast_pkg, "cpu", path="eager", tile_size=512, tile_overlap=64).denoise(frame)
    assert np.abs(a - b).mean() < 0.05 * np.abs(a).mean()


@pytest.mark.slow  # 19-40 s on the shared 2-core machine (2 x 2 tiles of 2208 px)
def test_4096_frame(fast_pkg: Path) -> None:
    den = load_model(fast_pkg, "cpu", path="eager")
    frame = _poisson((4096, 4096), seed=5)
    t0 = time.perf_counter()
    out = den.denoise(frame, counts_per_electron=44.0)
    elapsed = time.perf_counter() - t0
    assert out.shape == (4096, 4096) and np.isfinite(out).all()
    assert den._net_shape(4096, 4096, 1)[-2:] == (2208, 2208)
    assert out.mean() == pytest.approx(frame.mean() / 44.0, rel=1e-4)
    assert elapsed < 120  # 2 x 2 tiles of 2208 px on the CPU


# --- paths -------------------------------------------------------------------------------------


def test_auto_path_is_checked_and_reported(fast_pkg: Path) -> None:
    den = load_model(fast_pkg, "cpu")
    assert "pending" in den.path_name
    den.warmup((256, 256))
    assert den.path_name.startswith("cpu ")
    names = [t.name for t in den.selection]
    assert names[0] == "eager" and "channels_last" in names
    active = den.path_name.split(" ", 1)[1]
    trial = next(t for t in den.selection if t.name == active)
    assert trial.ok
    assert trial.rel_rms <= FAST_PATH_TOLERANCE["rel_rms"]
    for t in den.selection:
        if not t.ok:
            assert t.note  # every rejection says why
    frame = _poisson((256, 256))
    ref = load_model(fast_pkg, "cpu", path="eager").denoise(frame)
    out = den.denoise(frame)
    rms = np.sqrt(np.mean((out - ref) ** 2)) / np.sqrt(np.mean(ref**2))
    assert rms <= FAST_PATH_TOLERANCE["rel_rms"]


def test_forced_path_that_fails_the_check_falls_back_to_eager(fast_pkg: Path) -> None:
    den = load_model(fast_pkg, "cpu", path="bf16")
    den.warmup((128, 128))
    trial = next(t for t in den.selection if t.name.startswith("bf16"))
    if trial.ok:
        assert den.path_name == "cpu bf16+channels_last"
    else:
        assert den.path_name == "cpu eager"
        assert "differs from eager fp32" in trial.note or "no native bf16" in trial.note


def test_fp16_path_does_not_exist_on_cpu(fast_pkg: Path) -> None:
    den = load_model(fast_pkg, "cpu", path="fp16")
    den.warmup((64, 64))
    assert den.path_name == "cpu eager"
    assert "does not exist on cpu" in den.selection[-1].note


@pytest.mark.slow
def test_compiled_path_matches_eager(fast_pkg: Path) -> None:
    den = load_model(fast_pkg, "cpu", path="channels_last", compile=True)
    den.warmup((1, 256, 256))
    trial = den.selection[-1]
    assert trial.name == "channels_last+compile"
    assert trial.ok, trial.note
    frame = _poisson((256, 256))
    ref = load_model(fast_pkg, "cpu", path="eager").denoise(frame)
    _close(den.denoise(frame), ref, 1e-4)
    # another shape falls back to the uncompiled path instead of recompiling
    other = _poisson((128, 128))
    _close(den.denoise(other), load_model(fast_pkg, "cpu", path="eager").denoise(other), 1e-4)


@pytest.mark.gpu
def test_cuda_fp16_path(fast_pkg: Path) -> None:
    den = load_model(fast_pkg, "cuda")
    frame = _poisson((512, 512))
    den.warmup((8, 512, 512))
    out = den.denoise(np.stack([frame] * 8))
    ref = load_model(fast_pkg, "cpu", path="eager").denoise(frame)
    rms = np.sqrt(np.mean((out[0] - ref) ** 2)) / np.sqrt(np.mean(ref**2))
    assert rms <= FAST_PATH_TOLERANCE["rel_rms"]


# --- bad input: one clear error each ----------------------------------------------------------


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros(10), r"expected one frame \(y, x\) or a stack \(n, y, x\)"),
        (np.zeros((1, 2, 8, 8)), r"got an array of shape \(1, 2, 8, 8\)"),
        (np.zeros((0, 8, 8)), "frames are empty"),
        (np.zeros((8, 8), bool), "integer or floating-point counts, got dtype bool"),
        (np.zeros((8, 8), complex), "got dtype complex128"),
        (np.array([["a"]]), "got dtype <U1"),
    ],
)
def test_bad_frames(eager, frames, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TemAcqError, match=message):
        eager.denoise(frames)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values(eager, bad) -> None:  # type: ignore[no-untyped-def]
    stack = np.ones((3, 16, 16), np.float32)
    stack[2, 5, 7] = bad
    with pytest.raises(
        TemAcqError, match=r"1 NaN/inf value\(s\), first in frame 2 at pixel \(5, 7\)"
    ):
        eager.denoise(stack)


@pytest.mark.parametrize("cpe", [0.0, -44.0, np.nan, np.inf])
def test_bad_counts_per_electron(eager, cpe) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TemAcqError, match="counts_per_electron must be a finite number > 0"):
        eager.denoise(np.ones((8, 8)), counts_per_electron=cpe)


def test_batch_of_mixed_shapes(eager) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TemAcqError, match="must share one shape"):
        eager.denoise_batch([np.ones((8, 8)), np.ones((8, 9))])
    with pytest.raises(TemAcqError, match="frames are empty"):
        eager.denoise_batch([])


def test_counts_per_electron_per_frame_length(eager) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TemAcqError, match=r"one per frame \(3\), got shape \(2,\)"):
        eager.denoise(np.ones((3, 8, 8)), counts_per_electron=[1.0, 2.0])


def test_bad_device_and_options(fast_pkg: Path) -> None:
    with pytest.raises(TemAcqError, match="unknown device 'gpu0'"):
        load_model(fast_pkg, "gpu0")
    with pytest.raises(TemAcqError, match="'mps' is not supported"):
        load_model(fast_pkg, "mps")
    if not torch.cuda.is_available():
        with pytest.raises(TemAcqError, match="CUDA is not available; use cpu"):
            load_model(fast_pkg, "cuda:1")
    with pytest.raises(TemAcqError, match="unknown path 'turbo'"):
        load_model(fast_pkg, "cpu", path="turbo")  # type: ignore[arg-type]
    with pytest.raises(TemAcqError, match="batch_size must be >= 1"):
        load_model(fast_pkg, "cpu", batch_size=-1)
    with pytest.raises(TemAcqError, match="tile_overlap"):
        load_model(fast_pkg, "cpu", tile_size=512, tile_overlap=400)
    den = load_model(fast_pkg, "cpu", path="eager")
    with pytest.raises(TemAcqError, match="warmup shape must be"):
        den.warmup((512,))


@pytest.mark.parametrize("shape", [(96, 96), (64, 96)])
def test_tta_output_does_not_depend_on_orientation(fast_pkg: Path, shape: tuple[int, int]) -> None:
    # With tta the output of a flipped/rotated frame is the flipped/rotated output (all 8
    # transforms on a square frame, the 4 that keep the shape otherwise); without it an
    # (untrained) network is not equivariant.
    frame = _poisson(shape, seed=4)
    tta = load_model(fast_pkg, "cpu", path="eager", tta=True)
    plain = load_model(fast_pkg, "cpu", path="eager")
    assert tta.path_name.endswith("+tta") and "tta" in repr(tta)
    out = tta.denoise(frame, counts_per_electron=44.0)
    ref = plain.denoise(frame, counts_per_electron=44.0)
    transforms = [np.flipud, np.fliplr, lambda a: np.rot90(a, 2)]
    if shape[0] == shape[1]:
        transforms += [np.rot90, np.transpose, lambda a: np.rot90(a, -1)]
    spread = 0.0
    for t in transforms:
        turned = np.ascontiguousarray(t(frame))
        _close(tta.denoise(turned, counts_per_electron=44.0), np.ascontiguousarray(t(out)))
        spread = max(
            spread, float(np.abs(plain.denoise(turned, counts_per_electron=44.0) - t(ref)).max())
        )
    assert spread > 1e-3 * np.abs(ref).max()
    assert abs(out.mean() - ref.mean()) <= 0.01 * abs(ref.mean())


def test_one_options_model_passes_through(fast_pkg: Path) -> None:
    from tem_acq.denoise import DenoiseOptions, Denoiser, load_package
    from tem_acq.errors import ConfigError

    options = DenoiseOptions(device="cpu", path="eager", batch_size=2, tile_size=1024, tta=True)
    den = load_model(fast_pkg, options=options)
    assert den.options == options
    assert (den.batch_size, den.tile_size, den.tta) == (2, 1024, True)
    assert den.path_name == "cpu eager+tta"
    # keywords change the fields they name; the positional device wins over the options'
    same = load_model(fast_pkg, "cpu", path="eager", batch_size=2, tile_size=1024, tta=True)
    assert same.options == options
    frame = _poisson((64, 64))
    np.testing.assert_array_equal(den.denoise(frame), same.denoise(frame))
    plain = Denoiser(load_package(fast_pkg), options=options, tta=False)
    assert plain.options == options.model_copy(update={"tta": False}) and not plain.tta
    assert DenoiseOptions.from_settings(options, batch_size=4).path == "eager"
    with pytest.raises(ConfigError, match="denoiser options: bach_size: Extra inputs"):
        load_model(fast_pkg, "cpu", bach_size=4)
    with pytest.raises(ConfigError, match="denoiser options: tta: Input should be a valid"):
        load_model(fast_pkg, "cpu", tta="sometimes")
