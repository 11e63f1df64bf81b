"""Reading and writing the frame files users have: TIFF (Gatan TIFFs too), NumPy ``.npy``, MRC.

Gatan DigitalMicrograph writes its intensity calibration into private TIFF tags: tag 65022 is
the intensity unit and 65025 the scale in units per count. When the unit is ``e-`` the camera's
counts per electron is ``1 / scale`` (44 counts per electron for the Katsuno OneView frames).
Other files carry no conversion factor; then ``counts_per_electron`` must come from the user,
and without it tem-acq uses 1 and says so (the network input is independent of the factor
because frames are divided by their own mean, so only the output's units depend on it).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tem_acq.errors import TemAcqError
from tem_acq.outputs import claim_output

#: Output formats by file extension.
WRITE_FORMATS = {".tif": "tiff", ".tiff": "tiff", ".npy": "npy", ".mrc": "mrc"}
#: Input formats by file extension (stores are folders ending in ``.ome.zarr``).
READ_FORMATS = {**WRITE_FORMATS, ".mrcs": "mrc", ".st": "mrc"}

_GATAN_INTENSITY_UNIT = 65022
_GATAN_INTENSITY_SCALE = 65025
_GATAN_SCALE_X = 65009
_GATAN_UNIT_X = 65012


@dataclass
class FrameFile:
    """Frames read from a file, with what the file says about them.

    Attributes
    ----------
    data
        ``(y, x)`` or ``(n, y, x)`` raw frames.
    counts_per_electron
        From the file's metadata (Gatan tags), or ``None`` when it does not say.
    pixel_size_A
        Pixel size in angstrom from the file, when present.
    notes
        Human-readable remarks on what was read.
    """

    data: np.ndarray
    counts_per_electron: float | None = None
    pixel_size_A: float | None = None
    notes: list[str] = field(default_factory=list)


def _tag(page: Any, code: int) -> Any:
    tag = page.tags.get(code)
    return None if tag is None else tag.value


def _gatan_calibration(page: Any) -> tuple[float | None, float | None]:
    """(counts per electron, pixel size in Å) from Gatan private tags, when present and sane."""
    cpe = None
    unit = _tag(page, _GATAN_INTENSITY_UNIT)
    scale = _tag(page, _GATAN_INTENSITY_SCALE)
    if isinstance(unit, bytes):
        unit = unit.decode("latin-1", "replace")
    if isinstance(unit, str) and unit.strip().rstrip("\x00") == "e-":
        try:
            s = float(scale)
        except (TypeError, ValueError):
            s = math.nan
        if math.isfinite(s) and s > 0:
            cpe = 1.0 / s
    px = None
    sx, ux = _tag(page, _GATAN_SCALE_X), _tag(page, _GATAN_UNIT_X)
    if isinstance(ux, bytes):
        ux = ux.decode("latin-1", "replace")
    try:
        sxf = float(sx)
    except (TypeError, ValueError):
        sxf = math.nan
    if math.isfinite(sxf) and sxf > 0 and isinstance(ux, str):
        # Gatan's unit of the x scale -> angstrom
        factor = {"micrometer": 1e4, "µm": 1e4, "um": 1e4, "nm": 10.0, "nanometer": 10.0}.get(
            ux.strip().rstrip("\x00")
        )
        if factor is not None:
            px = sxf * factor
    return cpe, px


def _read_tiff(path: Path) -> FrameFile:
    import tifffile

    try:
        with _tifffile_errors() as damage, tifffile.TiffFile(path) as tif:
            _check_complete(tif, path, damage)
            series = tif.series[0]
            if "S" in series.axes:
                raise TemAcqError(
                    f"{path} is a colour/multi-sample TIFF (axes {series.axes}); save the "
                    "frames as greyscale"
                )
            data = _decode(series, path)
            cpe, px = _gatan_calibration(tif.pages[0])
    except tifffile.TiffFileError as exc:
        raise TemAcqError(
            f"{path} is not a readable TIFF: not a TIFF file, or a truncated or damaged one ({exc})"
        ) from exc
    if data.ndim > 3:
        data = data.reshape(-1, *data.shape[-2:])
    ff = FrameFile(np.asarray(data), counts_per_electron=cpe, pixel_size_A=px)
    if cpe is not None:
        ff.notes.append(f"counts per electron {cpe:.4g} from the Gatan intensity calibration")
    return ff


@contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """The errors tifffile logs meanwhile (it logs, and goes on, when a file is damaged)."""
    found: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record.getMessage())

    logger = logging.getLogger("tifffile")
    handler = Collect(logging.ERROR)
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


def _check_complete(tif: Any, path: Path, damage: list[str]) -> None:
    """Refuse a TIFF that is cut short: image data beyond its end, or pages that are lost.

    tifffile reads the pages it can find and logs the rest (``damage``): a file cut between
    two pages would otherwise read as fewer frames, silently.
    """
    len(tif.pages)  # index every page, so that a lost one is logged now
    if damage:
        raise TemAcqError(
            f"{path} is truncated or damaged ({damage[0]}): frames would be missing; copy it "
            "again from the original"
        )
    size = int(tif.filehandle.size)
    needed = max(
        (
            int(offset) + int(count)
            for page in tif.pages
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False)
        ),
        default=0,
    )
    if needed > size:
        raise TemAcqError(
            f"{path} is truncated or damaged: its images need {needed} bytes but the file "
            f"has {size}; copy it again from the original"
        )


def _decode(series: Any, path: Path) -> np.ndarray:
    """The series' frames; a missing codec or damaged image data is one clear error."""
    try:
        return np.asarray(series.asarray())
    except Exception as exc:  # codecs raise their own types (DeflateError, ...) on bad data
        if "imagecodecs" in str(exc):
            raise TemAcqError(
                f"cannot decode {path}: its compression needs imagecodecs ({exc}); install "
                "it (pip install imagecodecs) or save the file uncompressed"
            ) from exc
        raise TemAcqError(
            f"cannot decode {path}: its image data is damaged ({type(exc).__name__}: {exc}); "
            "copy it again from the original"
        ) from exc


def _read_npy(path: Path) -> FrameFile:
    try:
        # allow_pickle=False: an .npy of objects would otherwise unpickle arbitrary code.
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise TemAcqError(
            f"{path} is not a plain numeric .npy array ({exc}); save it with np.save"
        ) from exc
    return FrameFile(np.asarray(data))


def _read_mrc(path: Path) -> FrameFile:
    import mrcfile

    try:
        with mrcfile.open(path, mode="r", permissive=False) as mrc:
            data = np.array(mrc.data)
            vx = float(mrc.voxel_size.x)
    except (ValueError, OSError, EOFError) as exc:
        raise TemAcqError(f"{path} is not a readable MRC file ({exc})") from exc
    return FrameFile(data, pixel_size_A=vx if vx > 0 else None)  # MRC voxel sizes are in Å


def read_frames(path: str | Path) -> FrameFile:
    """Read frames from a TIFF, ``.npy`` or MRC file.

    Parameters
    ----------
    path
        The file; the format is taken from its extension.

    Returns
    -------
    The frames and what the file says about them.

    Raises
    ------
    TemAcqError
        Missing file, unknown extension, unreadable content.
    """
    p = Path(path)
    if not p.exists():
        raise TemAcqError(f"input {p} does not exist")
    kind = READ_FORMATS.get(p.suffix.lower())
    if kind is None or p.is_dir():
        raise TemAcqError(
            f"cannot read {p}: supported inputs are {', '.join(sorted(READ_FORMATS))} files "
            "and tem-acq stores (*.ome.zarr folders)"
        )
    reader = {"tiff": _read_tiff, "npy": _read_npy, "mrc": _read_mrc}[kind]
    return reader(p)


def check_output_path(
    path: str | Path, *, overwrite: bool = False, inputs: Sequence[str | Path] = ()
) -> Path:
    """Check that ``path`` has a writable format and does not exist (unless ``overwrite``).

    It may not be one of ``inputs``, inside one or hold one (see
    :func:`tem_acq.outputs.claim_output`).
    """
    p = Path(path)
    if p.suffix.lower() not in WRITE_FORMATS:
        raise TemAcqError(
            f"cannot write {p}: the output format comes from the extension, one of "
            f"{', '.join(sorted(WRITE_FORMATS))}"
        )
    claim_output(p, overwrite=overwrite, kind="frame file", parent_must_exist=True, inputs=inputs)
    return p


def write_frames(
    path: str | Path,
    data: np.ndarray,
    *,
    metadata: dict[str, Any] | None = None,
    pixel_size_A: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write float32 frames, the format taken from the extension (.tif/.tiff/.npy/.mrc).

    Parameters
    ----------
    path
        Output file.
    data
        ``(y, x)`` or ``(n, y, x)`` frames (written as float32).
    metadata
        Provenance (model name, package hash, counts per electron...): stored in the TIFF
        description as JSON; ``.npy`` and MRC have no place for it.
    pixel_size_A
        Pixel size in angstrom, written to MRC headers when known.
    overwrite
        Replace an existing file.

    Returns
    -------
    The path written.
    """
    p = check_output_path(path, overwrite=overwrite)
    arr = np.ascontiguousarray(data, dtype=np.float32)
    kind = WRITE_FORMATS[p.suffix.lower()]
    if kind == "tiff":
        import tifffile

        tifffile.imwrite(
            p,
            arr,
            photometric="minisblack",
            description=json.dumps({"tem_acq": metadata or {}}),
            metadata=None,
        )
    elif kind == "npy":
        np.save(p, arr, allow_pickle=False)
    else:
        import mrcfile

        with mrcfile.new(p, overwrite=overwrite) as mrc:
            mrc.set_data(arr)
            if pixel_size_A:
                mrc.voxel_size = pixel_size_A
    return p
