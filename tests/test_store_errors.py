"""Bad input to the acquisition store: each fails with a StoreError that names problem and fix."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from faults.disks import tmpfs
from pydantic import ValidationError

import tem_acq.store._files as files
from tem_acq.errors import StoreError
from tem_acq.store import (
    AcquisitionMetadata,
    AcquisitionWriter,
    Camera,
    Instrument,
    ModelProvenance,
    open_store,
    validate_metadata,
)
from tem_acq.store.root import parse_store_metadata

SHAPE = (24, 20)

# the conftest fixtures `metadata_dict` and `metadata`
FieldsBuilder = Callable[..., dict[str, Any]]
MetadataBuilder = Callable[..., AcquisitionMetadata]


def frame(index: int, shape: tuple[int, int] = SHAPE, dtype: Any = np.uint16) -> np.ndarray:
    return np.full(shape, index, dtype=dtype)


def make_store(path: Path, metadata: AcquisitionMetadata, n: int = 3) -> None:
    with AcquisitionWriter(path, metadata, SHAPE) as writer:
        for i in range(n):
            writer.append_raw(frame(i))


# -- existing paths --------------------------------------------------------------------------


def test_existing_store_is_never_overwritten_silently(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.zarr"
    make_store(path, metadata(), 3)
    with pytest.raises(StoreError, match=r"already exists: pass --overwrite \(overwrite=True\)"):
        AcquisitionWriter(path, metadata(), SHAPE)
    assert open_store(path).raw.shape[0] == 3  # untouched


def test_overwrite_replaces_a_store(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    make_store(path, metadata(), 3)
    with AcquisitionWriter(path, metadata(), SHAPE, overwrite=True) as writer:
        writer.append_raw(frame(7))
    store = open_store(path)
    assert store.raw.shape[0] == 1 and store.raw[0, 0, 0] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.zarr"]  # nothing left behind


def test_overwrite_refuses_what_is_not_a_store(tmp_path: Path, metadata: MetadataBuilder) -> None:
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("precious")
    with pytest.raises(StoreError, match=r"non-empty directory that is not a zarr store"):
        AcquisitionWriter(folder, metadata(), SHAPE, overwrite=True)
    assert (folder / "chapter1.tex").read_text() == "precious"
    file = tmp_path / "notes.txt"
    file.write_text("x")
    with pytest.raises(StoreError, match=r"is a file, not a store"):
        AcquisitionWriter(file, metadata(), SHAPE, overwrite=True)


# -- opening what is not an acquisition store ------------------------------------------------


def test_open_missing_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no store at .*the path does not exist"):
        open_store(tmp_path / "nope.zarr")


def test_open_a_file(tmp_path: Path) -> None:
    file = tmp_path / "frames.tif"
    file.write_bytes(b"II*\0")
    with pytest.raises(StoreError, match=r"is a file, not a store: .*directory \(NAME.zarr\)"):
        open_store(file)


def test_open_a_plain_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"is a directory but not a zarr v3 store \(no zarr"):
        open_store(tmp_path)


def test_open_a_zarr_v2_store(tmp_path: Path) -> None:
    zarr.create_group(str(tmp_path / "v2.zarr"), zarr_format=2)
    with pytest.raises(StoreError, match=r"not a zarr v3 store \(zarr v2\?\)"):
        open_store(tmp_path / "v2.zarr")


def test_open_a_foreign_zarr_store(tmp_path: Path) -> None:
    zarr.create_group(str(tmp_path / "other.zarr"), attributes={"ome": {"version": "0.5"}})
    with pytest.raises(StoreError, match=r"zarr store but not a tem-acq store"):
        open_store(tmp_path / "other.zarr")


def _edit_root(path: Path, **tem_acq: Any) -> None:
    root = json.loads((path / "zarr.json").read_text())
    root["attributes"]["tem_acq"].update(tem_acq)
    (path / "zarr.json").write_text(json.dumps(root))


def test_open_a_store_of_another_kind(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "pairs.zarr"
    make_store(path, metadata())
    _edit_root(path, kind="pairs")
    with pytest.raises(StoreError, match=r"is a tem-acq 'pairs' store, not an acquisition store"):
        open_store(path)
    _edit_root(path, kind="hologram")
    with pytest.raises(StoreError, match=r"unknown kind 'hologram'.*upgrade"):
        open_store(path)


def test_open_a_store_from_a_newer_schema(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "future.zarr"
    make_store(path, metadata())
    _edit_root(path, schema_version="2.0")
    with pytest.raises(StoreError, match=r"store schema 2.0, newer than .* \(1.x\): upgrade"):
        open_store(path)


def test_newer_minor_schema_with_new_fields_says_upgrade(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "minor.zarr"
    make_store(path, metadata())
    _edit_root(path, schema_version="1.7", hologram_mode="off-axis")
    with pytest.raises(StoreError, match=r"written with schema 1.7.*hologram_mode"):
        open_store(path)


def test_open_a_store_with_invalid_metadata(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "bad.zarr"
    make_store(path, metadata())
    root = json.loads((path / "zarr.json").read_text())
    root["attributes"]["tem_acq"]["instrument"]["pixel_size_A"] = 0
    (path / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(StoreError, match=r"invalid tem_acq metadata.*pixel_size_A must be > 0"):
        open_store(path)


def test_open_a_store_missing_its_raw_array(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "damaged.zarr"
    make_store(path, metadata())
    shutil.rmtree(path / "raw" / "0")
    with pytest.raises(StoreError, match=r"no readable raw/0 array.*damaged"):
        open_store(path)


def test_missing_event_log_is_reported_not_fatal(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "nolog.zarr"
    make_store(path, metadata(), 2)
    (path / "tem_acq_log.jsonl").unlink()
    store = open_store(path)
    assert store.raw.shape[0] == 2
    assert not store.complete
    assert any("missing" in e for e in store.errors)


# -- metadata ------------------------------------------------------------------------------


@pytest.mark.parametrize("pixel_size", [0, -1.5, float("nan")])
def test_pixel_size_must_be_positive(pixel_size: float, metadata_dict: FieldsBuilder) -> None:
    data = metadata_dict(instrument={"voltage_kV": 200, "pixel_size_A": pixel_size})
    with pytest.raises(ValidationError, match=r"Micro-Manager reports 0 when no pixel size"):
        AcquisitionMetadata.model_validate(data)
    with pytest.raises(StoreError, match=r"instrument.pixel_size_A: pixel_size_A must be > 0"):
        validate_metadata(data)


def test_writer_refuses_invalid_metadata_before_creating_anything(
    tmp_path: Path, metadata_dict: FieldsBuilder
) -> None:
    data = metadata_dict(instrument={"voltage_kV": 200, "pixel_size_A": 0})
    with pytest.raises(StoreError, match=r"invalid acquisition metadata.*Pixel Size Calibration"):
        AcquisitionWriter(tmp_path / "run.zarr", data, SHAPE)
    assert not (tmp_path / "run.zarr").exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dose_e_per_px", 0),
        ("dose_e_per_px", -4.6),
        ("dose_rate_e_per_px_per_s", 0),
        ("dose_e_per_A2", -0.01),
        ("exposure_ms", 0),
    ],
)
def test_doses_and_exposure_must_be_positive(
    field: str, value: float, metadata_dict: FieldsBuilder
) -> None:
    with pytest.raises(StoreError, match=rf"{field}: Input should be greater than 0"):
        validate_metadata(metadata_dict(**{field: value}))


def test_camera_conversion_factor_must_be_positive(metadata_dict: FieldsBuilder) -> None:
    camera = {"name": "OneView", "counts_per_electron": 0}
    with pytest.raises(StoreError, match=r"camera.counts_per_electron: Input should be greater"):
        validate_metadata(metadata_dict(camera=camera))


def test_doses_are_derived_and_checked(
    metadata_dict: FieldsBuilder, metadata: MetadataBuilder
) -> None:
    meta = metadata(dose_e_per_px=None, dose_rate_e_per_px_per_s=1000.0)
    assert meta.dose_e_per_px == pytest.approx(3.3)
    assert meta.dose_e_per_A2 == pytest.approx(3.3 / 29.88**2)
    meta = metadata(dose_e_per_px=None, dose_e_per_A2=0.01)
    assert meta.dose_e_per_px == pytest.approx(0.01 * 29.88**2)
    assert metadata(dose_e_per_px=None).dose_e_per_A2 is None  # dose unknown: none invented
    with pytest.raises(StoreError, match=r"disagrees with dose_rate_e_per_px_per_s=10"):
        validate_metadata(metadata_dict(dose_rate_e_per_px_per_s=10.0))
    with pytest.raises(StoreError, match=r"dose_e_per_A2=1.0 disagrees"):
        validate_metadata(metadata_dict(dose_e_per_A2=1.0))


def test_unknown_fields_and_bad_model_hash_are_refused(metadata_dict: FieldsBuilder) -> None:
    with pytest.raises(StoreError, match=r"pixel_size: Extra inputs are not permitted"):
        validate_metadata(metadata_dict(pixel_size=3.0))
    with pytest.raises(ValidationError, match=r"sha256"):
        ModelProvenance(name="unet", sha256="not-a-hash")


def test_metadata_round_trips_through_json(metadata: MetadataBuilder) -> None:
    meta = metadata(
        model=ModelProvenance(name="unet", sha256="0" * 64, normalisation={"scale": 1.0})
    )
    again = parse_store_metadata({"tem_acq": meta.model_dump(mode="json")}, "here")
    assert again == meta


def test_software_versions_only_report_loaded_packages(metadata: MetadataBuilder) -> None:
    import sys

    software = metadata().software
    assert software.numpy == np.__version__
    assert (software.torch is None) == ("torch" not in sys.modules)
    assert (software.pycromanager is None) == ("pycromanager" not in sys.modules)


# -- frames ----------------------------------------------------------------------------------


def test_frame_shape_change_mid_acquisition(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    with AcquisitionWriter(path, metadata(), SHAPE) as writer:
        writer.append_raw(frame(0))
        writer.append_raw(frame(1))
        with pytest.raises(
            StoreError,
            match=r"raw frame 2 is \(12, 10\) uint16, but this store holds \(24, 20\) uint16 "
            r"frames: the camera's ROI, binning or pixel type changed mid-acquisition",
        ):
            writer.append_raw(frame(2, (12, 10)))
        writer.append_raw(frame(2))  # the writer is still usable
    store = open_store(path)
    np.testing.assert_array_equal(store.raw[:, 0, 0], [0, 1, 2])


def test_frame_dtype_change_mid_acquisition(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    with AcquisitionWriter(path, metadata(), SHAPE) as writer:
        writer.append_raw(frame(0))
        with pytest.raises(StoreError, match=r"is \(24, 20\) float32, but this store holds"):
            writer.append_raw(frame(1, dtype=np.float32))
    assert open_store(path).raw.shape[0] == 1


def test_bad_denoised_frames(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    with AcquisitionWriter(path, metadata(), SHAPE) as writer:
        writer.append_raw(frame(0))
        writer.append_raw(frame(1))
        with pytest.raises(StoreError, match=r"dtype uint16, expected a floating-point array"):
            writer.write_denoised(0, frame(0))
        with pytest.raises(StoreError, match=r"denoised frame 0 is \(5, 5\) float32"):
            writer.write_denoised(0, np.zeros((5, 5), np.float32))
        with pytest.raises(StoreError, match=r"no raw frame with index 2 .*2 appended"):
            writer.write_denoised(2, np.zeros(SHAPE, np.float32))
        with pytest.raises(StoreError, match=r"no raw frame with index -1"):
            writer.mark_skipped(-1, "x")
        writer.write_denoised(0, np.zeros(SHAPE, np.float64))  # cast to float32
        with pytest.raises(StoreError, match=r"frame 0 already has a denoised frame"):
            writer.write_denoised(0, np.zeros(SHAPE, np.float32))
        writer.mark_skipped(1, "behind")
        with pytest.raises(StoreError, match=r"frame 1 already has been marked skipped"):
            writer.write_denoised(1, np.zeros(SHAPE, np.float32))
        with pytest.raises(StoreError, match=r"latency_ms must be >= 0"):
            writer.append_raw(frame(2))
            writer.write_denoised(2, np.zeros(SHAPE, np.float32), latency_ms=-1)


def test_store_without_denoised_image(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "run.zarr"
    with AcquisitionWriter(path, metadata(), SHAPE, denoised=False) as writer:
        writer.append_raw(frame(0))
        with pytest.raises(StoreError, match=r"created without a denoised image"):
            writer.write_denoised(0, np.zeros(SHAPE, np.float32))
    store = open_store(path)
    assert store.denoised is None and store.info()["denoised_frames"] == 0


def test_invalid_frame_record(tmp_path: Path, metadata: MetadataBuilder) -> None:
    with AcquisitionWriter(tmp_path / "run.zarr", metadata(), SHAPE) as writer:
        with pytest.raises(StoreError, match=r"invalid record for frame 0: dose_e_per_px"):
            writer.append_raw(frame(0), {"dose_e_per_px": -1})
        with pytest.raises(StoreError, match=r"stage_q_um: Extra inputs are not permitted"):
            writer.append_raw(frame(0), {"stage_q_um": 1})


def test_closed_writer(tmp_path: Path, metadata: MetadataBuilder) -> None:
    writer = AcquisitionWriter(tmp_path / "run.zarr", metadata(), SHAPE)
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(StoreError, match=r"is closed: create a new store"):
        writer.append_raw(frame(0))


# -- full disk -------------------------------------------------------------------------------


def test_full_disk_keeps_committed_frames_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "run.zarr"
    full = False
    write_all = files._write_all

    def write_or_fail(fd: int, parts: Any) -> None:
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        write_all(fd, parts)

    monkeypatch.setattr(files, "_write_all", write_or_fail)
    writer = AcquisitionWriter(path, metadata(), SHAPE, shard_frames=4)
    for i in range(8):
        writer.append_raw(frame(i))
        writer.write_denoised(i, np.full(SHAPE, i, np.float32))
    full = True
    for i in range(8, 11):
        writer.append_raw(frame(i))
    with pytest.raises(
        StoreError,
        match=r"could not write raw frames 8-11 to .*: the disk is full. The raw frames 0-7 are "
        r"safely stored; the 4 newer raw frames are kept in memory: free space",
    ):
        writer.append_raw(frame(11))
    # While the disk is full: what was committed reads, and more frames are refused.
    store = open_store(path)
    assert store.raw.shape[0] == 8
    np.testing.assert_array_equal(store.raw[:, 0, 0], np.arange(8))
    with pytest.raises(StoreError, match=r"the disk is full"):
        writer.append_raw(frame(12))
    assert writer.frames == 12
    # Space is freed: closing writes the frames kept in memory, and the error stays on record.
    full = False
    writer.close()
    store = open_store(path)
    assert store.complete
    np.testing.assert_array_equal(store.raw[:, 0, 0], np.arange(12))
    assert store.denoised_frames == 8
    assert any("the disk is full" in e for e in store.errors)
    assert not list(path.rglob(".*.tmp"))


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    with tmpfs(tmp_path / "tiny", "1m") as mount:
        yield mount


def test_really_full_disk(tiny_disk: Path, metadata: MetadataBuilder) -> None:
    path = tiny_disk / "run.zarr"
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 65535, size=(200, 64, 64), dtype=np.uint16)  # incompressible
    writer = AcquisitionWriter(path, metadata(), (64, 64), shard_frames=4, denoised=False)
    with pytest.raises(StoreError, match=r"the disk is full.*free space on that disk") as error:
        for i in range(200):
            writer.append_raw(frames[i])
    store = open_store(path)
    n = store.raw.shape[0]
    assert n > 0 and f"frames 0-{n - 1} are safely stored" in str(error.value)
    np.testing.assert_array_equal(store.raw[:], frames[:n])
    assert not store.complete
    with pytest.raises(StoreError, match=r"the disk is full"):
        writer.close()
    assert open_store(path).raw.shape[0] == n


def test_no_room_to_create_a_store(tiny_disk: Path, metadata: MetadataBuilder) -> None:
    (tiny_disk / "filler").write_bytes(b"\0" * (1024 * 1024 - 4096))
    with pytest.raises(StoreError, match=r"cannot create the store .*free space on that disk"):
        AcquisitionWriter(tiny_disk / "run.zarr", metadata(), SHAPE)
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]


def test_instrument_model_is_strict() -> None:
    with pytest.raises(ValidationError, match=r"voltage_kV"):
        Instrument(voltage_kV=0, pixel_size_A=1)
    with pytest.raises(ValidationError, match=r"sensor_shape_px must be positive"):
        Camera(name="c", counts_per_electron=1, sensor_shape_px=(0, 4096))
