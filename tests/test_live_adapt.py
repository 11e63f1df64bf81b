"""Adapting the live model during a real acquisition (``LiveRecorder(adapt=...)``).

Real acquisitions (UniMMCore with the simulated TEM camera, through pycro-manager), a real
training process, the store read back with ``open_store``. The live model is the untrained
fast U-Net, which a few Noise2Noise steps improve by several dB (so the swap is assured);
the refusal is made certain by the decision rule itself (``min_gain_db`` out of reach).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pycromanager import Acquisition

from acquisition_hooks import LiveRecorder, simulated_microscope
from tem_acq.denoise import load_model
from tem_acq.errors import ConfigError
from tem_acq.store import open_store

#: Hang guard on a training round (the round itself takes seconds to a minute).
ROUND_GUARD_S = 600.0


def events(n: int, exposure_ms: float = 5.0) -> list[dict[str, Any]]:
    return [{"axes": {"time": i}, "exposure": exposure_ms} for i in range(n)]


def sha(package: Path | str) -> str:
    return load_model(package, device="cpu").package_hash.removeprefix("sha256:")


def adapt_live(store: Path, model: Path, adapt: dict[str, Any]) -> tuple[LiveRecorder, int]:
    """Acquire until a round of adaptation was judged, then 20 frames more; frames acquired."""
    acquired = 0
    with simulated_microscope(size=256, seed=3, dose_rate=2500.0) as scope:
        with LiveRecorder(
            store, exposure_ms=5.0, model=model, quality_every_s=None, adapt=adapt,
            **scope.recorder_settings(),
        ) as live:  # fmt: skip
            assert live._adapt is not None

            def acquire() -> None:
                nonlocal acquired
                with Acquisition(
                    directory=None, show_display=False, **live.acquisition_kwargs()
                ) as acq:
                    acq.acquire(events(20))
                acquired += 20

            for _ in range(30):  # until the round starts (frames dropped for it are retried)
                acquire()
                if live._adapt.pids:
                    break
            assert live._adapt.wait_for_round(ROUND_GUARD_S), live.summary.adaptation
            acquire()  # denoised after the decision
            pids = live._adapt.pids
    assert pids and all(not _alive(pid) for pid in pids)  # (c) the process is gone
    return live, acquired


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_candidate_below_the_rule_is_refused_and_every_frame_keeps_its_model(
    tmp_path: Path, fast_pkg: Path
) -> None:
    store, out = tmp_path / "live.ome.zarr", tmp_path / "adapting"
    settings = {"out": out, "frames": 16, "max_steps": 2, "min_gain_db": 1000.0, "device": "cpu"}
    live, acquired = adapt_live(store, fast_pkg, settings)
    s = open_store(store)
    assert s.complete and s.n_frames == acquired == live.summary.frames  # (a) every raw frame
    base = sha(fast_pkg)
    for row in s.frames:  # (b) no swap: the base model denoised every denoised frame
        assert (row.model is not None) == row.denoised
        if row.model is not None:
            assert (row.model.name, row.model.sha256) == ("fast", base)
    assert s.model_swaps == []
    adaptation = live.summary.adaptation
    assert adaptation is not None
    assert adaptation["candidates"] == 1 and adaptation["refused"] == 1
    assert adaptation["swaps"] == [] and adaptation["model"]["sha256"] == base
    (done,) = adaptation["rounds"]
    assert done["swapped"] is False and done["error"] is None and done["steps"] == 2
    assert adaptation["frames_fed"] >= 16
    assert not any(p.is_relative_to(store) for p in out.rglob("*"))  # candidates beside it


@pytest.mark.slow
def test_an_improved_candidate_is_swapped_in_and_later_rows_name_it(
    tmp_path: Path, fast_pkg: Path
) -> None:
    store, out = tmp_path / "live.ome.zarr", tmp_path / "adapting"
    settings = {"out": out, "frames": 16, "max_steps": 40, "device": "cpu"}
    live, acquired = adapt_live(store, fast_pkg, settings)
    adaptation = live.summary.adaptation
    assert adaptation is not None
    (done,) = adaptation["rounds"]
    assert done["improved"] and done["swapped"], done
    assert done["gain_over_base_db"]["ci"][0] > 0
    package = Path(done["package"])
    assert package.is_dir() and out in package.parents
    new = sha(package)
    (swap,) = adaptation["swaps"]
    s = open_store(store)
    assert s.complete and s.n_frames == acquired == live.summary.frames  # (a)
    ((first, event),) = s.model_swaps
    assert first == swap["first_frame"] and event["model"]["sha256"] == new
    assert event["replaces"]["sha256"] == sha(fast_pkg) and event["package"] == str(package)
    denoised = [row for row in s.frames if row.denoised]
    assert any(r.index >= first for r in denoised) and any(r.index < first for r in denoised)
    for row in denoised:  # (b) each row names the model that denoised it
        assert row.model is not None
        assert row.model.sha256 == (new if row.index >= first else sha(fast_pkg)), row.index
    assert adaptation["model"]["sha256"] == new


def test_bad_adapt_settings_are_refused_in_one_line_before_anything_starts(
    tmp_path: Path, fast_pkg: Path
) -> None:
    common: dict[str, Any] = {"pixel_size_A": 1.0, "counts_per_electron": 1.0, "exposure_ms": 5.0}
    store = tmp_path / "live.ome.zarr"
    with pytest.raises(ConfigError, match="adapt needs a model"):
        LiveRecorder(store, adapt={"out": tmp_path / "a"}, **common)
    with pytest.raises(ConfigError, match="inside the store"):
        LiveRecorder(store, model=fast_pkg, adapt={"out": store / "a"}, **common)
    with pytest.raises(ConfigError, match=r"invalid live adaptation settings.*frames"):
        LiveRecorder(store, model=fast_pkg, adapt={"out": tmp_path / "a", "frames": 2}, **common)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="not an empty folder"):
        LiveRecorder(store, model=fast_pkg, adapt={"out": tmp_path / "full"}, **common)
    assert not store.exists() and not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--adapt-out", "ad"], "--adapt-out needs --model"),
        (["--model", "fast", "--adapt-steps", "3"], "--adapt-steps needs --adapt-out"),
        (["--model", "fast", "--adapt-out", "ad", "--adapt-steps", "0"], "--adapt-steps must be"),
    ],
)
def test_acquire_adapt_flags_are_checked_in_one_line(
    flags: list[str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tem_acq.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["acquire", "--simulated", "--out", "a.ome.zarr", *flags]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("tem-acq acquire: error: ") and message in line
    assert not (tmp_path / "a.ome.zarr").exists() and not (tmp_path / "ad").exists()
