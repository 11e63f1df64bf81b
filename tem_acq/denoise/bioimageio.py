"""bioimage.io model packages: export a tem-acq model so other tools run it, and import one back.

``tem-acq model export MODEL --format bioimageio --out DIR.zip`` writes a package of the current
bioimage.io model spec (0.5, through ``bioimageio.spec``) that Fiji/deepImageJ, ilastik, napari
and ``bioimageio.core`` run and that reproduces tem-acq's output:

- the network with tem-acq's dose normalisation built in (:mod:`tem_acq.denoise.exported`, a
  self-contained file that travels as the state-dict weights' architecture), as PyTorch state
  dict, TorchScript and ONNX weights;
- the camera's counts per electron as the package's preprocessing (``scale_linear``), so the
  input is raw counts and the output expected electrons per pixel;
- test tensors from a real or simulated frame and their tem-acq output, a cover image (raw |
  denoised), the card's quality table as documentation, and the licence.

Before anything is written the package is tested with ``bioimageio.core``'s model test (every
weight format must reproduce tem-acq's output on the test frame); a package that fails is never
written. ``tem-acq model import`` restores the tem-acq package it was made from (the package's own
files travel as attachments; nothing is unpickled).

The exported rule is the linear one (counting detectors, and cards that are not detector-aware):
the detector-aware shift for integrating cameras solves a per-frame equation that the spec's
processing cannot express, so for those frames tem-acq's own output differs slightly
(:attr:`ExportReport.rule` says which applies).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tem_acq import __version__
from tem_acq.denoise.onnx import OPSET, export_onnx
from tem_acq.errors import ConfigError, ModelPackageError
from tem_acq.outputs import claim_output

if TYPE_CHECKING:
    import torch

    from tem_acq.denoise.card import ModelCard
    from tem_acq.denoise.package import LoadedPackage

#: The callable the state-dict weights name in the architecture file.
ARCHITECTURE_CALLABLE = "DoseNormalizedUNet"
#: Where a package's tem-acq card travels inside its ``config``.
CONFIG_KEY = "tem_acq"
#: Largest relative difference allowed between the package's prediction and tem-acq's.
PREDICTION_TOLERANCE = 1e-3
#: Prefix of the tem-acq package's own files inside an export (``import`` restores them).
ATTACHED_PREFIX = "tem_acq_"
#: The ONNX opset of the exported network (the engine's onnxruntime path exports the same).
ONNX_OPSET = OPSET


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote and how the bioimage.io test judged it.

    Attributes
    ----------
    path
        The package written (a ``.zip``).
    weights
        The weight formats in it.
    test_status
        ``bioimageio.core``'s verdict (``"passed"``, or a warning status).
    rule
        The mean rule built into the network (``"linear"``).
    sample
        Where the test frame came from.
    max_abs_error
        The largest difference between ``bioimageio.core``'s prediction and tem-acq's output on
        the test frame (electrons per pixel).
    """

    path: Path
    weights: tuple[str, ...]
    test_status: str
    rule: str
    sample: str
    max_abs_error: float


def export_bioimageio(
    model: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    sample: np.ndarray,
    counts_per_electron: float = 1.0,
    sample_source: str = "",
    overwrite: bool = False,
) -> ExportReport:
    """Export a tem-acq model package as a tested bioimage.io model package (``.zip``).

    Parameters
    ----------
    model
        A model package name (``"default"``) or folder.
    out
        The ``.zip`` to write.
    counts_per_electron
        The camera's conversion factor, the package's preprocessing (1 for a counting camera).
    sample
        The test frame (2-D, raw counts, a real one where you have it), cropped to a multiple
        of the network's stride.
    sample_source
        Where ``sample`` came from, for the package's documentation.
    overwrite
        Replace an existing ``out``.

    Raises
    ------
    ModelPackageError
        If the model cannot be exported, or the package fails ``bioimageio.core``'s test
        (nothing is written then).
    """
    from tem_acq.denoise import load_package, resolve_package

    dest = Path(out)
    if dest.suffix != ".zip":
        raise ConfigError(f"a bioimage.io package is a .zip; got --out {dest}")
    if not counts_per_electron > 0:
        raise ConfigError(f"--counts-per-electron must be > 0, got {counts_per_electron}")
    folder = resolve_package(model)
    claim_output(dest, overwrite=overwrite, kind="bioimage.io package", inputs=[folder])
    pkg = load_package(folder)
    network = exported_network(pkg)
    frame, source = _test_frame(pkg, sample, sample_source)
    with tempfile.TemporaryDirectory(prefix="tem-acq-bioimageio-") as tmp, _quiet():
        work = Path(tmp)
        expected = _tem_acq_output(pkg, frame, counts_per_electron)
        descr = _describe(pkg, network, frame, expected, counts_per_electron, source, work)
        status = _test(descr)
        staged = work / dest.name
        _save(descr, staged)
        error = _predicted_error(staged, frame, expected)
        if not error <= PREDICTION_TOLERANCE * (1.0 + float(np.abs(expected).max())):
            raise ModelPackageError(
                f"bioimageio.core's prediction from the written package differs from tem-acq's "
                f"by up to {error:.3g} e-/px; nothing was written"
            )
        shutil.move(str(staged), dest)
    return ExportReport(
        path=dest,
        weights=("pytorch_state_dict", "torchscript", "onnx"),
        test_status=status,
        rule="linear",
        sample=source,
        max_abs_error=error,
    )


@contextmanager
def _quiet() -> Iterator[None]:
    """Hide the libraries' notes that say nothing about the package (deprecations, hashes)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.")
        warnings.filterwarnings("ignore", message="Found mapping with 'source' and 'sha256'")
        yield


def exported_network(pkg: LoadedPackage) -> torch.nn.Module:
    """The package's network with its normalisation built in, in float32 eval mode."""
    from tem_acq.denoise.exported import DoseNormalizedUNet

    norm = pkg.card.normalization
    network = DoseNormalizedUNet(
        _unet_config(pkg), min_scale=norm.min_scale, preserve_mean=norm.preserve_mean
    )
    network.net.load_state_dict(pkg.model.float().state_dict())
    return network.eval()


def _unet_config(pkg: LoadedPackage) -> dict[str, Any]:
    config = json.loads((pkg.path / "config.json").read_text(encoding="utf-8"))
    return {k: v for k, v in config.items() if k != "encoder_weights"}


def _stride(pkg: LoadedPackage) -> int:
    return int(2 ** int(pkg.card.architecture_kwargs.get("encoder_depth", 5)))


def _test_frame(pkg: LoadedPackage, sample: np.ndarray, source: str) -> tuple[np.ndarray, str]:
    """The test frame (float32 counts, cropped to the stride) and where it came from."""
    frame = np.asarray(sample, np.float32)
    if frame.ndim != 2:
        raise ConfigError(f"the test frame must be 2-D (y, x); got shape {frame.shape}")
    m = _stride(pkg)
    h, w = (frame.shape[0] // m) * m, (frame.shape[1] // m) * m
    if not (h and w):
        raise ConfigError(f"the test frame {frame.shape} is smaller than the network's {m} px")
    return np.ascontiguousarray(frame[:h, :w]), source or "the given frame"


def _tem_acq_output(pkg: LoadedPackage, frame: np.ndarray, cpe: float) -> np.ndarray:
    """What tem-acq itself makes of the frame (eager fp32, no tiling): the test's truth."""
    from tem_acq.denoise import Denoiser

    denoiser = Denoiser(pkg, device="cpu", path="eager", tile_size=max(frame.shape) + 64)
    return denoiser.denoise(frame[None], counts_per_electron=cpe)[0].astype(np.float32)


def _describe(
    pkg: LoadedPackage,
    network: torch.nn.Module,
    frame: np.ndarray,
    expected: np.ndarray,
    cpe: float,
    source: str,
    work: Path,
) -> Any:
    """The bioimage.io model description, its files written into ``work``."""
    from bioimageio.spec.model import v0_5 as spec

    m = _stride(pkg)
    np.save(work / "test_input.npy", frame[None, None])
    np.save(work / "test_output.npy", expected[None, None])
    weights = _write_weights(pkg, network, frame, work)
    _cover(frame / cpe, expected, work / "cover.png")
    (work / "README.md").write_text(_documentation(pkg.card, cpe, source), encoding="utf-8")
    (work / "LICENSE").write_text(_LICENSE, encoding="utf-8")

    def space(axis: str) -> Any:
        return spec.SpaceInputAxis(id=spec.AxisId(axis), size=spec.ParameterizedSize(min=m, step=m))

    raw = spec.TensorId("raw")
    inputs = spec.InputTensorDescr(
        id=raw,
        description="raw camera frame in counts (float32)",
        axes=[
            spec.BatchAxis(),
            spec.ChannelAxis(channel_names=[spec.Identifier("counts")]),
            space("y"),
            space("x"),
        ],
        test_tensor=spec.FileDescr(source=work / "test_input.npy"),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        # counts -> electrons (the spec refuses a scaling by 1: a counting camera needs none)
        preprocessing=[]
        if cpe == 1.0
        else [spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=1.0 / cpe, offset=0.0))],
    )

    def same(axis: str) -> Any:
        return spec.SpaceOutputAxis(
            id=spec.AxisId(axis), size=spec.SizeReference(tensor_id=raw, axis_id=spec.AxisId(axis))
        )

    outputs = spec.OutputTensorDescr(
        id=spec.TensorId("denoised"),
        description="expected electrons per pixel at the input's dose (float32)",
        axes=[
            spec.BatchAxis(),
            spec.ChannelAxis(channel_names=[spec.Identifier("electrons")]),
            same("y"),
            same("x"),
        ],
        test_tensor=spec.FileDescr(source=work / "test_output.npy"),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
    )
    card = pkg.card
    return spec.ModelDescr(
        name=f"tem-acq {card.name}",
        description=_one_line(card.description) or f"tem-acq low-dose TEM denoiser {card.name}",
        authors=[spec.Author(name="tem-acq developers")],
        cite=[spec.CiteEntry(text=_CITATION, url=spec.HttpUrl(_CITATION_URL))],
        license=spec.LicenseId("MIT"),
        documentation=spec.FileDescr(source=work / "README.md"),
        covers=[spec.FileDescr(source=work / "cover.png")],
        attachments=[spec.FileDescr(source=work / "LICENSE"), *_package_files(pkg, work)],
        tags=["denoising", "electron-microscopy", "tem", "low-dose", "unet", "tem-acq"],
        inputs=[inputs],
        outputs=[outputs],
        weights=weights,
        version=spec.Version("1.0.0"),
        # what a reader needs to know; the package files themselves are attachments
        config=spec.Config.model_validate(
            {
                CONFIG_KEY: {
                    "model": card.name,
                    "package_hash": card.package_hash,
                    "tem_acq_version": __version__,
                    "counts_per_electron": cpe,
                    "mean_rule": "linear",
                }
            }
        ),
    )


def _package_files(pkg: LoadedPackage, work: Path) -> list[Any]:
    """The tem-acq package's own files, attached as they are (what ``import`` restores)."""
    from bioimageio.spec.model import v0_5 as spec

    from tem_acq.outputs import MODEL_PACKAGE_FILES

    attached = []
    for name in MODEL_PACKAGE_FILES:
        copy = work / f"{ATTACHED_PREFIX}{name}"
        shutil.copyfile(pkg.path / name, copy)
        attached.append(spec.FileDescr(source=copy))
    return attached


def _write_weights(
    pkg: LoadedPackage, network: torch.nn.Module, frame: np.ndarray, work: Path
) -> Any:
    """The three weight formats, written into ``work``; their description."""
    import torch
    from bioimageio.spec.model import v0_5 as spec

    from tem_acq.denoise import exported

    torch.save(network.state_dict(), work / "weights.pt")
    arch_file = work / "tem_acq_denoiser.py"
    shutil.copyfile(inspect.getfile(exported), arch_file)
    example = torch.from_numpy(frame[None, None].copy())  # its shape is what tracing needs
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing is deprecated, not gone
        torch.jit.trace(network, example).save(str(work / "weights.torchscript.pt"))
    (work / "weights.onnx").write_bytes(export_onnx(network, example))
    version = spec.Version(torch.__version__.split("+")[0])
    norm = pkg.card.normalization
    state_dict = spec.PytorchStateDictWeightsDescr(
        source=work / "weights.pt",
        architecture=spec.ArchitectureFromFileDescr(
            source=arch_file,
            callable=spec.Identifier(ARCHITECTURE_CALLABLE),
            kwargs=_yaml(
                {
                    "unet": _unet_config(pkg),
                    "min_scale": norm.min_scale,
                    "preserve_mean": norm.preserve_mean,
                }
            ),
        ),
        pytorch_version=version,
    )
    return spec.WeightsDescr(
        pytorch_state_dict=state_dict,
        torchscript=spec.TorchscriptWeightsDescr(
            source=work / "weights.torchscript.pt",
            pytorch_version=version,
            parent="pytorch_state_dict",
        ),
        onnx=spec.OnnxWeightsDescr(
            source=work / "weights.onnx", opset_version=ONNX_OPSET, parent="pytorch_state_dict"
        ),
    )


def _yaml(value: dict[str, Any]) -> Any:
    """JSON-like settings as the spec's YAML values (mypy cannot follow the nesting)."""
    return json.loads(json.dumps(value))


def _test(descr: Any) -> str:
    """``bioimageio.core``'s model test; raises (nothing written) unless it passes."""
    from bioimageio.core import test_model

    summary = test_model(descr)
    # "valid-format" means the description is valid but a test failed: not good enough
    if summary.status != "passed":
        failed = [d for d in summary.details if d.status == "failed"]
        first = failed[0] if failed else None
        why = "" if first is None else f"{first.name}: {_one_line(str(first.errors))[:300]}"
        raise ModelPackageError(
            f"the bioimage.io test of the exported package failed ({summary.status}; {why}); "
            "nothing was written"
        )
    return str(summary.status)


def _save(descr: Any, path: Path) -> None:
    from bioimageio.spec import save_bioimageio_package

    save_bioimageio_package(descr, output_path=path)


def _predicted_error(package: Path, frame: np.ndarray, expected: np.ndarray) -> float:
    """Largest difference of ``bioimageio.core``'s prediction from the written package."""
    from bioimageio.core import predict

    result = predict(model=str(package), inputs=frame[None, None])
    from bioimageio.spec.model.v0_5 import TensorId

    out = np.asarray(result.members[TensorId("denoised")].data, np.float32)
    return float(np.max(np.abs(out.reshape(expected.shape) - expected)))


def import_bioimageio(
    package: str | os.PathLike[str], out: str | os.PathLike[str], *, overwrite: bool = False
) -> ModelCard:
    """Turn a bioimage.io package that tem-acq exported back into the tem-acq model package.

    The export carries the package's own files (config, safetensors weights, card); they are
    restored as they were and the package is loaded, every check included (its hash must
    match), before it replaces anything. Nothing is unpickled.

    Raises
    ------
    ModelPackageError
        If the package was not exported by tem-acq, or what it carries is not a valid package.
    """
    from tem_acq.denoise.package import _new_folder, load_package
    from tem_acq.outputs import MODEL_PACKAGE_FILES

    source = Path(package)
    dest = Path(out)
    claim_output(dest, overwrite=overwrite, kind="model package", inputs=[source])
    _check_tem_acq_export(source)
    with zipfile.ZipFile(source) as archive:
        names = set(archive.namelist())
        missing = [n for n in MODEL_PACKAGE_FILES if ATTACHED_PREFIX + n not in names]
        if missing:
            raise ModelPackageError(
                f"{source} lacks the tem-acq package files it should carry "
                f"({', '.join(ATTACHED_PREFIX + n for n in missing)}); export it again"
            )
        with _new_folder(dest) as folder:
            for name in MODEL_PACKAGE_FILES:
                (folder / name).write_bytes(archive.read(ATTACHED_PREFIX + name))
            card = load_package(folder).card  # every check, the hash included
    return card


def _check_tem_acq_export(source: Path) -> None:
    """Refuse what is not a bioimage.io package exported by tem-acq, in one line."""
    from bioimageio.spec import load_model_description

    if not source.is_file():
        raise ModelPackageError(f"bioimage.io package {source} does not exist or is not a file")
    if not zipfile.is_zipfile(source):
        raise ModelPackageError(f"{source} is not a bioimage.io package (a .zip with rdf.yaml)")
    try:
        descr = load_model_description(str(source), perform_io_checks=False)
    except Exception as exc:  # the library's own errors span several kinds
        raise ModelPackageError(
            f"{source} is not a readable bioimage.io model package: {_one_line(str(exc))[:200]}"
        ) from None
    config = dict(getattr(getattr(descr, "config", None), "model_extra", None) or {})
    if not isinstance(config.get(CONFIG_KEY), dict):
        raise ModelPackageError(
            f"{source} was not exported by tem-acq (no tem-acq section in its config); "
            "tem-acq imports only its own exports"
        )


def _cover(raw_e: np.ndarray, denoised: np.ndarray, path: Path) -> None:
    """Raw | denoised side by side, one grey scale (the denoised frame's 1-99 %)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = np.percentile(denoised, [1, 99])
    fig, axes = plt.subplots(1, 2, figsize=(8, 4), dpi=100)
    for ax, image, title in zip(axes, (raw_e, denoised), ("raw", "tem-acq"), strict=True):
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _documentation(card: ModelCard, cpe: float, source: str) -> str:
    """The package's README: what it is, its units, and the card's quality table."""
    lines = [
        f"# tem-acq {card.name}",
        "",
        _one_line(card.description),
        "",
        "A U-Net denoiser for low-dose transmission electron microscopy frames, exported by",
        "tem-acq. Input: a raw frame in camera counts; the package divides by the camera's",
        f"counts per electron ({cpe:g}, its preprocessing). Output: the expected electrons per",
        "pixel at the frame's dose. The dose normalisation (each frame divided by its mean",
        "electrons per pixel, the output's mean kept at the input's) is part of the network, so",
        "give whole frames, not tiles. Integrating cameras: tem-acq itself corrects the mean for",
        "the detector's offset and clipping; this package applies the linear rule.",
        "",
        f"Trained doses: {card.dose_range_e_per_px[0]:g}-{card.dose_range_e_per_px[1]:g} e-/px; "
        f"detectors: {', '.join(card.detectors)}.",
        f"Test frame: {source}.",
        "",
    ]
    if card.quality:
        lines += [
            "## Quality (from the tem-acq card)",
            "",
            "| set | detector | dose e-/px | metric | model | raw | Gaussian |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in card.quality:
            lines.append(
                f"| {row.image_kind} | {row.detector} | {row.dose_e_per_px:g} | {row.metric} | "
                f"{row.value:.3g} | {_num(row.raw)} | {_num(row.gaussian)} |"
            )
        lines.append("")
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


_CITATION = (
    "Katsuno, Kimura, Yamazaki, Takigawa: Fast Improvement of TEM Images with Low-Dose "
    "Electrons by Deep Learning. Microscopy and Microanalysis (2022)"
)
_CITATION_URL = "https://github.com/hiroyasukatsuno/Fast-Improvement-Low-Dose-TEMimages"

_LICENSE = """MIT License

Copyright (c) tem-acq developers

Permission is hereby granted, free of charge, to any person obtaining a copy of this software
and associated documentation files (the "Software"), to deal in the Software without
restriction, including without limitation the rights to use, copy, modify, merge, publish,
distribute, sublicense, and/or sell copies of the Software, and to permit persons to whom the
Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING
BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM,
DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""
