"""``tem-acq denoise``, ``model``, ``models`` and ``bench denoise`` through the CLI entry point."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np
import pytest
import tifffile

from tem_acq.cli import main

ONEVIEW_CPE = 1 / 0.022727273404598236  # Gatan intensity calibration of the OneView frames


@pytest.fixture(scope="module")
def pkg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "fastpkg"
    assert main(["model", "new", "--fast", "--out", str(out), "--weights-dtype", "float16"]) == 0
    return out


def test_oneview_tiff_to_tiff(
    pkg: Path, oneview_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = oneview_dir / "val-0001.tif"
    out = tmp_path / "x.tif"
    assert main(["denoise", str(src), "--model", str(pkg), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "counts per electron 44 (file metadata)" in captured.err
    assert "UNTRAINED" in captured.err
    assert "denoised 1 frame(s) of 512x512" in captured.out
    raw = tifffile.imread(src)
    den = tifffile.imread(out)
    assert den.shape == raw.shape and den.dtype == np.float32
    # electrons per pixel, mean preserved: ~4.6 e-/px as the data's README says
    assert den.mean() == pytest.approx(raw.mean() / ONEVIEW_CPE, rel=1e-3)
    assert 4.0 < den.mean() < 5.2
    with tifffile.TiffFile(out) as tif:
        meta = json.loads(tif.pages[0].description)["tem_acq"]
    assert meta["package_hash"].startswith("sha256:")
    assert meta["units"] == "electrons per pixel"


def test_flag_overrides_file_calibration(
    pkg: Path, oneview_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.npy"
    src = oneview_dir / "val-0002.tif"
    args = ["denoise", str(src), "-m", str(pkg), "-o", str(out), "--counts-per-electron", "1"]
    assert main(args) == 0
    assert "--counts-per-electron overrides it" in capsys.readouterr().err
    assert np.load(out).mean() == pytest.approx(tifffile.imread(src).mean(), rel=1e-3)


def test_npy_stack_to_mrc_and_back(
    pkg: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    stack = rng.poisson(5, size=(3, 96, 130)).astype(np.int16)
    np.save(tmp_path / "in.npy", stack)
    assert (
        main(["denoise", str(tmp_path / "in.npy"), "-m", str(pkg), "-o", str(tmp_path / "out.mrc")])
        == 0
    )
    assert "using 1, so the output is in counts" in capsys.readouterr().err
    with mrcfile.open(tmp_path / "out.mrc") as mrc:
        den = np.array(mrc.data)
    assert den.shape == stack.shape and den.dtype == np.float32
    np.testing.assert_allclose(den.mean(axis=(1, 2)), stack.mean(axis=(1, 2)), rtol=1e-4)
    # MRC in, TIFF stack out
    assert (
        main(
            [
                "denoise",
                str(tmp_path / "out.mrc"),
                "-m",
                str(pkg),
                "-o",
                str(tmp_path / "again.tif"),
                "--counts-per-electron",
                "2",
            ]
        )
        == 0
    )
    assert tifffile.imread(tmp_path / "again.tif").shape == stack.shape


def test_store_in_store_and_file_out(
    pkg: Path, tmp_path: Path, metadata: Callable[..., Any]
) -> None:
    from tem_acq.store import AcquisitionWriter, FrameRecord, open_store

    meta = metadata()
    rng = np.random.default_rng(0)
    raw = (rng.poisson(4.6, size=(4, 64, 96)) * 44).astype(np.uint16)
    src = tmp_path / "run.zarr"
    with AcquisitionWriter(src, meta, (64, 96), denoised=False) as writer:
        for i, frame in enumerate(raw):
            writer.append_raw(frame, FrameRecord(stage_x_um=float(i)))
    # store -> .npy, counts per electron from the store's camera
    args = ["--path", "eager"]  # both runs on one path: identical numbers
    assert main(["denoise", str(src), "-m", str(pkg), "-o", str(tmp_path / "d.npy"), *args]) == 0
    den = np.load(tmp_path / "d.npy")
    assert den.shape == raw.shape
    np.testing.assert_allclose(den.mean(axis=(1, 2)), raw.mean(axis=(1, 2)) / 44, rtol=1e-4)
    # store -> new store: raw copied, denoised added, model provenance recorded
    out = tmp_path / "run-denoised.zarr"
    assert main(["denoise", str(src), "-m", str(pkg), "-o", str(out), *args]) == 0
    store = open_store(out)
    np.testing.assert_array_equal(store.raw[:], raw)
    assert store.denoised is not None
    np.testing.assert_array_equal(store.denoised[:], den)
    assert store.metadata.model is not None and store.metadata.model.name == "fastpkg"
    assert [row.stage_x_um for row in store.frames] == [0.0, 1.0, 2.0, 3.0]
    assert store.complete


def denoise_args(
    source: str, out: str, *extra: str, model: str | None = None
) -> Callable[[Path, str], list[str]]:
    """``tem-acq denoise`` of ``source`` into ``out`` (names in the test's folder ``d``), with
    the test's package ``p`` unless ``model`` names another folder in ``d``."""
    return lambda d, p: [
        "denoise", str(d / source), "-m", str(d / model) if model else p, "-o", str(d / out), *extra
    ]


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (denoise_args("missing.tif", "o.tif"), "does not exist"),
        (denoise_args("in.npy", "o.png"), "the output format comes from the extension"),
        (
            denoise_args("in.npy", "obj.npy"),
            "already exists; choose another --out or pass --overwrite",
        ),
        (
            denoise_args("in.npy", "in.npy", "--overwrite"),
            "an output may never be one of the command's inputs",
        ),
        (denoise_args("in.txt", "o.tif"), "supported inputs are"),
        (denoise_args("bad.tif", "o.tif"), "not a readable TIFF"),
        (denoise_args("obj.npy", "o.tif"), "not a plain numeric .npy"),
        (denoise_args("nan.npy", "o.tif"), "NaN/inf"),
        (
            denoise_args("in.npy", "o.tif", "--counts-per-electron", "0"),
            "--counts-per-electron must be > 0",
        ),
        (denoise_args("in.npy", "o.zarr"), "a .zarr output needs a store input"),
        (
            denoise_args("in.npy", "o.tif", model="nopkg"),
            "does not exist or is not a folder",
        ),
        (denoise_args("in.npy", "o.tif", "--device", "tpu"), "unknown device 'tpu'"),
    ],
)
def test_cli_errors_exit_2_with_message(
    pkg: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_args,
    message,  # type: ignore[no-untyped-def]
) -> None:
    np.save(tmp_path / "in.npy", np.ones((16, 16), np.uint16))
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(tmp_path / "nan.npy", np.full((16, 16), np.nan, np.float32))
    (tmp_path / "in.txt").write_text("1 2 3")
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    assert main(make_args(tmp_path, str(pkg))) == 2
    err = capsys.readouterr().err
    assert err.startswith("tem-acq denoise: error: ")
    assert message in err


def test_model_commands(
    pkg: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TEM_ACQ_MODELS", str(pkg.parent))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "fastpkg" in out and "UNTRAINED" in out and "tu-tf_mobilenetv3_small_minimal_100" in out
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["packages"][0]["name"] == "fastpkg"
    assert main(["model", "info", "fastpkg"]) == 0
    assert "parameters 553,673; weights float16" in capsys.readouterr().out
    # a name load resolves through TEM_ACQ_MODELS
    np.save(tmp_path / "in.npy", np.ones((32, 32), np.uint16))
    assert (
        main(["denoise", str(tmp_path / "in.npy"), "-m", "fastpkg", "-o", str(tmp_path / "o.npy")])
        == 0
    )
    # model new errors and rehash
    assert main(["model", "new", "--out", str(pkg)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["model", "new", "--encoder", "nope", "--out", str(tmp_path / "n")]) == 2
    assert "unknown encoder 'nope'" in capsys.readouterr().err
    assert main(["model", "new", "--encoder", "resnet18", "--out", str(tmp_path / "r18")]) == 0
    assert "Unet(resnet18, depth 5, decoder 256,128,64,32,16)" in capsys.readouterr().out
    assert main(["model", "rehash", str(tmp_path / "r18")]) == 0
    assert main(["model", "info", str(tmp_path / "missing")]) == 2


def test_models_lists_nothing_helpfully(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TEM_ACQ_MODELS", str(tmp_path / "none"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    from tem_acq.denoise.package import shipped_models_dir

    if shipped_models_dir().is_dir() and any(shipped_models_dir().glob("*/card.json")):
        pytest.skip("packages are shipped")
    assert main(["models"]) == 0
    assert "no model packages found" in capsys.readouterr().out


def test_bench_denoise_json(capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "bench",
        "denoise",
        "--size",
        "64",
        "--repeats",
        "2",
        "--no-compile",
        "--json",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["size"] == 64 and r["device"] == "cpu"
    assert r["eager"]["p50_ms"] > 0 and r["best"]["p95_ms"] >= r["best"]["p50_ms"]
    assert r["speedup"] > 0
    assert r["best_path"].startswith("cpu ")
    assert r["paths_tried"][0]["name"] == "eager"
    assert main(["bench", "denoise", "--size", "0"]) == 2
