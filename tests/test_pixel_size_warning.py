"""A pixel size outside the model card's trained range gets one warning line, never a stop.

The shipped ``fast`` model's card says it was trained for 0.1-50 A/px.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pycromanager import Acquisition

from acquisition_hooks import LiveRecorder, simulated_microscope
from tem_acq.cli import main
from tem_acq.denoise import load_model
from tem_acq.denoise.card import ModelCard
from tem_acq.denoise.pixel_size import pixel_size_note
from tem_acq.errors import PixelSizeWarning
from tem_acq.store import open_store

FRAMES = 3


@pytest.fixture(scope="module")
def fast_card() -> ModelCard:
    card = load_model("fast", device="cpu").card
    assert card.pixel_size_A_range == (0.1, 50.0)
    return card


def test_the_note_names_the_pixel_size_the_range_and_the_fix(fast_card: ModelCard) -> None:
    for inside in (0.1, 1.0, 50.0):
        assert pixel_size_note(fast_card, inside) is None
    assert pixel_size_note(fast_card, None) is None
    small = pixel_size_note(fast_card, 0.04)
    assert small is not None
    assert "0.04 A/px is outside the range model 'fast' was trained for (0.1-50 A/px)" in small
    assert "expect worse denoising" in small and "bin by 3" in small
    large = pixel_size_note(fast_card, 75.0)
    assert large is not None and "75 A/px" in large and "raise the magnification" in large
    # a card that states no range warns about nothing
    assert pixel_size_note(fast_card.model_copy(update={"pixel_size_A_range": None}), 0.04) is None


def record(store: Path, pixel_size_A: float) -> None:
    """A short real acquisition with live denoising by ``fast`` at ``pixel_size_A``."""
    with simulated_microscope(size=64, seed=2, real_time=False) as scope:
        settings = {**scope.recorder_settings(), "pixel_size_A": pixel_size_A}
        events = [{"axes": {"time": i}, "exposure": 2.0} for i in range(FRAMES)]
        with LiveRecorder(
            store, exposure_ms=2.0, model="fast", device="cpu", policy="block",
            quality_every_s=None, **settings,
        ) as live:  # fmt: skip
            with Acquisition(directory=None, show_display=False, **live.acquisition_kwargs()) as a:
                a.acquire(events)


def test_live_warns_once_and_logs_an_event_and_keeps_recording(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = tmp_path / "small.ome.zarr"
    with pytest.warns(PixelSizeWarning, match="0.05 A/px is outside") as caught:
        record(store, 0.05)
    assert len([w for w in caught if w.category is PixelSizeWarning]) == 1
    assert len([r for r in caplog.records if "0.05 A/px is outside" in r.getMessage()]) == 1
    s = open_store(store)
    assert s.complete and s.n_frames == FRAMES and s.denoised_frames == FRAMES
    (warning,) = s.warnings
    assert "0.05 A/px is outside the range model 'fast' was trained for" in warning
    assert s.errors == []
    assert s.info()["warnings"] == [warning]


def test_live_inside_the_range_warns_nothing(tmp_path: Path) -> None:
    store = tmp_path / "fine.ome.zarr"
    record(store, 30.0)  # pytest turns any warning into an error
    s = open_store(store)
    assert s.complete and s.warnings == []


def test_the_denoise_command_warns_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.npy"
    np.save(src, np.random.default_rng(0).poisson(5.0, (64, 64)).astype(np.uint16))
    out = tmp_path / "out.npy"
    args = ["denoise", str(src), "-m", "fast", "-o", str(out), "--counts-per-electron", "1"]
    assert main([*args, "--pixel-size-A", "100"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "A/px is outside" in line]
    assert lines == [
        "warning: pixel size 100 A/px is outside the range model 'fast' was trained for "
        "(0.1-50 A/px): expect worse denoising; use a model trained for this pixel size, or "
        "raise the magnification"
    ]
    assert np.load(out).shape == (64, 64)
    assert main([*args, "--pixel-size-A", "2", "--overwrite"]) == 0
    assert "outside" not in capsys.readouterr().err
    assert main([*args, "--pixel-size-A", "-1", "--overwrite"]) == 2
    assert "--pixel-size-A must be > 0" in capsys.readouterr().err
