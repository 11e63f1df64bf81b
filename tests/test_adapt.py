"""``tem-acq adapt``: Noise2Noise on the user's own frames, judged without ground truth.

Real frames from the simulated microscope, real stores on disk, the real command line (in
process: the same ``main`` the ``tem-acq`` script runs).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tem_acq.adapt.inputs import frames_sha256
from tem_acq.cli import main
from tem_acq.sim import SimulationConfig, TEMSimulator
from tem_acq.store import AcquisitionWriter, FrameRecord

#: A frame of 2 ms at the simulator's 2500 e-/px/s: about 5 e-/px, the live dose.
EXPOSURE_S = 0.002


def simulated(pixel_size_A: float, size: int, seed: int = 3) -> TEMSimulator:
    """An atomic-resolution field (Au lattice fringes) on a counting camera."""
    return TEMSimulator(
        SimulationConfig(
            specimen="atomic",
            detector="counting",
            size=size,
            seed=seed,
            pixel_size_A=pixel_size_A,
        )
    )


def record_store(
    path: Path, sim: TEMSimulator, n: int, metadata: Callable[..., Any], pixel_size_A: float
) -> None:
    """Record ``n`` raw frames of one static field into an acquisition store, without a model."""
    size = sim.size
    meta = metadata(
        instrument={"pixel_size_A": pixel_size_A, "magnification": None},
        camera={
            "name": "simulated counting camera",
            "counts_per_electron": 1.0,
            "binning": 1,
            "detector_kind": "counting",
        },
        exposure_ms=EXPOSURE_S * 1e3,
        frame_interval_ms=10.0,
        dose_e_per_px=None,
    )
    with AcquisitionWriter(path, meta, (size, size), denoised=False) as writer:
        for _ in range(n):
            writer.append_raw(sim.render(EXPOSURE_S), FrameRecord(stage_x_um=0.0, stage_y_um=0.0))


def one_line_error(capsys: pytest.CaptureFixture[str], command: str = "adapt") -> str:
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"tem-acq {command}: error: ")
    return line


# --- bad inputs: one line, exit 2, before any work ---------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight 256 px frames of an atomic field, as a NumPy stack (it gives no conversion factor).

    Shared by the tests of this module: read it, never change it.
    """
    sim = simulated(0.25, 256)
    path = tmp_path_factory.mktemp("stack") / "frames.npy"
    np.save(path, np.stack([sim.render(EXPOSURE_S) for _ in range(8)]))
    return path


def test_a_stack_without_counts_per_electron_is_refused(
    stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["adapt", str(stack), "--init", "fast", "--out", str(tmp_path / "m")]) == 2
    assert "--counts-per-electron" in one_line_error(capsys)
    assert not (tmp_path / "m").exists()


def test_a_one_frame_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = tmp_path / "one.npy"
    np.save(one, simulated(0.25, 64).render(EXPOSURE_S))
    args = ["adapt", str(one), "--init", "fast", "--out", str(tmp_path / "m")]
    assert main([*args, "--counts-per-electron", "1"]) == 2
    assert "holds 1 frame(s)" in one_line_error(capsys)


def test_an_output_inside_the_input_store_is_refused(
    tmp_path: Path, metadata: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "run.ome.zarr"
    record_store(store, simulated(0.25, 64), 4, metadata, 0.25)
    before = sorted(p.name for p in store.rglob("*"))
    assert main(["adapt", str(store), "--init", "fast", "--out", str(store / "model")]) == 2
    assert "is inside the input" in one_line_error(capsys)
    assert sorted(p.name for p in store.rglob("*")) == before


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max-steps", "0"], "--max-steps must be >= 1"),
        (["--minutes", "nan"], "--minutes must be a finite number > 0"),
        (["--counts-per-electron", "-1"], "--counts-per-electron must be a finite number > 0"),
    ],
)
def test_bad_numbers_are_refused(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # refused before the input is even read
    args = [
        "adapt",
        str(tmp_path / "never-read.npy"),
        "--init",
        "fast",
        "--out",
        str(tmp_path / "m"),
    ]
    assert main([*args, *flags]) == 2
    assert message in one_line_error(capsys)


# --- a model that cannot improve: exit 3, nothing written; --force writes it ------------------


def test_a_model_that_cannot_improve_is_refused_and_nothing_is_written(
    stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # one step at the warmup's first learning rate (a 50th of the peak) cannot learn anything
    out = tmp_path / "adapted"
    listing = sorted(p.name for p in tmp_path.iterdir())
    args = ["adapt", str(stack), "--init", "fast", "--out", str(out), "--counts-per-electron"]
    assert main([*args, "1", "--max-steps", "1", "--json"]) == 3
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert "did not improve beyond the interval" in line and "nothing written" in line
    report = json.loads(captured.out)
    assert report["improved"] is False and report["package"] is None
    for side in ("before", "after"):
        assert report[side]["trusted"] is True
        assert {"mse", "mse_ci", "psnr_db", "ci"} <= set(report[side]["model"])
        assert "sigma_px" in report[side]["gaussian"]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no temporary folder left


def test_force_writes_a_package_whose_card_records_the_adaptation_and_minutes_stop_it(
    stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tem_acq.denoise import load_model, load_package, resolve_package

    out = tmp_path / "adapted"
    args = ["adapt", str(stack), "--init", "fast", "--out", str(out), "--counts-per-electron"]
    limits = ["--max-steps", "100000", "--minutes", "0.001"]  # 60 ms: a few steps at most
    assert main([*args, "1", *limits, "--force", "--quiet"]) == 0
    assert "did NOT improve" in capsys.readouterr().out
    card = load_package(out).card
    base = load_package(resolve_package("fast"))
    adaptation = card.adaptation
    assert adaptation is not None
    assert adaptation.base_package_hash == base.package_hash
    assert adaptation.forced and not adaptation.improved
    assert 1 <= adaptation.steps < 100000
    (source,) = adaptation.inputs
    assert source.sha256 == frames_sha256(np.load(stack)) and source.frames == 8
    assert adaptation.before["trusted"] and adaptation.after["model"]["mse"] > 0
    assert set(adaptation.gain_over_base_db) == {"db", "ci", "mse_diff", "mse_diff_ci"}
    assert card.detectors == base.card.detectors  # the stack does not say which detector
    load_model(out, device="cpu")  # a valid package


# --- the real thing: adapting default to a magnification it was not trained on ----------------


@pytest.mark.slow
def test_adapting_default_improves_the_held_out_estimate_and_the_true_error(
    tmp_path: Path, metadata: Callable[..., Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Atomic fringes at 0.06 A per pixel, below the 0.1-50 A/px default was trained for:
    recorded without a model, then adapted."""
    from tem_acq.denoise import load_model, load_package, resolve_package

    sim = simulated(0.06, 256)
    store = tmp_path / "run.ome.zarr"
    record_store(store, sim, 48, metadata, 0.06)
    out = tmp_path / "my-specimen"
    args = ["adapt", str(store), "--init", "default", "--out", str(out), "--json", "--seed", "0"]
    assert main([*args, "--max-steps", "300"]) == 0
    report = json.loads(capsys.readouterr().out)
    # the held-out estimate, without ground truth
    assert report["improved"] is True
    assert report["gain_over_base_db"]["ci"][0] > 0
    assert report["gain_over_base_db"]["mse_diff_ci"][1] < 0
    assert report["after"]["model"]["mse"] < report["before"]["model"]["mse"]
    # the true error against the simulator's noise-free image, on fresh frames
    truth = sim.expected_electrons(EXPOSURE_S).astype(np.float64)
    fresh = np.stack([sim.render(EXPOSURE_S) for _ in range(4)]).astype(np.float32)
    inner = (slice(8, -8), slice(8, -8))

    def true_mse(model: str | Path) -> float:
        denoised = load_model(model, device="cpu").denoise(fresh, counts_per_electron=1.0)
        return float(np.mean([np.mean((d[inner] - truth[inner]) ** 2) for d in denoised]))

    assert true_mse(out) < 0.95 * true_mse("default")
    adaptation = load_package(out).card.adaptation
    assert adaptation is not None and adaptation.improved and not adaptation.forced
    assert adaptation.base_package_hash == load_package(resolve_package("default")).package_hash
    assert load_package(out).card.detectors == ["counting"]


# --- in the background of an acquisition: a separate process -----------------------------------


def test_the_background_adapter_trains_in_another_process_and_offers_its_result(
    tmp_path: Path,
) -> None:
    import os

    from tem_acq.adapt import BackgroundAdapter

    sim = simulated(0.25, 256)
    frames = [sim.render(EXPOSURE_S) for _ in range(9)]
    kept = [f.copy() for f in frames]
    with BackgroundAdapter(
        "fast", tmp_path / "work", counts_per_electron=1.0, frames=8, max_steps=1, device="cpu"
    ) as adapter:
        for frame in frames[:7]:
            adapter.submit(frame)
        assert not adapter.running and adapter.poll() is None  # still collecting
        adapter.submit(frames[7])
        adapter.submit(frames[8])  # arrives while adapting: not collected
        candidate = adapter.wait(timeout=600)  # a hang guard, not a timing
    assert candidate is not None and candidate.error is None
    assert candidate.pid not in (0, os.getpid())
    assert candidate.steps == 1 and not candidate.improved and candidate.package is None
    assert candidate.before["trusted"] and "model" in candidate.after
    saved = np.load(tmp_path / "work" / "round-1" / "frames.npy")
    assert np.array_equal(saved, np.stack(kept[:8]))  # the first 8 frames, as handed over
    assert all(np.array_equal(f, k) for f, k in zip(frames, kept, strict=True))
