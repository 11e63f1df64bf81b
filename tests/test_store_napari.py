"""The collection root of a store opens in napari-ome-zarr (acquisition and pairs stores).

napari-ome-zarr (0.10) opens a ``bioformats2raw.layout`` root through ``OME/METADATA.ome.xml``
only: for each ``<Image ID="Image:X">`` it opens the group ``X`` (it ignores ``Name`` and
``OME/zarr.json``'s ``series``). Writing ``Image:0`` made it fail with ``KeyError: '0'``.
The structural checks run everywhere; the napari-ome-zarr check runs where it is installed.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaozarrs
import zarr
from test_store import SHAPE, MetadataBuilder, raw_frame, write_store
from test_view import make_pairs_store

from tem_acq.store import AcquisitionWriter, FrameRecord, open_pairs, open_store

_OME = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


def _xml_images(root: Path) -> list[tuple[str, str]]:
    """(ID, Name) of each Image element of the store's OME-XML, in document order."""
    xml = ET.parse(root / "OME" / "METADATA.ome.xml").getroot()
    assert xml.tag == f"{_OME}OME"
    return [(el.attrib["ID"], el.attrib["Name"]) for el in xml if el.tag == f"{_OME}Image"]


def _series(root: Path) -> list[str]:
    series: list[str] = json.loads((root / "OME" / "zarr.json").read_text())["attributes"]["ome"][
        "series"
    ]
    return series


def resolve_like_napari_ome_zarr(root: Path) -> list[tuple[str, tuple[int, ...]]]:
    """napari-ome-zarr's way to a collection's images, without napari: (group, level-0 shape).

    Each ``Image:X`` ID of the OME-XML names the group ``X``, which must be an NGFF image.
    """
    group = zarr.open_group(str(root), mode="r")
    root_ome: Any = group.attrs["ome"]
    assert "bioformats2raw.layout" in root_ome
    found = []
    for image_id, _ in _xml_images(root):
        assert image_id.startswith("Image:")
        path = image_id.removeprefix("Image:")
        image: Any = group[path]  # KeyError here is napari-ome-zarr's KeyError
        level = image.attrs["ome"]["multiscales"][0]["datasets"][0]["path"]
        found.append((path, tuple(image[level].shape)))
    return found


def check_collection(root: Path, expected: dict[str, tuple[int, ...]]) -> None:
    """The OME-XML structure that napari-ome-zarr needs, plus the layout's own rules."""
    images = _xml_images(root)
    # napari-ome-zarr: the ID after "Image:" is the image group's path
    assert [image_id for image_id, _ in images] == [f"Image:{name}" for name in expected]
    # bioformats2raw.layout: the XML's images are the series, in the same order
    assert [name for _, name in images] == _series(root) == list(expected)
    assert resolve_like_napari_ome_zarr(root) == list(expected.items())
    yaozarrs.validate_zarr_store(str(root))


def open_root_in_napari_ome_zarr(root: Path) -> list[tuple[Any, dict[str, Any], str]]:
    """The layer data napari-ome-zarr's reader gives for the root (no viewer, no Qt)."""
    reader_module = pytest.importorskip("napari_ome_zarr._reader")
    reader = reader_module.napari_get_reader(str(root))
    assert reader is not None
    layers: list[tuple[Any, dict[str, Any], str]] = reader(str(root))
    return layers


def test_acquisition_root_is_a_collection_napari_can_follow(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.ome.zarr"
    write_store(path, metadata(), 5)
    check_collection(path, {"raw": (5, *SHAPE), "denoised": (5, *SHAPE)})
    store = open_store(path)
    assert store.raw.shape == (5, *SHAPE)


def test_raw_only_store_and_a_store_still_being_written(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.ome.zarr"
    with AcquisitionWriter(path, metadata(), SHAPE, denoised=False) as writer:
        writer.append_raw(raw_frame(0), FrameRecord())
        writer.flush()
        # the OME-XML is written when the store is created: the root opens mid-acquisition
        check_collection(path, {"raw": (1, *SHAPE)})
    check_collection(path, {"raw": (1, *SHAPE)})


def test_pairs_root_is_a_collection_napari_can_follow(tmp_path: Path) -> None:
    path = make_pairs_store(tmp_path / "pairs.ome.zarr", fields=2, k=2)
    check_collection(path, {"low": (4, 32, 40), "high": (4, 32, 40), "truth": (4, 32, 40)})
    assert open_pairs(path).low.shape == (4, 32, 40)


def test_ome_xml_ids_are_valid_ome(tmp_path: Path, metadata: MetadataBuilder) -> None:
    """``Image:raw`` etc. are valid OME IDs (ome-types parses and checks them)."""
    ome_types = pytest.importorskip("ome_types")
    path = tmp_path / "run.ome.zarr"
    write_store(path, metadata(), 2)
    ome = ome_types.from_xml((path / "OME" / "METADATA.ome.xml").read_text())
    assert [(i.id, i.name, i.pixels.id) for i in ome.images] == [
        ("Image:raw", "raw", "Pixels:raw"),
        ("Image:denoised", "denoised", "Pixels:denoised"),
    ]


def test_napari_ome_zarr_opens_the_acquisition_root(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.ome.zarr"
    write_store(path, metadata(), 5)
    layers = open_root_in_napari_ome_zarr(path)
    assert [(kind, [level.shape for level in data]) for data, _, kind in layers] == [
        ("image", [(5, *SHAPE)]),
        ("image", [(5, *SHAPE)]),
    ]
    (raw, raw_meta, _), (den, _, _) = layers
    assert raw[0].dtype == np.uint16 and den[0].dtype == np.float32
    np.testing.assert_array_equal(np.asarray(raw[0][3]), raw_frame(3))
    assert raw_meta["axis_labels"] == ("t", "y", "x")
    assert raw_meta["units"] == ("second", "angstrom", "angstrom")


def test_napari_ome_zarr_opens_the_pairs_root(tmp_path: Path) -> None:
    path = make_pairs_store(tmp_path / "pairs.ome.zarr", fields=2, k=2)
    layers = open_root_in_napari_ome_zarr(path)
    assert [[level.shape for level in data] for data, _, _ in layers] == [[(4, 32, 40)]] * 3
    assert layers[0][1]["axis_labels"] == ("pair", "y", "x")
