"""The store says what happened (issue 12, case 6): real acquisitions through the README's snippet.

The README's two snippets together: ``LiveRecorder(..., exposure_ms=2.0,
**scope.recorder_settings())`` on the simulated microscope, with the events of the first
snippet (``"exposure": 3.3``), here spaced by ``min_start_time``. Per-frame facts come from
each frame's own event and clock; the header agrees with them (corrected at the first frame,
the given value kept); the time axis is the measured interval; the model's card and torch's
version are recorded.
"""

from __future__ import annotations

import importlib.metadata
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycromanager import Acquisition

from acquisition_hooks import LiveRecorder, simulated_microscope
from tem_acq.store import AcquisitionStore, open_store

DOSE_RATE = 2500.0  # e-/px/s, what the simulated microscope delivers here
EXPOSURE_MS = 3.3  # what every event asks the camera for
STATED_MS = 2.0  # what the recorder is told (the README's second snippet)
FRAMES = 8


def readme_events(spacing_s: float | None = 0.1) -> list[dict[str, Any]]:
    """The README's events (exposure in ms), a frame every ``spacing_s`` at the earliest."""
    events: list[dict[str, Any]] = [
        {"axes": {"time": i}, "exposure": EXPOSURE_MS} for i in range(FRAMES)
    ]
    if spacing_s is not None:
        for i, event in enumerate(events):
            event["min_start_time"] = i * spacing_s
    return events


def record(
    store: Path, *, model: Any, size: int = 256, spacing_s: float | None = 0.1, **settings: Any
) -> AcquisitionStore:
    """The README's snippet: a real pycro-manager acquisition on the simulated microscope."""
    with simulated_microscope(
        dose_rate=DOSE_RATE, detector="integrating", specimen="nanoparticles", seed=0, size=size
    ) as scope:
        with LiveRecorder(
            store,
            model=model,
            device="cpu",
            exposure_ms=STATED_MS,
            policy="skip",
            **{**scope.recorder_settings(), **settings},
        ) as live:
            with Acquisition(
                directory=None, show_display=False, **live.acquisition_kwargs()
            ) as acq:
                acq.acquire(readme_events(spacing_s))
    return open_store(store)


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory: pytest.TempPathFactory, fast_pkg: Path) -> AcquisitionStore:
    return record(tmp_path_factory.mktemp("truth") / "run1.ome.zarr", model=fast_pkg)


def stamps_ms(store: AcquisitionStore) -> np.ndarray:
    """Each row's timestamp in ms since the first."""
    times = [row.timestamp for row in store.frames]
    return np.array([(t - times[0]).total_seconds() * 1000.0 for t in times])


def elapsed_ms(store: AcquisitionStore) -> np.ndarray:
    return np.array([row.elapsed_ms for row in store.frames], dtype=float)


def test_the_header_states_the_exposure_the_frames_were_taken_with(
    readme_run: AcquisitionStore,
) -> None:
    meta = readme_run.metadata
    assert [row.exposure_ms for row in readme_run.frames] == [EXPOSURE_MS] * FRAMES
    assert meta.exposure_ms == EXPOSURE_MS  # it said 2 ms
    assert meta.protocol.settings["stated_exposure_ms"] == STATED_MS  # what it was told
    assert meta.dose_e_per_px == pytest.approx(DOSE_RATE * EXPOSURE_MS / 1000)  # it said 5
    # measured through the specimen (it absorbs some): below the beam's dose, never above
    measured = [row.dose_e_per_px for row in readme_run.frames]
    assert all(0 < d < meta.dose_e_per_px for d in measured if d is not None)
    assert readme_run.errors == []
    info = readme_run.info()
    assert info["exposure_ms"] == EXPOSURE_MS and info["complete"]


def test_rows_keep_the_backends_clock_when_it_advances(readme_run: AcquisitionStore) -> None:
    """Timed events: the backend's ElapsedTime-ms advances, and the rows keep it."""
    assert (np.diff(elapsed_ms(readme_run)) > 0).all()
    assert (np.diff(stamps_ms(readme_run)) > 0).all()  # when the core received each frame
    assert [row.axes for row in readme_run.frames] == [{"time": i} for i in range(FRAMES)]


def test_the_time_axis_is_the_measured_interval(readme_run: AcquisitionStore) -> None:
    elapsed = elapsed_ms(readme_run)  # the camera's clock, preferred to the receipt times
    measured = (elapsed[-1] - elapsed[0]) / (FRAMES - 1)
    meta = readme_run.metadata
    assert meta.frame_interval_ms == pytest.approx(measured, rel=1e-9)  # it was null
    path = readme_run.path
    for image in ("raw", "denoised"):
        ome = json.loads((path / image / "zarr.json").read_text())["attributes"]["ome"]
        scale = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"]
        assert scale[0] == pytest.approx(measured / 1000, rel=1e-9)  # it was the exposure
    xml = ET.fromstring((path / "OME" / "METADATA.ome.xml").read_bytes())
    increments = [float(e.attrib["TimeIncrement"]) for e in xml.iter() if e.tag.endswith("Pixels")]
    assert increments == pytest.approx([measured / 1000] * 2, rel=1e-5)


def test_the_model_card_and_torch_are_recorded(readme_run: AcquisitionStore) -> None:
    model = readme_run.metadata.model
    assert model is not None and model.card is not None  # it was null
    assert model.card["name"] == model.name == "fast"
    assert model.card["normalization"] == model.normalization
    assert model.card["package_hash"] == f"sha256:{model.sha256}"
    assert readme_run.metadata.software.torch == importlib.metadata.version("torch")


@pytest.fixture(scope="module")
def untimed_run(tmp_path_factory: pytest.TempPathFactory) -> AcquisitionStore:
    """The README's own events (no timing), the recorder told a fifth of the real dose rate."""
    return record(
        tmp_path_factory.mktemp("truth") / "wrong-rate.ome.zarr",
        model=None,
        size=128,
        spacing_s=None,
        dose_rate_e_per_px_per_s=DOSE_RATE / 5,
    )


def test_a_dose_the_beam_cannot_deliver_is_flagged(untimed_run: AcquisitionStore) -> None:
    (flag,) = untimed_run.errors
    assert flag.startswith("frame 0 measures") and "check dose_rate_e_per_px_per_s" in flag
    assert untimed_run.metadata.dose_e_per_px == pytest.approx(DOSE_RATE / 5 * EXPOSURE_MS / 1e3)


def test_rows_take_the_cores_clock_when_the_backend_reports_none(
    untimed_run: AcquisitionStore,
) -> None:
    """Untimed events: pymmcore-plus reports ElapsedTime-ms 0.0 for every frame."""
    elapsed = elapsed_ms(untimed_run)
    assert elapsed[0] == 0.0 and (np.diff(elapsed) > 0).all()  # it was 0.0 on every row
    np.testing.assert_allclose(elapsed, stamps_ms(untimed_run), atol=1e-3)
    assert untimed_run.metadata.frame_interval_ms == pytest.approx(elapsed[-1] / (FRAMES - 1))
