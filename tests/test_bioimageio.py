"""bioimage.io packages and ONNX Runtime: `tem-acq model export/import`, the `onnxruntime` path.

The export test is the one the issue asks for: `default` is exported with a real OneView frame as
its test frame, bioimage.io's own model test passes on the written package, and bioimageio.core's
prediction on *another* real frame equals tem-acq's own output within float tolerance.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from tem_acq.cli import main
from tem_acq.denoise import load_model, load_package
from tem_acq.errors import ModelPackageError

pytest.importorskip("bioimageio.core")
pytest.importorskip("onnxruntime")

#: Counts per electron of the OneView frames (Gatan calibration).
ONEVIEW_CPE = 44.0


def _oneview(oneview_dir: Path, name: str, size: int = 256) -> np.ndarray:
    from tem_acq.denoise.io import read_frames

    return read_frames(oneview_dir / name).data[:size, :size].astype(np.float32)


def test_default_exports_a_package_bioimageio_runs_like_tem_acq(
    oneview_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bioimageio.core import predict, test_model
    from bioimageio.spec.model.v0_5 import TensorId

    sample = tmp_path / "sample.npy"
    np.save(sample, _oneview(oneview_dir, "val-0001.tif"))
    out = tmp_path / "d.zip"
    code = main(["model", "export", "default", "--format", "bioimageio", "--out", str(out),
                 "--sample", str(sample), "--counts-per-electron", str(ONEVIEW_CPE)])
    said = capsys.readouterr().out
    assert code == 0 and "bioimageio.core test passed" in said
    names = set(zipfile.ZipFile(out).namelist())
    assert {"rdf.yaml", "weights.pt", "weights.torchscript.pt", "weights.onnx", "cover.png",
            "README.md", "LICENSE", "test_input.npy", "test_output.npy"} <= names
    assert "| " in zipfile.ZipFile(out).read("README.md").decode()  # the card's quality table

    assert test_model(str(out)).status == "passed"  # the written package, tested afresh
    other = _oneview(oneview_dir, "train-0002.tif")  # a frame the export never saw
    theirs = predict(model=str(out), inputs=other[None, None])
    got = np.asarray(theirs.members[TensorId("denoised")].data, np.float32).reshape(other.shape)
    ours = load_model("default", device="cpu", path="eager").denoise(
        other[None], counts_per_electron=ONEVIEW_CPE
    )[0]
    np.testing.assert_allclose(got, ours, rtol=1e-4, atol=1e-4 * float(np.abs(ours).max()))


def test_import_restores_the_package_exactly(tmp_path: Path) -> None:
    out = tmp_path / "f.zip"
    assert main(["model", "export", "fast", "--out", str(out)]) == 0
    assert main(["model", "import", str(out), "--out", str(tmp_path / "back")]) == 0
    original, back = load_package(load_model("fast").source), load_package(tmp_path / "back")
    assert back.package_hash == original.package_hash  # same weights, config and card
    assert back.card.model_dump(exclude={"package_hash"}) == original.card.model_dump(
        exclude={"package_hash"}
    )


def test_a_package_that_fails_the_test_is_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tem_acq.denoise import bioimageio

    truth = bioimageio._tem_acq_output
    # a test output that is not what the network computes: bioimage.io's test must fail
    monkeypatch.setattr(bioimageio, "_tem_acq_output", lambda *a: truth(*a) + np.float32(1.0))
    out = tmp_path / "bad.zip"
    frame = np.random.default_rng(1).poisson(5.0, (64, 64)).astype(np.float32)
    with pytest.raises(ModelPackageError, match="test of the exported package failed"):
        bioimageio.export_bioimageio("fast", out, sample=frame)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_bad_exports_and_imports_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    for argv, message in [
        (["model", "export", "fast", "--out", str(tmp_path / "x.tar")], "is a .zip"),
        (["model", "export", "fast", "--out", str(tmp_path / "x.zip"),
          "--counts-per-electron", "0"], "must be > 0"),
        (["model", "import", str(readme), "--out", str(tmp_path / "m")], "not a bioimage.io"),
        (["model", "import", str(tmp_path / "none.zip"), "--out", str(tmp_path / "m")],
         "does not exist"),
    ]:  # fmt: skip
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_onnxruntime_path_matches_eager() -> None:
    frames = np.random.default_rng(0).poisson(5.0, (2, 96, 128)).astype(np.uint16)
    eager = load_model("fast", device="cpu", path="eager").denoise(frames)
    ort = load_model("fast", device="cpu", path="onnxruntime")
    got = ort.denoise(frames)
    assert ort.path_name == "cpu onnxruntime"
    np.testing.assert_allclose(got, eager, rtol=1e-4, atol=1e-4)
