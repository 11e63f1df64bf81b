"""The on-disk layout of an acquisition store: names, NGFF metadata, OME-XML, array metadata.

NGFF documents are built with yaozarrs' pydantic models (validated on construction), array
metadata with zarr-python itself, and the OME-XML with the standard library; nothing here is
hand-written JSON.
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from yaozarrs import v05

from tem_acq.store._files import read_json
from tem_acq.store.metadata import StoreHeader

RAW = "raw"
DENOISED = "denoised"
LEVEL = "0"
#: The per-frame table and store events, one JSON document per line (ignored by zarr readers).
EVENT_LOG = "tem_acq_log.jsonl"
OME_XML = "METADATA.ome.xml"
DIMENSION_NAMES = ("t", "y", "x")

Compression = Literal["lz4", "zstd", "none"]
COMPRESSIONS: tuple[str, ...] = ("lz4", "zstd", "none")

#: Blosc settings per compression choice; bit-shuffle in both (see benchmarks/bench_store.py:
#: on low-dose counts it makes lz4 nearly as good as zstd at 2-3 times the speed). zstd gets
#: 1 MiB blocks, which doubled its speed over blosc's automatic block size.
BLOSC_SETTINGS: dict[str, dict[str, Any]] = {
    "lz4": {"cname": "lz4", "clevel": 5, "blocksize": 0},
    "zstd": {"cname": "zstd", "clevel": 1, "blocksize": 2**20},
}

#: OME-XML pixel type names of the dtypes a camera or the denoiser can produce.
_OME_PIXEL_TYPES = {
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "float32": "float",
    "float64": "double",
}
SUPPORTED_DTYPES: tuple[str, ...] = tuple(_OME_PIXEL_TYPES)

_OME_NS = "http://www.openmicroscopy.org/Schemas/OME/2016-06"
_XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


@dataclass(frozen=True)
class ArrayLayout:
    """Geometry and encoding of one (t, y, x) image array."""

    name: str
    frame_shape: tuple[int, int]
    dtype: np.dtype[Any]
    shard_frames: int
    compression: Compression

    @property
    def fill_value(self) -> float | int:
        """NaN for float arrays (a frame not yet written reads as NaN), else 0."""
        return float("nan") if self.dtype.kind == "f" else 0

    def chunk_key(self, shard: int) -> str:
        """Name of a shard file in the array's directory (default key encoding, "." separator).

        The "." separator keeps every shard beside the array's zarr.json: no directory per
        shard to create and fsync.
        """
        return f"c.{shard}.0.0"


def image_group_doc(
    name: str, scale: tuple[float, float, float], *, leading: Literal["t", "pair"] = "t"
) -> dict[str, Any]:
    """The ``zarr.json`` of an NGFF image group with one level ``0`` of axes (t, y, x).

    ``leading="pair"`` makes the first axis the pairs stores' custom ``pair`` axis (NGFF allows
    one custom axis) instead of time in seconds.
    """
    first: v05.TimeAxis | v05.CustomAxis = (
        v05.TimeAxis(name="t", unit="second") if leading == "t" else v05.CustomAxis(name=leading)
    )
    image = v05.Image(
        multiscales=[
            v05.Multiscale(
                name=name,
                axes=[
                    first,
                    v05.SpaceAxis(name="y", unit="angstrom"),
                    v05.SpaceAxis(name="x", unit="angstrom"),
                ],
                datasets=[
                    v05.Dataset(
                        path=LEVEL,
                        coordinateTransformations=[v05.ScaleTransformation(scale=list(scale))],
                    )
                ],
            )
        ]
    )
    return _group_doc({"ome": image})


def root_group_doc(metadata: StoreHeader) -> dict[str, Any]:
    """The root ``zarr.json``: a bioformats2raw collection plus the tem-acq metadata."""
    return _group_doc(
        {
            "ome": v05.Bf2Raw(bioformats2raw_layout=3),  # type: ignore[call-arg]
            "tem_acq": metadata.model_dump(mode="json"),
        }
    )


def time_scale_documents(metadata: StoreHeader, images: list[str]) -> dict[str, Any]:
    """The documents that state a store's time axis, by path.

    The root (its header, with ``frame_interval_ms``) and each image group (its NGFF ``t``
    scale).
    """
    px = metadata.instrument.pixel_size_A
    scale = (metadata.frame_interval_s, px, px)
    return {
        "zarr.json": root_group_doc(metadata),
        **{f"{name}/zarr.json": image_group_doc(name, scale) for name in images},
    }


def ome_xml_sizes(path: Path) -> list[int] | None:
    """The ``SizeT`` of every image in the OME-XML at ``path``, or ``None`` if unreadable."""
    try:
        root = ET.fromstring(path.read_bytes())
        return [int(p.attrib["SizeT"]) for p in root.iter(f"{{{_OME_NS}}}Pixels")]
    except (OSError, ET.ParseError, KeyError, ValueError):
        return None


def series_group_doc(series: list[str]) -> dict[str, Any]:
    """The ``OME/zarr.json`` listing the images in the order of the OME-XML."""
    return _group_doc({"ome": v05.Series(series=series)})


def _group_doc(attributes: dict[str, Any]) -> dict[str, Any]:
    doc = v05.OMEZarrGroupJSON(attributes=attributes)  # type: ignore[arg-type]
    return doc.model_dump(mode="json", by_alias=True, exclude_none=True)


def array_doc(layout: ArrayLayout) -> dict[str, Any]:
    """The ``zarr.json`` of an empty (0, y, x) array, as zarr-python itself writes it.

    One chunk per frame inside shards of ``shard_frames`` frames, compressed with blosc
    (bit-shuffle) unless ``compression`` is ``"none"``, and ending in its crc32c
    (:func:`chunk_compressors`). The writer then only changes ``shape``.
    """
    import zarr

    height, width = layout.frame_shape
    with tempfile.TemporaryDirectory() as tmp:
        zarr.create_array(
            store=tmp,
            shape=(0, height, width),
            chunks=(1, height, width),
            shards=(layout.shard_frames, height, width),
            dtype=layout.dtype,
            compressors=chunk_compressors(layout.compression),
            fill_value=layout.fill_value,
            dimension_names=DIMENSION_NAMES,
            chunk_key_encoding={"name": "default", "separator": "."},
        )
        doc: dict[str, Any] = read_json(Path(tmp) / "zarr.json")
    return doc


def chunk_compressors(compression: Compression) -> list[Any]:
    """The bytes-to-bytes codecs of every chunk tem-acq writes: blosc (unless ``"none"``), crc32c.

    The crc32c comes last, over the compressed bytes, so that any zarr v3 reader refuses a
    damaged frame (a checksum error) instead of decoding it into wrong pixels, and
    ``tem-acq info --check`` verifies a frame without decompressing it.
    """
    from zarr.codecs import BloscCodec, Crc32cCodec

    codecs: list[Any] = []
    if compression != "none":
        codecs.append(BloscCodec(shuffle="bitshuffle", **BLOSC_SETTINGS[compression]))
    return [*codecs, Crc32cCodec()]


def image_xml_id(name: str) -> str:
    """The OME-XML ``Image`` ID of image group ``name`` (napari-ome-zarr opens ``name`` from it)."""
    return f"Image:{name}"


def ome_xml(
    metadata: StoreHeader,
    images: list[tuple[str, np.dtype[Any]]],
    frame_shape: tuple[int, int],
    frames: int,
) -> bytes:
    """A minimal OME-XML naming each image, in series order, for napari-ome-zarr.

    Each image's ``ID`` is ``Image:<group name>`` (``Image:raw``, ``Image:denoised``):
    napari-ome-zarr 0.10 opens a ``bioformats2raw.layout`` root by reading this XML and taking
    each ``Image`` ID, minus its ``Image:`` prefix, as the path of the image group; it ignores
    ``Name`` and ``OME/zarr.json``'s ``series``. ``Image:0`` sends it to a group ``0`` that we
    don't have (``KeyError: '0'``). Any non-blank text after ``Image:`` is a valid OME ID, and
    the elements stay in ``series`` order, as the layout requires. ``SizeT`` is the committed
    frame count (at least 1, as OME requires).
    """
    from tem_acq import __version__

    ET.register_namespace("", _OME_NS)
    ET.register_namespace("xsi", _XSI_NS)
    root = ET.Element(
        f"{{{_OME_NS}}}OME",
        {
            "Creator": f"tem-acq {__version__}",
            f"{{{_XSI_NS}}}schemaLocation": f"{_OME_NS} {_OME_NS}/ome.xsd",
        },
    )
    height, width = frame_shape
    # OME-XML states physical sizes in nm here (a unit of the file format, for its readers);
    # tem-acq itself is in angstrom throughout
    pixel_size_nm = metadata.instrument.pixel_size_A / 10.0
    for name, dtype in images:
        image = ET.SubElement(root, f"{{{_OME_NS}}}Image", {"ID": image_xml_id(name), "Name": name})
        date = ET.SubElement(image, f"{{{_OME_NS}}}AcquisitionDate")
        date.text = metadata.created.replace(tzinfo=None, microsecond=0).isoformat()
        pixels = ET.SubElement(
            image,
            f"{{{_OME_NS}}}Pixels",
            {
                "ID": f"Pixels:{name}",
                "DimensionOrder": "XYZCT",
                "Type": _OME_PIXEL_TYPES[dtype.name],
                "SizeX": str(width),
                "SizeY": str(height),
                "SizeZ": "1",
                "SizeC": "1",
                "SizeT": str(max(frames, 1)),
                "PhysicalSizeX": f"{pixel_size_nm:.6g}",
                "PhysicalSizeXUnit": "nm",
                "PhysicalSizeY": f"{pixel_size_nm:.6g}",
                "PhysicalSizeYUnit": "nm",
                "TimeIncrement": f"{metadata.frame_interval_s:.6g}",
                "TimeIncrementUnit": "s",
            },
        )
        ET.SubElement(
            pixels,
            f"{{{_OME_NS}}}Channel",
            {"ID": f"Channel:{name}:0", "Name": name, "SamplesPerPixel": "1"},
        )
        ET.SubElement(pixels, f"{{{_OME_NS}}}MetadataOnly")
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml
