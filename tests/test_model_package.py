"""Model packages: format, round trip, name resolution and every broken-package error."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch

import tem_acq
from tem_acq.denoise import (
    FAST_CONFIG,
    build_model,
    compute_package_hash,
    load_model,
    load_package,
    new_package,
    rehash_package,
    resolve_package,
    save_package,
)
from tem_acq.denoise.card import ModelCard
from tem_acq.errors import ModelPackageError

REPO = Path(__file__).resolve().parents[1]


def _copy(src: Path, tmp_path: Path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _frames(n: int = 2, shape: tuple[int, int] = (96, 128)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.poisson(5 * 44, size=(n, *shape)).astype(np.uint16)


def test_layout_and_card(fast_pkg: Path) -> None:
    assert sorted(p.name for p in fast_pkg.iterdir()) == [
        "card.json",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((fast_pkg / "config.json").read_text())
    assert config["_model_class"] == "Unet"
    assert config["encoder_name"] == FAST_CONFIG["encoder_name"]
    assert config["encoder_weights"] is None
    card = ModelCard.model_validate_json((fast_pkg / "card.json").read_text())
    assert card.schema_version == 1
    assert card.trained is False and card.quality == []
    assert card.architecture_kwargs["encoder_depth"] == 4
    assert card.architecture_kwargs["decoder_channels"] == [64, 32, 16, 16]
    assert card.normalization.kind == "dose"
    assert card.package_hash == compute_package_hash(fast_pkg)
    assert "UNTRAINED" in card.summary()


def test_fast_config_is_a_credible_network(fast_pkg: Path) -> None:
    pkg = load_package(fast_pkg)
    n_params = sum(p.numel() for p in pkg.model.parameters())
    assert n_params >= 100_000
    from tem_acq.denoise.tiling import receptive_radius

    radius = receptive_radius(pkg.model, 16)
    assert radius is not None and 64 <= radius < 512  # local but wide enough for context


def test_round_trip_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model({**FAST_CONFIG})
    save_package(model, tmp_path / "a", trained=False)
    frames = _frames()
    d1 = load_model(tmp_path / "a", "cpu", path="eager").denoise(frames, counts_per_electron=44)
    d2 = load_model(tmp_path / "a", "cpu", path="eager").denoise(frames, counts_per_electron=44)
    np.testing.assert_array_equal(d1, d2)
    # the in-memory model gives the same network output as the loaded one
    x = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        np.testing.assert_array_equal(
            model.eval()(x).numpy(), load_package(tmp_path / "a").model(x).numpy()
        )


def test_same_seed_same_weights(tmp_path: Path) -> None:
    a = new_package(tmp_path / "a", fast=True, seed=7)
    b = new_package(tmp_path / "b", fast=True, seed=7)
    c = new_package(tmp_path / "c", fast=True, seed=8)
    assert a.package_hash == b.package_hash != c.package_hash


def test_fp16_weights_load_into_fp32(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model({**FAST_CONFIG})
    save_package(model, tmp_path / "f32", trained=False)
    card = save_package(model, tmp_path / "f16", trained=False, weights_dtype="float16")
    assert card.weights_dtype == "float16"
    size32 = (tmp_path / "f32" / "model.safetensors").stat().st_size
    size16 = (tmp_path / "f16" / "model.safetensors").stat().st_size
    assert size16 < 0.55 * size32
    pkg = load_package(tmp_path / "f16")
    assert all(p.dtype == torch.float32 for p in pkg.model.parameters())
    frames = _frames(1)
    a = load_model(tmp_path / "f32", "cpu", path="eager").denoise(frames)
    b = load_model(tmp_path / "f16", "cpu", path="eager").denoise(frames)
    assert np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(a**2)) < 1e-2


def test_smp_own_loader_reads_our_package(fast_pkg: Path) -> None:
    # The folder is what smp's save_pretrained writes: smp.from_pretrained loads it too.
    model = smp.from_pretrained(str(fast_pkg)).eval()
    ours = load_package(fast_pkg).model
    x = torch.rand(1, 1, 64, 64)
    with torch.inference_mode():
        np.testing.assert_allclose(model(x).numpy(), ours(x).numpy(), rtol=1e-6, atol=1e-6)


def test_no_unpickling_anywhere() -> None:
    # `grep -rn "torch.load\|pickle"` must find nothing that unpickles: every hit is prose
    # ("never unpickles") or np.load/np.save with allow_pickle=False, never a call that loads.
    out = subprocess.run(
        [
            "grep",
            "-rnF",
            "--include=*.py",
            "-e",
            "torch.load",
            "-e",
            "pickle",
            "tem_acq",
            "acquisition_hooks",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    unpickling = re.compile(
        r"torch\.load\(|pickle\.loads?\(|^\s*(import|from) (c?pickle|dill)|allow_pickle=True"
        r"|weights_only=False|Unpickler"
    )
    offending = [
        line for line in out.stdout.splitlines() if unpickling.search(line.split(":", 2)[2])
    ]
    assert offending == []


def test_new_package_refuses_to_overwrite(fast_pkg: Path) -> None:
    with pytest.raises(ModelPackageError, match="already exists"):
        new_package(fast_pkg, fast=True)


# --- names -----------------------------------------------------------------------------------


def test_names_resolve_through_search_dirs(
    fast_pkg: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEM_ACQ_MODELS", str(fast_pkg.parent))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_package("fast") == fast_pkg
    den = tem_acq.load_model("fast", device="cpu")
    assert den.card.name == "fast"
    assert den.package_hash.startswith("sha256:")
    with pytest.raises(
        ModelPackageError, match=r"no model package named 'nope'.*available: .*fast"
    ):
        resolve_package("nope")


def test_default_name_without_shipped_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEM_ACQ_MODELS", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if (REPO / "models" / "default").is_dir():
        pytest.skip("a default model is shipped")
    with pytest.raises(ModelPackageError, match="no model package named 'default'"):
        load_model("default")


def test_lazy_export_does_not_import_torch() -> None:
    code = (
        "import sys, tem_acq; assert 'torch' not in sys.modules; "
        "assert callable(tem_acq.load_model)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_openmp_threads_do_not_spin() -> None:
    # Importing the denoiser before torch makes OpenMP wait passively (unless the user chose).
    code = (
        "import os, tem_acq.denoise, torch; "
        "assert os.environ['OMP_WAIT_POLICY'] == 'PASSIVE', os.environ['OMP_WAIT_POLICY']"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env=env)
    code = "import os, tem_acq.denoise; assert os.environ['OMP_WAIT_POLICY'] == 'ACTIVE'"
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=REPO, env={**env, "OMP_WAIT_POLICY": "ACTIVE"}
    )


# --- broken packages: one clear error each -----------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelPackageError, match="does not exist or is not a folder"):
        load_package(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("card.json", "has no card.json"),
        ("config.json", "has no config.json"),
        ("model.safetensors", "has no model.safetensors"),
    ],
)
def test_missing_file(fast_pkg: Path, tmp_path: Path, name: str, message: str) -> None:
    pkg = _copy(fast_pkg, tmp_path)
    (pkg / name).unlink()
    with pytest.raises(ModelPackageError, match=message):
        load_package(pkg)


def test_truncated_weights(fast_pkg: Path, tmp_path: Path) -> None:
    pkg = _copy(fast_pkg, tmp_path)
    data = (pkg / "model.safetensors").read_bytes()
    (pkg / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelPackageError, match="damaged or truncated"):
        load_package(pkg)


def test_weights_of_another_model(fast_pkg: Path, tmp_path: Path) -> None:
    other = tmp_path / "r18"
    new_package(other, encoder="resnet18", fast=True)
    pkg = _copy(fast_pkg, tmp_path)
    shutil.copy(other / "model.safetensors", pkg / "model.safetensors")
    with pytest.raises(ModelPackageError, match=r"does not match config.json: \d+ missing"):
        load_package(pkg)


def test_weights_of_wrong_shape(fast_pkg: Path, tmp_path: Path) -> None:
    # Same keys, other widths: a package whose config was edited after training.
    pkg = _copy(fast_pkg, tmp_path)
    for name in ("config.json", "card.json"):
        doc = json.loads((pkg / name).read_text())
        target = doc if name == "config.json" else doc["architecture_kwargs"]
        target["decoder_channels"] = [64, 32, 16, 8]
        (pkg / name).write_text(json.dumps(doc))
    with pytest.raises(ModelPackageError, match="of the wrong shape"):
        load_package(pkg)


def _edit_json(path: Path, **changes: object) -> None:
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))


def test_unknown_architecture(fast_pkg: Path, tmp_path: Path) -> None:
    pkg = _copy(fast_pkg, tmp_path)
    _edit_json(pkg / "config.json", _model_class="FPN")
    with pytest.raises(ModelPackageError, match="unknown architecture 'FPN'"):
        load_package(pkg)


def test_unknown_encoder(fast_pkg: Path, tmp_path: Path) -> None:
    pkg = _copy(fast_pkg, tmp_path)
    _edit_json(pkg / "config.json", encoder_name="resnet999")
    with pytest.raises(ModelPackageError, match="unknown encoder 'resnet999'"):
        load_package(pkg)
    _edit_json(pkg / "config.json", encoder_name="tu-no_such_timm_model")
    with pytest.raises(ModelPackageError, match="unknown encoder 'tu-no_such_timm_model'"):
        load_package(pkg)
    with pytest.raises(ModelPackageError, match="unknown encoder"):
        new_package(tmp_path / "x", encoder="resnet999")


def test_not_a_one_channel_linear_unet(fast_pkg: Path, tmp_path: Path) -> None:
    pkg = _copy(fast_pkg, tmp_path)
    _edit_json(pkg / "config.json", in_channels=3)
    with pytest.raises(ModelPackageError, match="in_channels=1, classes=1"):
        load_package(pkg)
    _edit_json(pkg / "config.json", in_channels=1, no_such_argument=2)
    with pytest.raises(ModelPackageError, match="does not take: no_such_argument"):
        load_package(pkg)


def test_card_from_newer_schema(fast_pkg: Path, tmp_path: Path) -> None:
    pkg = _copy(fast_pkg, tmp_path)
    _edit_json(pkg / "card.json", schema_version=2)
    with pytest.raises(ModelPackageError, match="card schema 2, newer than this tem-acq"):
        load_package(pkg)


def test_card_pixel_sizes_in_angstrom_and_older_cards_in_nm(
    fast_pkg: Path, tmp_path: Path
) -> None:
    doc = json.loads((fast_pkg / "card.json").read_text())
    assert "pixel_size_A_range" in doc and "pixel_size_nm_range" not in doc
    pkg = _copy(fast_pkg, tmp_path)
    del doc["pixel_size_A_range"]
    (pkg / "card.json").write_text(json.dumps({**doc, "pixel_size_nm_range": [0.07, 3.0]}))
    assert load_package(pkg).card.pixel_size_A_range == (0.7, 30.0)  # x10, no float dust
    rehash_package(pkg)  # written back with the new field, same schema
    again = json.loads((pkg / "card.json").read_text())
    assert again["pixel_size_A_range"] == [0.7, 30.0] and "pixel_size_nm_range" not in again
    assert again["schema_version"] == 1
    (pkg / "card.json").write_text(json.dumps({**doc, "pixel_size_nm_range": None}))
    assert load_package(pkg).card.pixel_size_A_range is None
    both = {**doc, "pixel_size_nm_range": [0.1, 1.0], "pixel_size_A_range": [1.0, 10.0]}
    (pkg / "card.json").write_text(json.dumps(both))
    with pytest.raises(ModelPackageError, match="both pixel_size_nm_range"):
        load_package(pkg)
    (pkg / "card.json").write_text(json.dumps({**doc, "pixel_size_nm_range": [3.0, 0.1]}))
    with pytest.raises(ModelPackageError, match="pixel_size_A_range must satisfy"):
        load_package(pkg)
    for shipped in ("default", "fast"):
        card = load_package(REPO / "models" / shipped).card  # re-written, still verified
        assert card.pixel_size_A_range == (0.1, 50.0)


def test_invalid_card(fast_pkg: Path, tmp_path: Path) -> None:
    pkg = _copy(fast_pkg, tmp_path)
    _edit_json(pkg / "card.json", percentile_stretch=80)
    with pytest.raises(ModelPackageError, match="percentile_stretch: Extra inputs"):
        load_package(pkg)
    _edit_json(pkg / "card.json", percentile_stretch=None)
    doc = json.loads((pkg / "card.json").read_text())
    del doc["percentile_stretch"]
    doc["trained"] = True  # trained without provenance
    (pkg / "card.json").write_text(json.dumps(doc))
    with pytest.raises(ModelPackageError, match="needs training_data"):
        load_package(pkg)
    (pkg / "card.json").write_text("{not json")
    with pytest.raises(ModelPackageError, match="not valid JSON"):
        load_package(pkg)
    (pkg / "card.json").write_text('{"name": "x"}')
    with pytest.raises(ModelPackageError, match="no integer schema_version"):
        load_package(pkg)


def test_invalid_config_json(fast_pkg: Path, tmp_path: Path) -> None:
    pkg = _copy(fast_pkg, tmp_path)
    (pkg / "config.json").write_text("[1, 2")
    with pytest.raises(ModelPackageError, match=r"config\.json is not valid JSON"):
        load_package(pkg)


def test_card_and_config_disagree(fast_pkg: Path, tmp_path: Path) -> None:
    pkg = _copy(fast_pkg, tmp_path)
    doc = json.loads((pkg / "card.json").read_text())
    doc["encoder"] = "resnet18"
    (pkg / "card.json").write_text(json.dumps(doc))
    with pytest.raises(ModelPackageError, match="describe different models"):
        load_package(pkg)


def test_weights_dtype_mismatch(fast_pkg: Path, tmp_path: Path) -> None:
    pkg = _copy(fast_pkg, tmp_path)
    _edit_json(pkg / "card.json", weights_dtype="float16")
    with pytest.raises(ModelPackageError, match=r"float32 weights but card\.json says float16"):
        load_package(pkg)


def test_changed_files_are_detected_and_rehash_accepts_them(fast_pkg: Path, tmp_path: Path) -> None:
    pkg = _copy(fast_pkg, tmp_path)
    config = json.loads((pkg / "config.json").read_text())
    (pkg / "config.json").write_text(json.dumps(config, indent=4))  # same model, other bytes
    with pytest.raises(ModelPackageError, match=r"changed since card\.json was written"):
        load_package(pkg)
    card = rehash_package(pkg)
    assert load_package(pkg).package_hash == card.package_hash


def test_saved_packages_are_readable_by_other_users(tmp_path: Path) -> None:
    import os
    import stat

    out = tmp_path / "shared-model"
    new_package(out, fast=True)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask


def test_wheels_carry_the_shipped_models_where_they_are_looked_up() -> None:
    # pyproject's wheel force-include puts models/ at the folder shipped_models_dir prefers;
    # from a source checkout (no such folder) it is the repository's models/.
    import tomllib

    from tem_acq.denoise.package import WHEEL_MODELS_DIR, shipped_models_dir

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    include = cfg["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert include == {"models": f"tem_acq/{WHEEL_MODELS_DIR}"}
    assert not (root / "tem_acq" / WHEEL_MODELS_DIR).exists()
    assert shipped_models_dir() == root / "models"


@pytest.mark.parametrize("name", ["default", "fast"])
def test_shipped_packages_are_small_and_carry_their_quality(name: str) -> None:
    folder = REPO / "models" / name
    if not folder.is_dir():
        pytest.skip(f"models/{name} is not shipped in this checkout")
    size = sum(p.stat().st_size for p in folder.iterdir())
    assert size < 10 * 2**20, f"models/{name} is {size / 2**20:.1f} MiB (keep packages < 10 MB)"
    pkg = load_package(folder)  # the hash verifies
    assert pkg.card.trained and pkg.card.weights_dtype == "float16"
    rows = {(q.image_kind, q.detector, q.metric) for q in pkg.card.quality
            if q.dose_e_per_px == 5.0}
    for kind in ("low magnification", "atomic resolution, uncorrected"):
        for det in ("counting", "integrating"):
            for metric in ("psnr_db", "ssim", "flip_max_db", "psnr_db_tta", "flip_max_db_tta"):
                assert (kind, det, metric) in rows
