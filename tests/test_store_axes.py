"""Stores of multi-dimensional acquisitions: axes in the header, places in the rows, the view."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_store import SHAPE, MetadataBuilder

from tem_acq.errors import StoreConfigError
from tem_acq.store import (
    AcquisitionAxes,
    AcquisitionWriter,
    FrameRecord,
    open_store,
    validate_metadata,
)


def _frame(value: int) -> np.ndarray:
    return np.full(SHAPE, value, dtype=np.uint16)


def test_a_t_p_z_store_reads_as_a_hyperstack_and_keeps_acquisition_order(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "tpz.zarr"
    axes = AcquisitionAxes(sizes={"t": 2, "p": 3, "z": 2}, sequence={"axis_order": "tpz"})
    order = [(t, p, z) for t in range(2) for p in range(3) for z in range(2)]
    with AcquisitionWriter(path, metadata(axes=axes), SHAPE) as writer:
        for i, (t, p, z) in enumerate(order[:-1]):  # the last place is never filled
            record = FrameRecord(
                axes={"t": t, "p": p, "z": z}, position_name=f"P{p}", stage_z_um=float(z)
            )
            writer.append_raw(_frame(i + 1), record)
    store = open_store(path)
    assert store.metadata.axes == axes
    assert np.asarray(store.raw)[:, 0, 0].tolist() == list(range(1, 12))  # acquisition order
    view = store.hyperstack()
    assert view.dims == ("t", "p", "z", "y", "x") and view.shape == (2, 3, 2, *SHAPE)
    assert view[1, 2, 0, 0, 0] == order.index((1, 2, 0)) + 1
    assert view[1, 2, 1].max() == 0  # no frame: the raw fill value
    assert view[:, 1, 1, 0, 0].tolist() == [4, 10]
    assert np.asarray(view).shape == view.shape
    info = store.info()
    assert info["axes"] == {"t": 2, "p": 3, "z": 2}
    assert (info["frames_placed"], info["frames_unplaced"]) == (11, 0)
    assert info["positions"] == ["P0", "P1", "P2"]
    assert store.frame_table()["position_name"][3] == "P1"


def test_axes_come_from_the_rows_without_a_header_and_old_rows_keep_theirs(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    path = tmp_path / "rows.zarr"
    with AcquisitionWriter(path, metadata(), SHAPE) as writer:
        for i in range(4):
            writer.append_raw(_frame(i), FrameRecord(axes={"time": i // 2, "z": i % 2}))
    log = path / "tem_acq_log.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    for line in lines:  # as a schema 1.3 writer put them: under extra
        if line.get("event") == "frame":
            record = line["record"]
            record["extra"] = {"axes": record.pop("axes"), "note": 1}
            record.pop("position_name")
    log.write_text("".join(json.dumps(line) + "\n" for line in lines))
    store = open_store(path)
    assert store.frames[3].axes == {"time": 1, "z": 1} and store.frames[3].extra == {"note": 1}
    assert store.places.sizes == {"z": 2, "time": 2}
    assert store.hyperstack()[1, 0, 0, 0] == 1  # z 1, time 0: frame 1


def test_a_plain_series_is_its_own_view(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = tmp_path / "plain.zarr"
    with AcquisitionWriter(path, metadata(), SHAPE) as writer:
        for i in range(3):
            writer.append_raw(_frame(i))
    store = open_store(path)
    assert store.info()["axes"] is None
    assert store.hyperstack().shape == (3, *SHAPE)
    assert store.hyperstack()[2, 0, 0] == 2


def test_axis_sizes_must_be_positive(metadata_dict: Callable[..., dict[str, Any]]) -> None:
    with pytest.raises(StoreConfigError, match="axis sizes must be >= 1"):
        validate_metadata(metadata_dict(axes={"sizes": {"t": 0}}))


def test_view_and_report_show_the_axes(tmp_path: Path, metadata: MetadataBuilder) -> None:
    from tem_acq.report import metadata_rows
    from tem_acq.viewer import build_view, describe

    path = tmp_path / "pz.zarr"
    axes = AcquisitionAxes(sizes={"p": 2, "z": 3})
    with AcquisitionWriter(path, metadata(axes=axes), SHAPE, denoised=True) as writer:
        for i in range(6):
            record = FrameRecord(axes={"p": i // 3, "z": i % 3}, position_name=f"site{i // 3}")
            writer.append_raw(_frame(i + 1), record)
            writer.write_denoised(i, np.full(SHAPE, i, dtype=np.float32), 1.0)
    spec = build_view(path)
    assert spec.axis_labels == ("p", "z", "y", "x")
    assert [layer.data.shape for layer in spec.layers] == [(2, 3, *SHAPE)] * 2
    assert spec.layers[1].data[1, 2, 0, 0] == 5.0  # denoised frame 5 at p 1, z 2
    assert spec.layers[0].scale == pytest.approx((1.0, 1.0, 29.88, 29.88))
    assert "axes p 2 x z 3" in spec.summary and "2 x 3 x 24 x 20" in describe(spec)
    rows = dict(metadata_rows(open_store(path))[0][1])
    assert rows["axes"] == "p 2 x z 3; 6 of 6 frames placed"
    assert rows["positions"] == "site0, site1"
