"""The live quality estimate: rows in the store, the summary, one warning, the report's plot.

Real acquisitions (UniMMCore with the simulated TEM camera, through pycro-manager) with a
short estimate interval; the store is read back with ``open_store`` and ``tem-acq report``.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faults.commands import run_command
from pycromanager import Acquisition
from test_store import SHAPE, MetadataBuilder, raw_frame

from acquisition_hooks import LiveRecorder, simulated_microscope
from acquisition_hooks.live_quality import LiveQuality, LiveQualityOptions
from tem_acq.denoise import load_model
from tem_acq.errors import ConfigError
from tem_acq.pipeline import DenoisedFrame, FramePipeline
from tem_acq.store import AcquisitionWriter, FrameRecord, open_store

BELOW = "below the best Gaussian filter"
#: An estimate every 0.05 s, as often as they finish (no 5 % share): tests want several.
FAST_ESTIMATES = LiveQualityOptions(every_s=0.05, max_share=1.0)


def record(
    store: Path,
    events: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
    *,
    model: Any,
    size: int = 256,
    estimates: int = 0,
    until_warning: bool = False,
    **kwargs: Any,
) -> tuple[LiveRecorder, list[str]]:
    """Run ``events`` through real acquisitions; the recorder and the warnings it logged.

    With ``estimates``, the events are acquired again (another acquisition, the same
    recorder and store) until the recorder has made that many estimates (and, with
    ``until_warning``, warned), at most 30 times (a hang guard), so that the test waits for
    events, not for a time.
    """
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        with simulated_microscope(size=size, seed=3, dose_rate=2500.0) as scope:
            with LiveRecorder(
                store,
                exposure_ms=events[0]["exposure"],
                model=model,
                **scope.recorder_settings(),
                **kwargs,
            ) as live:
                for _ in range(30):
                    with Acquisition(
                        directory=None, show_display=False, **live.acquisition_kwargs()
                    ) as acq:
                        acq.acquire(events)
                    quality = live.summary.quality
                    if quality is None or quality["estimates"] >= estimates:
                        if not until_warning or quality is None or quality["warning"]:
                            break
    return live, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def time_events(n: int, exposure_ms: float = 2.0, **extra: Any) -> list[dict[str, Any]]:
    return [{"axes": {"time": i}, "exposure": exposure_ms, **extra} for i in range(n)]


def package_sha(path: Path | str) -> str:
    return load_model(path, device="cpu").package_hash.removeprefix("sha256:")


# -- the store: rows with a model and an estimate; older stores ------------------------------


def test_rows_hold_their_model_and_estimate_and_schema_1_1_stores_still_open(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    from tem_acq.store import ModelProvenance

    path = tmp_path / "run.zarr"
    header_model = ModelProvenance(name="unet", sha256="ab" * 32)
    frame_model = {"name": "adapted", "sha256": "cd" * 32}
    estimate = {"trusted": True, "model": {"psnr_db": 30.5, "ci": [30.0, 31.0]}, "pair": [0, 1]}
    with AcquisitionWriter(path, metadata(model=header_model), SHAPE) as writer:
        for i in range(3):
            writer.append_raw(raw_frame(i), FrameRecord())
        writer.write_denoised(0, np.zeros(SHAPE, np.float32), 1.0, model=frame_model)
        writer.write_denoised(1, np.zeros(SHAPE, np.float32), 1.0)
        writer.mark_skipped(2, "busy")
        writer.record_quality(1, estimate)
    s = open_store(path)
    assert s.metadata.schema_version == "1.4"
    rows = s.frames
    assert rows[0].model is not None and rows[0].model.model_dump() == frame_model
    # no model given: the header's one model denoised it
    assert rows[1].model is not None and rows[1].model.sha256 == "ab" * 32
    assert rows[2].model is None  # not denoised
    assert rows[1].quality == estimate and rows[0].quality is None
    assert s.quality == [(1, estimate)]
    assert s.complete

    # a 1.1 store (no model in its rows, no quality events) opens, its rows name the header's
    root = json.loads((path / "zarr.json").read_text())
    root["attributes"]["tem_acq"]["schema_version"] = "1.1"
    (path / "zarr.json").write_text(json.dumps(root))
    log = path / "tem_acq_log.jsonl"
    events = [json.loads(line) for line in log.read_text().splitlines()]
    old = [{k: v for k, v in e.items() if k != "model"} for e in events if e["event"] != "quality"]
    log.write_text("".join(json.dumps(e) + "\n" for e in old))
    s = open_store(path)
    assert s.metadata.schema_version == "1.1" and s.complete
    assert [r.model.name if r.model else None for r in s.frames] == ["unet", "unet", None]
    assert s.quality == [] and all(r.quality is None for r in s.frames)


def test_a_bad_interval_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="quality_every_s must be >= 0"):
        LiveRecorder(
            tmp_path / "x.ome.zarr",
            pixel_size_A=1.0,
            counts_per_electron=1.0,
            exposure_ms=1.0,
            quality_every_s=-1.0,
        )
    assert not (tmp_path / "x.ome.zarr").exists()
    assert LiveQualityOptions(every_s=0).enabled is False


# -- the pipeline: a pair comes even when the denoiser is behind -----------------------------


class GatedDenoiser:
    """Electrons out (raw / cpe), each call only when the test lets it: the denoiser "behind"."""

    def __init__(self) -> None:
        self.gate = threading.Semaphore(0)
        self.called = threading.Event()
        self.batches: list[list[int]] = []

    def denoise(self, frames: np.ndarray, *, counts_per_electron: float = 1.0) -> np.ndarray:
        self.called.set()
        assert self.gate.acquire(timeout=60.0), "the test never let the denoiser go"
        self.batches.append([len(frames)])
        return frames.astype(np.float32) / counts_per_electron


def test_a_denoiser_behind_the_camera_still_gets_consecutive_pairs(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    """Under "skip" the newest frame is denoised; when an estimate is due, the newest two."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    field = 5.0 * (1.0 + 0.5 * np.sin(xx / 6.0) * np.cos(yy / 9.0))
    written = threading.Event()
    writer = AcquisitionWriter(tmp_path / "p.zarr", metadata(), (128, 128))
    pipeline: FramePipeline

    def write(index: int, estimate: dict[str, Any]) -> None:
        pipeline.record_quality(index, estimate)
        written.set()

    ticks = itertools.count(0.0, 10.0)  # a clock 10 s on at every look: always due
    quality = LiveQuality(
        LiveQualityOptions(every_s=1.0),
        counts_per_electron=1.0,
        pixel_size_A=1.0,
        model_id=None,
        write=write,
        report_error=lambda message: pipeline.record_error(message),
        clock=lambda: next(ticks),
    )
    denoiser = GatedDenoiser()
    pipeline = FramePipeline(writer, denoiser=denoiser, pair_observer=quality)

    def frame() -> np.ndarray:
        return rng.poisson(field).astype(np.uint16)

    pipeline.submit(frame(), FrameRecord())
    assert denoiser.called.wait(30.0)  # busy with frame 0
    for _ in range(5):  # frames 1-5 wait meanwhile: the camera is ahead
        pipeline.submit(frame(), FrameRecord())
    denoiser.gate.release(2)  # frame 0, then one more call: frames 4 and 5
    assert written.wait(60.0), "no estimate: the second call did not denoise a pair"
    quality.close()
    summary = pipeline.close()
    assert summary.skipped == 3  # frames 1-3: it really was behind
    s = open_store(tmp_path / "p.zarr")
    assert [index for index, _ in s.quality] == [5]
    assert s.quality[0][1]["pair"] == [4, 5]
    assert [r.index for r in s.frames if r.denoised] == [0, 4, 5]


# -- real acquisitions -------------------------------------------------------------------------


def test_live_estimate_rows_summary_report_and_one_warning_for_an_untrained_model(
    tmp_path: Path, fast_pkg: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "live.ome.zarr"
    live, messages = record(
        store,
        time_events(40, 5.0),
        caplog,
        model=fast_pkg,
        quality_every_s=FAST_ESTIMATES,
        estimates=2,
        until_warning=True,
    )
    quality = live.summary.quality
    assert quality is not None and quality["estimates"] >= 2, quality
    s = open_store(store)
    assert s.complete
    sha = package_sha(fast_pkg)
    for row in s.frames:  # every denoised frame says which model denoised it
        assert (row.model is not None) == row.denoised
        if row.model is not None:
            assert (row.model.name, row.model.sha256) == ("fast", sha)
    assert len(s.quality) == quality["estimates"]
    for index, estimate in s.quality:
        assert estimate["pair"] == [index - 1, index]
        assert estimate["denoised_by"] == {"name": "fast", "sha256": sha}
        assert s.frames[index - 1].denoised and s.frames[index].denoised
    trusted = [e for _, e in s.quality if e["trusted"]]
    assert trusted, s.quality
    for e in trusted:
        assert {"mse", "psnr_db", "ci"} <= set(e["model"]) and "sigma_px" in e["gaussian"]
    # the untrained network is far below the best Gaussian: one warning for the run
    assert sum(BELOW in m for m in messages) == 1, messages
    assert quality["warning"] is not None and BELOW in quality["warning"]

    report = tmp_path / "live.html"
    done = run_command("report", str(store), "--out", str(report), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    html = report.read_text()
    assert "Live quality estimate" in html
    assert f"{len(s.quality)} live estimates" in html
    png = _image_after(html, "Live quality estimate: PSNR")
    from PIL import Image

    assert Image.open(io.BytesIO(png)).size[0] > 400


@pytest.mark.slow
def test_the_shipped_default_model_gets_estimates_and_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "good.ome.zarr"
    live, messages = record(
        store,
        time_events(40, 5.0),
        caplog,
        model="default",
        quality_every_s=FAST_ESTIMATES,
        estimates=2,
    )
    quality = live.summary.quality
    assert quality is not None and quality["estimates"] >= 1, quality
    trusted = [e for _, e in open_store(store).quality if e["trusted"]]
    assert trusted
    assert not [m for m in messages if BELOW in m]
    assert quality["warning"] is None


def test_stage_moves_suppress_the_estimate(
    tmp_path: Path, fast_pkg: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every frame at another stage position: no pair is still, so no estimate, all counted."""
    events = [
        {"axes": {"time": i}, "exposure": 5.0, "x": 20.0 * (i % 2), "y": 0.0} for i in range(40)
    ]
    store = tmp_path / "moving.ome.zarr"
    live, messages = record(
        store, events, caplog, model=fast_pkg, size=128, quality_every_s=FAST_ESTIMATES
    )
    quality = live.summary.quality
    assert quality is not None
    s = open_store(store)
    xs = [row.stage_x_um for row in s.frames]
    assert None not in xs and len(set(xs)) == 2  # the stage really moved, and was recorded
    assert quality["estimates"] == 0 and s.quality == []
    assert quality["skipped_stage"] >= 1, quality
    assert not [m for m in messages if BELOW in m]


def test_quality_off_writes_no_rows(
    tmp_path: Path, fast_pkg: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "off.ome.zarr"
    live, _ = record(
        store, time_events(20, 5.0), caplog, model=fast_pkg, size=128, quality_every_s=0
    )
    assert live.summary.quality is None
    assert open_store(store).quality == []


def _image_after(html: str, alt: str) -> bytes:
    """The PNG of the report's image whose alt text starts with ``alt``."""
    match = re.search(r'<img src="data:image/png;base64,([^"]+)" alt="' + re.escape(alt), html)
    assert match is not None, "no such image in the report"
    return base64.b64decode(match.group(1))


def test_the_estimate_waits_so_that_it_takes_at_most_its_share_of_the_time() -> None:
    """After an estimate that took t seconds, the next is not due before t / max_share: on a
    CPU-only machine the estimate shares the cores with the denoiser (5 % by default)."""
    now = [100.0]
    written = threading.Event()
    quality = LiveQuality(
        LiveQualityOptions(every_s=0.001, max_share=0.05),
        counts_per_electron=1.0,
        pixel_size_A=1.0,
        model_id=None,
        write=lambda index, row: written.set(),
        report_error=lambda message: None,
        clock=lambda: now[0],
    )
    rng = np.random.default_rng(0)
    field = 5.0 + 2.0 * (np.indices((128, 128)).sum(axis=0) % 7 == 0)
    frames = [rng.poisson(field).astype(np.uint16) for _ in range(2)]
    pair = [
        DenoisedFrame(index=i, raw=f, record=None, electrons=field.astype(np.float32))
        for i, f in enumerate(frames)
    ]
    now[0] += 1.0  # due
    assert quality.wants_pair()
    quality.offer(*pair)
    assert written.wait(60), "the estimate did not finish"
    quality.close()
    seconds = quality.summary()["compute_s_p50"]
    assert seconds is not None and seconds > 0
    # due again only after 19 x its compute time (the clock did not move meanwhile; the
    # summary rounds the time to the millisecond)
    assert quality._next_due >= now[0] + 19 * (seconds - 0.0005)
    now[0] += 19 * seconds * 0.5
    assert not quality.wants_pair()
