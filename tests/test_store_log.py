"""The event log of every store kind: one reader, one rule for lines a crash or a disk damaged.

A torn last line is what a crash leaves (the commit it belonged to never happened): it is
dropped silently. An unreadable line anywhere else is damage: it is skipped and reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from faults.damage import pair_record

from tem_acq.errors import StoreError
from tem_acq.store import (
    AcquisitionMetadata,
    AcquisitionWriter,
    Camera,
    Instrument,
    PairsMetadata,
    PairsWriter,
    open_pairs,
    open_store,
)
from tem_acq.store._files import EventLog, read_event_log
from tem_acq.store.layout import EVENT_LOG

SHAPE = (8, 10)


def acquisition(path: Path, frames: int = 3) -> Path:
    meta = AcquisitionMetadata(
        instrument=Instrument(voltage_kV=200, pixel_size_A=30.0),
        camera=Camera(name="log test", counts_per_electron=44),
        exposure_ms=3.3,
    )
    with AcquisitionWriter(path, meta, SHAPE) as writer:
        for i in range(frames):
            writer.append_raw(np.full(SHAPE, i, np.uint16))
    return path


def pairs_writer(path: Path, *, resume: bool = False) -> PairsWriter:
    meta = PairsMetadata(
        instrument=Instrument(voltage_kV=300, pixel_size_A=2.5),
        camera=Camera(name="K3", counts_per_electron=1.0),
        short_exposure_ms=2.0,
        long_exposure_ms=20.0,
        n_short=1,
        planned_fields=3,
    )
    return PairsWriter(path, meta, SHAPE, resume=resume)


def add_field(writer: PairsWriter, field: int) -> None:
    record = pair_record(
        field, 0, high_exposure_ms=20.0, low_dose_e_per_px=1.0, high_dose_e_per_px=10.0
    )
    low = np.full((1, *SHAPE), field, np.uint16)
    writer.append_field(field, low=low, high=low.astype(np.float32), records=[record])


def test_reader_drops_a_torn_last_line_and_reports_damage_elsewhere(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"event": "a"}\n[1, 2]\nnot json\n{"event": "b"}\n{"event": "c", "ind')
    events, problems = read_event_log(log)
    assert events == [{"event": "a"}, {"event": "b"}]
    assert problems == [
        "log.jsonl line 2 is unreadable and was skipped",
        "log.jsonl line 3 is unreadable and was skipped",
    ]


def test_acquisition_store_follows_the_rule(tmp_path: Path) -> None:
    path = acquisition(tmp_path / "run.zarr")
    with (path / EVENT_LOG).open("ab") as log:
        log.write(b'{"event": "frame", "ind')  # torn by a crash: dropped silently
    assert open_store(path).errors == []
    lines = (path / EVENT_LOG).read_bytes().split(b"\n")
    lines[1] = b"garbage"  # damage mid-log: reported
    (path / EVENT_LOG).write_bytes(b"\n".join(lines))
    store = open_store(path)
    assert f"{EVENT_LOG} line 2 is unreadable and was skipped" in store.errors


def test_pairs_store_follows_the_rule(tmp_path: Path) -> None:
    path = tmp_path / "p.ome.zarr"
    writer = pairs_writer(path)
    add_field(writer, 0)
    writer.close(complete=False)
    with (path / EVENT_LOG).open("ab") as log:
        log.write(b'{"event": "pair", "index": 1, "rec')  # torn by a crash
    store = open_pairs(path)
    assert store.errors == [] and len(store.pairs) == 1
    lines = (path / EVENT_LOG).read_bytes().split(b"\n")
    lines[0] = b"garbage"  # the first pair's row, damaged
    (path / EVENT_LOG).write_bytes(b"\n".join(lines))
    store = open_pairs(path)
    assert f"{EVENT_LOG} line 1 is unreadable and was skipped" in store.errors
    assert len(store.pairs) == 0


def test_resuming_after_a_torn_last_line_leaves_no_damage(tmp_path: Path) -> None:
    path = tmp_path / "p.ome.zarr"
    writer = pairs_writer(path)
    add_field(writer, 0)
    with (path / EVENT_LOG).open("ab") as log:
        log.write(b'{"event": "pair", "index": 1, "rec')  # the writer died here
    writer = pairs_writer(path, resume=True)
    add_field(writer, 1)
    writer.close()
    store = open_pairs(path)
    assert store.errors == []
    assert [row.field for row in store.pairs] == [0, 1]


def test_a_whole_last_event_without_its_newline_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_bytes(b'{"event": "a"}\n{"event": "b"}')
    events = EventLog(log)
    events.append(['{"event": "c"}'])
    events.close()
    assert read_event_log(log) == ([{"event": "a"}, {"event": "b"}, {"event": "c"}], [])


def test_a_pairs_row_that_reads_but_does_not_validate_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "p.ome.zarr"
    writer = pairs_writer(path)
    add_field(writer, 0)
    writer.close()
    lines = (path / EVENT_LOG).read_bytes().split(b"\n")
    lines[0] = b'{"event": "pair", "index": 0, "record": {"field": -1}}'
    (path / EVENT_LOG).write_bytes(b"\n".join(lines))
    damaged = r"invalid pair row in .*tem_acq_log.jsonl \(the store is damaged\): field: "
    with pytest.raises(StoreError, match=damaged):
        open_pairs(path)
