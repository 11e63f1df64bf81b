"""Acquisition store: round trips, layout, shard boundaries, out-of-order denoised frames."""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaozarrs
import zarr

from tem_acq.errors import StoreError
from tem_acq.store import (
    AcquisitionMetadata,
    AcquisitionWriter,
    FrameRecord,
    ModelProvenance,
    open_store,
)
from tem_acq.store._files import read_shard_chunks, shard_parts

SHAPE = (24, 20)

MetadataBuilder = Callable[..., AcquisitionMetadata]  # the conftest fixture `metadata`


def raw_frame(index: int, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    """A frame whose every pixel encodes its index (and its position, to catch transposes)."""
    height, width = shape
    return ((np.arange(height * width).reshape(shape) + 1000 * index) % 65536).astype(np.uint16)


def den_frame(index: int, shape: tuple[int, int] = SHAPE) -> np.ndarray:
    return np.full(shape, index + 0.25, dtype=np.float32)


def write_store(path: Path, metadata: AcquisitionMetadata, n: int, **kwargs: object) -> None:
    with AcquisitionWriter(path, metadata, SHAPE, **kwargs) as writer:  # type: ignore[arg-type]
        for i in range(n):
            index = writer.append_raw(raw_frame(i), FrameRecord(stage_x_um=i, extra={"i": i}))
            writer.write_denoised(index, den_frame(i), latency_ms=float(i))


def test_round_trip(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    write_store(path, metadata(), 37)
    store = open_store(path)
    assert store.complete
    assert store.errors == []
    assert store.raw.shape == (37, *SHAPE)
    assert store.raw.dtype == np.uint16
    assert store.denoised is not None
    assert store.denoised.shape == (37, *SHAPE)
    assert store.denoised.dtype == np.float32
    for i in range(37):
        np.testing.assert_array_equal(store.raw[i], raw_frame(i))
        np.testing.assert_array_equal(store.denoised[i], den_frame(i))
    rows = store.frames
    assert [row.index for row in rows] == list(range(37))
    assert [row.stage_x_um for row in rows] == list(range(37))
    assert rows[5].extra == {"i": 5}
    assert all(row.denoised and row.skipped is None for row in rows)
    assert rows[7].denoise_latency_ms == 7.0
    assert store.metadata == metadata().model_copy(
        update={"created": store.metadata.created, "software": store.metadata.software}
    )
    table = store.frame_table()
    np.testing.assert_array_equal(table["index"], np.arange(37))
    np.testing.assert_array_equal(table["stage_x_um"], np.arange(37.0))
    assert table["timestamp"].dtype == np.dtype("datetime64[us]")


def test_layout_validates_with_yaozarrs_and_names_series(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.zarr"
    write_store(path, metadata(), 5)
    yaozarrs.validate_zarr_store(str(path))
    root = json.loads((path / "zarr.json").read_text())
    assert root["attributes"]["ome"]["bioformats2raw.layout"] == 3
    assert root["attributes"]["tem_acq"]["kind"] == "acquisition"
    series = json.loads((path / "OME" / "zarr.json").read_text())
    assert series["attributes"]["ome"]["series"] == ["raw", "denoised"]
    image = json.loads((path / "raw" / "zarr.json").read_text())["attributes"]["ome"]
    (multiscale,) = image["multiscales"]
    assert [(a["name"], a["type"], a["unit"]) for a in multiscale["axes"]] == [
        ("t", "time", "second"),
        ("y", "space", "angstrom"),
        ("x", "space", "angstrom"),
    ]
    scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == pytest.approx([0.008, 29.88, 29.88])
    array = json.loads((path / "raw" / "0" / "zarr.json").read_text())
    assert array["dimension_names"] == ["t", "y", "x"]
    assert array["chunk_grid"]["configuration"]["chunk_shape"] == [16, *SHAPE]
    (sharding,) = array["codecs"]
    assert sharding["configuration"]["chunk_shape"] == [1, *SHAPE]


def test_ome_xml_names_images_in_series_order(tmp_path: Path, metadata: MetadataBuilder) -> None:
    ome_types = pytest.importorskip("ome_types")
    path = tmp_path / "run.zarr"
    write_store(path, metadata(), 3)
    ome = ome_types.from_xml((path / "OME" / "METADATA.ome.xml").read_text())
    assert [image.name for image in ome.images] == ["raw", "denoised"]
    assert ome.images[0].pixels.type.value == "uint16"
    assert ome.images[1].pixels.type.value == "float"
    assert ome.images[0].pixels.size_t == 3
    assert ome.images[0].pixels.physical_size_x == pytest.approx(2.988)


def test_other_readers_decode_the_shards(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    write_store(
        path, metadata(), 19, shard_frames=4, compression="zstd", denoised_compression="none"
    )
    raw = zarr.open_array(str(path / "raw" / "0"), mode="r")
    np.testing.assert_array_equal(raw[18], raw_frame(18))
    ts = pytest.importorskip("tensorstore")
    for name, expected in (("raw", raw_frame(17)), ("denoised", den_frame(17))):
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / name / "0")}}
        array = ts.open(spec).result()
        assert array.shape == (19, *SHAPE)
        np.testing.assert_array_equal(array[17].read().result(), expected)


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 8, 9, 15, 16, 17])
def test_shard_boundaries(tmp_path: Path, n: int, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    with AcquisitionWriter(path, metadata(), SHAPE, shard_frames=4, denoised=False) as writer:
        for i in range(n):
            writer.append_raw(raw_frame(i))
            # Whole shards are committed the moment they fill, before close.
            assert writer.committed_frames == (i + 1) // 4 * 4
    store = open_store(path)
    assert store.raw.shape[0] == n
    assert store.denoised is None
    assert len(store.frames) == n
    if n:
        expected = np.stack([raw_frame(i) for i in range(n)])
        np.testing.assert_array_equal(store.raw[:], expected)
    shards = sorted(p.name for p in (path / "raw" / "0").glob("c.*"))
    assert len(shards) == -(-n // 4)


def test_denoised_out_of_order_skipped_and_missing(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.zarr"
    rng = random.Random(3)
    with AcquisitionWriter(path, metadata(), SHAPE, shard_frames=4) as writer:
        for i in range(22):
            writer.append_raw(raw_frame(i))
        order = list(range(22))
        rng.shuffle(order)
        for i in order:
            if i % 5 == 0:
                writer.mark_skipped(i, "denoiser behind")
            elif i % 7 != 3:  # 3, 10, 17 never arrive
                writer.write_denoised(i, den_frame(i), latency_ms=10.0 + i)
    store = open_store(path)
    assert store.denoised is not None
    values = store.denoised[:, 0, 0]
    for i in range(22):
        if i % 5 == 0 or i % 7 == 3:
            assert np.isnan(values[i]), i
        else:
            assert values[i] == pytest.approx(i + 0.25)
    info = store.info()
    assert info["skipped"] == 5
    assert info["skipped_reasons"] == {"denoiser behind": 5}
    denoised = [i for i in range(22) if i % 5 and i % 7 != 3]
    assert info["denoised_frames"] == len(denoised)
    latencies = [10.0 + i for i in denoised]
    assert info["denoise_latency_p50_ms"] == pytest.approx(np.percentile(latencies, 50))
    assert info["denoise_latency_p95_ms"] == pytest.approx(np.percentile(latencies, 95))
    rows = store.frames
    assert rows[5].skipped == "denoiser behind" and not rows[5].denoised
    assert rows[3].skipped is None and not rows[3].denoised


def test_late_denoised_frame_after_its_shard_left_memory(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.zarr"
    with AcquisitionWriter(
        path, metadata(), SHAPE, shard_frames=4, max_pending_denoised_shards=1
    ) as writer:
        for i in range(20):
            writer.append_raw(raw_frame(i))
            if i != 1:
                writer.write_denoised(i, den_frame(i))
        # Shard 0 was written without frame 1 long ago; the late frame rewrites it.
        assert 0 not in writer._pending
        writer.write_denoised(1, den_frame(1))
    store = open_store(path)
    assert store.denoised is not None
    np.testing.assert_array_equal(store.denoised[:4, 0, 0], [0.25, 1.25, 2.25, 3.25])
    assert store.denoised_frames == 20


def test_flush_commits_partial_shard_and_rewrites_it(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.zarr"
    writer = AcquisitionWriter(path, metadata(), SHAPE, shard_frames=8)
    for i in range(3):
        writer.append_raw(raw_frame(i))
    writer.write_denoised(1, den_frame(1))
    writer.flush()
    assert writer.committed_frames == 3
    partial = open_store(path)
    assert partial.raw.shape[0] == 3 and not partial.complete
    assert partial.denoised_frames == 1
    for i in range(3, 8):
        writer.append_raw(raw_frame(i))
    writer.close()
    store = open_store(path)
    np.testing.assert_array_equal(store.raw[:, 0, 0], [raw_frame(i)[0, 0] for i in range(8)])
    assert store.complete and store.denoised_frames == 1
    assert not list((path / "raw" / "0").glob(".*tmp"))


def test_flush_interval_commits_waiting_frames(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    writer = AcquisitionWriter(path, metadata(), SHAPE, flush_interval_s=0.05)
    writer.append_raw(raw_frame(0))
    assert writer.committed_frames == 0
    time.sleep(0.1)
    writer.append_raw(raw_frame(1))
    assert writer.committed_frames == 2
    assert open_store(path).raw.shape[0] == 2
    writer.close()


def test_record_error_and_incomplete_store(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    writer = AcquisitionWriter(path, metadata(), SHAPE, shard_frames=2)
    for i in range(5):
        writer.append_raw(raw_frame(i))
    writer.record_error("stage did not settle")
    # Never closed, as after a crash: committed frames read, the error is there.
    store = open_store(path)
    assert not store.complete
    assert store.raw.shape[0] == 4
    assert store.errors == ["stage did not settle"]
    writer.close()
    assert open_store(path).complete


def test_exception_inside_with_block_is_recorded_and_frames_kept(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.zarr"
    with pytest.raises(RuntimeError), AcquisitionWriter(path, metadata(), SHAPE) as writer:
        for i in range(3):
            writer.append_raw(raw_frame(i))
        raise RuntimeError("camera lost")
    store = open_store(path)
    assert store.raw.shape[0] == 3
    assert store.errors == ["acquisition ended by RuntimeError: camera lost"]


def test_info_reports_metadata_and_model(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    model = ModelProvenance(name="unet-r18", sha256="ab" * 32, normalisation={"kind": "dose"})
    with AcquisitionWriter(path, metadata(model=model), SHAPE) as writer:
        writer.append_raw(raw_frame(0))
    info = open_store(path).info()
    assert info["kind"] == "acquisition"
    assert info["frames"] == 1
    assert info["shape"] == [1, *SHAPE]
    assert info["dtype"] == "uint16"
    assert info["exposure_ms"] == 3.3
    assert info["dose_e_per_px"] == 4.6
    assert info["dose_e_per_A2"] == pytest.approx(4.6 / 29.88**2)
    assert info["pixel_size_A"] == 29.88
    assert info["model"] == {"name": "unet-r18", "sha256": "ab" * 32}
    assert info["denoised_frames"] == 0
    assert info["denoise_latency_p50_ms"] is None
    assert info["complete"] is True
    json.dumps(info)


def test_model_normalization_is_written_with_the_cards_spelling(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.zarr"
    model = ModelProvenance(name="unet", sha256="ab" * 32, normalization={"kind": "dose"})
    with AcquisitionWriter(path, metadata(model=model), SHAPE) as writer:
        writer.append_raw(raw_frame(0))
    root = json.loads((path / "zarr.json").read_text())
    written = root["attributes"]["tem_acq"]
    assert written["schema_version"] == "1.4"
    assert written["model"]["normalization"] == {"kind": "dose"}
    assert "normalisation" not in written["model"]
    # a store written before schema 1.1 spelt it "normalisation": it still reads
    written["schema_version"] = "1.0"
    written["model"]["normalisation"] = written["model"].pop("normalization")
    (path / "zarr.json").write_text(json.dumps(root))
    assert open_store(path).metadata.model == model


def test_other_dtypes_and_compression_none(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    frame = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) / 7
    with AcquisitionWriter(path, metadata(), SHAPE, "float32", compression="none") as writer:
        writer.append_raw(frame)
        writer.append_raw(frame.astype(">f4"))  # big-endian input is the same pixel type
    store = open_store(path)
    np.testing.assert_array_equal(store.raw[1], frame)


def test_shard_encoding_round_trips(tmp_path: Path) -> None:
    chunks = [b"abc", None, b"", b"defg"]
    path = tmp_path / "shard"
    path.write_bytes(b"".join(shard_parts(chunks, 4)))
    assert read_shard_chunks(path, 4) == chunks
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"damaged index"):
        read_shard_chunks(path, 4)


def test_reader_does_not_import_pycromanager() -> None:
    import subprocess

    code = (
        "import sys, tem_acq.store, tem_acq.cli.info; "
        "assert 'pycromanager' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_writer_rejects_bad_arguments(tmp_path: Path, metadata: MetadataBuilder) -> None:
    with pytest.raises(StoreError, match=r"frame_shape must be positive"):
        AcquisitionWriter(tmp_path / "a.zarr", metadata(), (0, 4))
    with pytest.raises(StoreError, match=r"cannot be stored"):
        AcquisitionWriter(tmp_path / "a.zarr", metadata(), SHAPE, "complex64")
    with pytest.raises(StoreError, match=r"compression must be one of"):
        AcquisitionWriter(tmp_path / "a.zarr", metadata(), SHAPE, compression="gzip")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=r"shard_frames must be a positive integer"):
        AcquisitionWriter(tmp_path / "a.zarr", metadata(), SHAPE, shard_frames=0)
    assert not (tmp_path / "a.zarr").exists()
