"""``tem-acq denoise INPUT --model M --out OUT``: denoise frame files and acquisition stores.

Without ``--out``, every store named (``STORE [STORE|FOLDER ...]``) is denoised in place, here
or on a Dask cluster: :mod:`tem_acq.cli.denoise_many`.

Inputs: TIFF (Gatan TIFFs included), ``.npy``, MRC, or a tem-acq acquisition store (a
``*.zarr`` folder). Outputs, by OUT's extension: ``.tif``/``.tiff``, ``.npy``, ``.mrc``
(float32 electrons per pixel), or ``*.zarr`` for a store input: a new store with the raw frames
copied, the new denoised frames and the model's provenance.

Counts per electron: ``--counts-per-electron`` wins; else the file's own calibration (Gatan
intensity tags, a store's camera metadata); else 1, with a note that the output is then in
counts (the network input does not depend on it, since frames are divided by their mean).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq.cli.command import (
    COUNTS_PER_ELECTRON,
    DEVICE,
    MODEL,
    OVERWRITE,
    TTA,
    Command,
    require_at_least_one,
)
from tem_acq.denoise import io
from tem_acq.denoise.options import PATHS, DenoiseOptions
from tem_acq.errors import ConfigError, NegativeCountsWarning, TemAcqError
from tem_acq.outputs import claim_output

#: Stacks at least this long let the engine time its paths and keep the fastest.
AUTO_PATH_MIN_FRAMES = 4
#: Stores of more frames than this are denoised on a LocalCluster unless --scheduler says.
LOCAL_CLUSTER_FRAMES = 256


def arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``denoise`` arguments."""
    parser.add_argument(
        "input",
        nargs="+",
        help="tem-acq stores (*.zarr), folders of stores, or one .tif/.tiff, .npy, .mrc file",
    )
    MODEL.add(parser, "-m", help="model package name or folder (default: default)")
    parser.add_argument(
        "--out",
        "-o",
        default=None,
        help="output file (.tif/.npy/.mrc/.zarr) of one input; without it stores are denoised "
        "in place (their denoised image, raw untouched)",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        help="'local' (a Dask LocalCluster on this machine; the default for several stores or "
        f"over {LOCAL_CLUSTER_FRAMES} frames), 'none' (this process) or the address of a "
        "running Dask scheduler (tcp://host:8786)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="LocalCluster workers (default: one per GPU, else one per two cores)",
    )
    parser.add_argument(
        "--out-dir",
        default=None,
        help="where derived stores of read-only input stores go (a copy, then denoised)",
    )
    COUNTS_PER_ELECTRON.add(
        parser, help="camera counts per electron (default: from the file's metadata, else 1)"
    )
    parser.add_argument(
        "--pixel-size-A",
        type=float,
        default=None,
        help="pixel size of the frames in angstrom (default: the file's or store's own); a "
        "pixel size outside the model's trained range is warned about",
    )
    DEVICE.add(parser)
    parser.add_argument("--batch", type=int, default=None, help="frames per network call (>= 1)")
    parser.add_argument(
        "--compile", action="store_true", help="try torch.compile (slow start; for long stacks)"
    )
    parser.add_argument(
        "--path",
        choices=PATHS,
        default=None,
        help=f"execution path (default: auto for stacks of >= {AUTO_PATH_MIN_FRAMES} frames, "
        "else eager); reduced-precision paths are checked against eager",
    )
    TTA.add(
        parser,
        help="average the model over the 8 flips/rotations of each frame: output independent "
        "of orientation, 8x the time",
    )
    OVERWRITE.add(parser, help="replace OUT if it exists")


def _is_store(path: Path) -> bool:
    return path.is_dir() and (path / "zarr.json").is_file()


def run(args: argparse.Namespace) -> int:
    """Read, denoise, write; user errors raise TemAcqError (printed, exit 2)."""
    if args.out is None:
        from tem_acq.cli.denoise_many import run_many

        return run_many(args)
    if len(args.input) != 1:
        raise TemAcqError(
            f"--out takes one input ({len(args.input)} given): leave --out out to denoise "
            "stores in place"
        )
    src, out = Path(args.input[0]), Path(args.out)
    _check_arguments(args, src, out)
    frame_file, store = _read_input(src)
    _warn_if_negative(frame_file.data)
    n = 1 if frame_file.data.ndim == 2 else frame_file.data.shape[0]
    from tem_acq.denoise import load_model

    denoiser = load_model(args.model, options=_denoise_options(args, n))
    cpe, in_electrons = _counts_per_electron(args.counts_per_electron, frame_file)
    _warn_if_untrained(denoiser)
    _warn_if_pixel_size_outside(denoiser, args.pixel_size_A or frame_file.pixel_size_A)
    data = frame_file.data
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # said once above, in the command's own words
        warnings.simplefilter("ignore", NegativeCountsWarning)
        result = _denoise_with_progress(denoiser, data, cpe)
    elapsed = time.perf_counter() - t0
    if store is not None and out.suffix.lower() == ".zarr":
        _write_store(store, out, result, denoiser, overwrite=args.overwrite)
    else:
        meta = _file_provenance(denoiser, cpe, in_electrons, src)
        io.write_frames(
            out,
            result,
            metadata=meta,
            pixel_size_A=frame_file.pixel_size_A,
            overwrite=args.overwrite,
        )
    print(
        f"denoised {n} frame(s) of {data.shape[-2]}x{data.shape[-1]} with "
        f"{denoiser.card.name} ({denoiser.package_hash[:19]}) on {denoiser.path_name} in "
        f"{elapsed:.2f} s -> {out}"
    )
    return 0


def _check_arguments(args: argparse.Namespace, src: Path, out: Path) -> None:
    """Fail on a missing input, a wrong or unwritable output or a bad flag before the slow part.

    The output may not be the input, nor the model package, nor inside or around either.
    """
    if not src.exists():
        raise TemAcqError(f"input {src} does not exist")
    require_at_least_one(args, "batch")
    store_out = out.suffix.lower() == ".zarr"
    if store_out and not _is_store(src):
        raise TemAcqError(
            f"{out}: a .zarr output needs a store input (it copies the raw frames); write "
            ".tif, .npy or .mrc instead"
        )
    if args.pixel_size_A is not None and not args.pixel_size_A > 0:
        raise ConfigError(f"--pixel-size-A must be > 0, got {args.pixel_size_A}")
    if args.counts_per_electron is not None and not args.counts_per_electron > 0:
        raise ConfigError(f"--counts-per-electron must be > 0, got {args.counts_per_electron}")
    from tem_acq.denoise.package import package_folder

    inputs = [src, package_folder(args.model)]
    if store_out:
        claim_output(out, overwrite=args.overwrite, kind="acquisition store", inputs=inputs)
    else:
        io.check_output_path(out, overwrite=args.overwrite, inputs=inputs)


def _read_input(src: Path) -> tuple[io.FrameFile, Any]:
    """The input's frames (checked, so bad frames fail before the model loads) and its store.

    The store is ``None`` for a frame file.
    """
    store = None
    if _is_store(src):
        from tem_acq.store import open_store

        store = open_store(src)
        frame_file = io.FrameFile(
            np.asarray(store.raw[:]),
            counts_per_electron=store.metadata.camera.counts_per_electron,
            pixel_size_A=store.metadata.instrument.pixel_size_A,
        )
        if frame_file.data.shape[0] == 0:
            raise TemAcqError(f"store {src} has no committed frames")
    else:
        frame_file = io.read_frames(src)
    from tem_acq.denoise.engine import check_frames

    check_frames(frame_file.data)
    return frame_file, store


def _denoise_options(args: argparse.Namespace, n_frames: int) -> DenoiseOptions:
    """The denoiser options the flags ask for; the path, unless given, suits the stack."""
    # Choosing a path costs a dozen network calls: worth it for stacks, not for a frame or two.
    auto = n_frames >= AUTO_PATH_MIN_FRAMES or args.compile
    return DenoiseOptions.from_settings(
        device=args.device,
        path=args.path or ("auto" if auto else "eager"),
        compile=args.compile,
        batch_size=args.batch,
        tta=args.tta,
    )


def _counts_per_electron(flag: float | None, frame_file: io.FrameFile) -> tuple[float, bool]:
    """The counts per electron to use and whether it is known; says on stderr where it is from."""
    if flag is not None:
        print(f"counts per electron {flag:g} (--counts-per-electron)", file=sys.stderr)
        if frame_file.counts_per_electron:
            print(
                f"note: the file says {frame_file.counts_per_electron:.4g} counts per electron; "
                "--counts-per-electron overrides it",
                file=sys.stderr,
            )
        return float(flag), True
    if frame_file.counts_per_electron:
        print(
            f"counts per electron {frame_file.counts_per_electron:.4g} (file metadata)",
            file=sys.stderr,
        )
        return float(frame_file.counts_per_electron), True
    print(
        "note: the input does not say its counts per electron; using 1, so the output is in "
        "counts, not electrons (pass --counts-per-electron for electrons)",
        file=sys.stderr,
    )
    return 1.0, False


def _warn_if_negative(frames: np.ndarray) -> None:
    """Say what the denoiser makes of negative counts, when there are any."""
    from tem_acq.denoise.engine import negative_counts_note

    note = negative_counts_note(frames)
    if note is not None:
        print(f"warning: {note}", file=sys.stderr)


def _warn_if_untrained(denoiser: Any) -> None:
    """Say so when the model has fresh weights: its output is not a denoised image."""
    if not denoiser.card.trained:
        print(
            f"warning: model {denoiser.card.name!r} is UNTRAINED (fresh weights): the output "
            "is not a denoised image",
            file=sys.stderr,
        )


def _warn_if_pixel_size_outside(denoiser: Any, pixel_size_A: float | None) -> None:
    """One line when the frames' pixel size is outside the model's trained range."""
    from tem_acq.denoise.pixel_size import pixel_size_note

    note = pixel_size_note(denoiser.card, pixel_size_A)
    if note is not None:
        print(f"warning: {note}", file=sys.stderr)


def _file_provenance(denoiser: Any, cpe: float, in_electrons: bool, src: Path) -> dict[str, Any]:
    """What a frame file records about how it was denoised (a TIFF's description)."""
    return {
        "model": denoiser.card.name,
        "package_hash": denoiser.package_hash,
        "counts_per_electron": cpe,
        "units": "electrons per pixel" if in_electrons else "counts (counts_per_electron unknown)",
        "source": str(src),
        "path": denoiser.path_name,
    }


def _denoise_with_progress(denoiser: Any, data: np.ndarray, cpe: float) -> np.ndarray:
    """Denoise, reporting progress for stacks (a bar on a terminal, plain lines otherwise)."""
    if data.ndim != 3 or data.shape[0] < 2:
        return np.asarray(denoiser.denoise(data, counts_per_electron=cpe))
    from tem_acq.progress import Progress

    with Progress("denoising", data.shape[0], unit="frames") as bar:
        return np.asarray(
            denoiser.denoise(data, counts_per_electron=cpe, progress=lambda done: bar.update(done))
        )


def _write_store(
    store: Any, out: Path, result: np.ndarray, denoiser: Any, *, overwrite: bool
) -> None:
    """A new store: the input's raw frames and records, the new denoised frames, provenance."""
    from tem_acq.denoise.provenance import model_provenance
    from tem_acq.store import AcquisitionWriter, FrameRecord

    meta = store.metadata.model_copy(update={"model": model_provenance(denoiser)})
    record_fields = set(FrameRecord.model_fields)
    rows = {row.index: row for row in store.frames}
    with AcquisitionWriter(
        out, meta, store.frame_shape, store.raw.dtype, overwrite=overwrite
    ) as writer:
        for i in range(result.shape[0]):
            row = rows.get(i)
            record = (
                FrameRecord.model_validate(row.model_dump(include=record_fields))
                if row is not None
                else None
            )
            index = writer.append_raw(np.asarray(store.raw[i]), record)
            writer.write_denoised(index, result[i])


COMMAND = Command(
    "denoise",
    help="denoise TIFF/NPY/MRC files or an acquisition store with a model package",
    description=(
        "Denoise raw frames (TIFF incl. Gatan, .npy, MRC, or an acquisition store "
        "*.zarr) into float32 expected electrons per pixel. The output format comes from "
        "OUT's extension: .tif/.tiff, .npy, .mrc, or .zarr (store input only)."
    ),
    arguments=arguments,
    run=run,
    rank=60,
)
