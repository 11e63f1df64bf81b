"""The ground-truth-free estimate where users see it: ``tem-acq evaluate --frame-pair``,
``--store`` (a recorded run) and ``--pairs`` (two short exposures per field)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faults.commands import make_acquisition_store, make_pairs_store, run_command

from tem_acq.cli import main
from tem_acq.pairs import simulate_pairs
from tem_acq.quality import estimate_pair
from tem_acq.sim import SimulationConfig, TEMSimulator
from tem_acq.store import AcquisitionMetadata, AcquisitionWriter, FrameRecord

ROWS = ("mse", "mse_ci", "psnr_db", "ci")
#: Side of the simulated frames.
SIDE = 256


def evaluate_json(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    assert main(["evaluate", *args, "--json", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def assert_sane_row(row: dict[str, Any]) -> None:
    assert set(ROWS) <= set(row)
    lo, hi = row["mse_ci"]
    assert lo <= row["mse"] <= hi
    if row["psnr_db"] is not None:
        lo, hi = row["ci"]
        assert (lo is None or lo <= row["psnr_db"]) and (hi is None or row["psnr_db"] <= hi)


# --- --frame-pair on the real OneView frames ----------------------------------------------------


@pytest.mark.parametrize("tta", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_frame_pair_prints_the_estimate_of_raw_gaussian_model_and_tta(
    oneview_dir: Path, capsys: pytest.CaptureFixture[str], tta: bool
) -> None:
    a, b = oneview_dir / "val-0001.tif", oneview_dir / "val-0002.tif"
    outputs = ("model", "tta") if tta else ("model",)
    flags = ("--tta",) if tta else ()
    rep = evaluate_json(capsys, "--model", "fast", "--frame-pair", str(a), str(b), *flags)
    assert rep["check"]["passed"] in (True, False)  # what it printed before is still there
    est = rep["estimate"]
    assert est["trusted"] and est["problems"] == []
    assert est["dose_e_per_px"] == pytest.approx(4.6, abs=0.2)  # 204 counts at 44 counts/e-
    assert max(abs(s) for s in est["shift_px"]) < 16
    for name in ("raw", "gaussian", *outputs):
        assert_sane_row(est[name])
    assert ("tta" in est) == tta and est["gaussian"]["sigma_px"] > 0
    # a 4.6 e-/px frame is far from its expectation; any filter that averages pixels is closer
    assert est["raw"]["mse"] > 3 * est["gaussian"]["mse"] > 0
    assert est["raw"]["mse"] == pytest.approx(4.6 * 2.7, rel=0.5)  # integrating: ~2.7 x Poisson
    gains = est["gain_over_gaussian_db"]
    assert set(gains) == set(outputs)
    for gain in gains.values():
        assert gain["ci"][0] <= gain["db"] <= gain["ci"][1]


@pytest.mark.slow
def test_frame_pair_table_ends_in_one_verdict(
    oneview_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = oneview_dir / "val-0001.tif", oneview_dir / "val-0002.tif"
    assert main(["evaluate", "--model", "fast", "--frame-pair", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "PSNR dB" in text and "95 % interval" in text and "sigma" in text
    verdicts = [line for line in text.splitlines() if "the best Gaussian" in line]
    assert len(verdicts) == 1 and verdicts[0].strip().startswith("model vs best Gaussian: model ")


@pytest.mark.slow
def test_frame_pair_of_two_fields_says_why_instead_of_numbers(
    oneview_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = oneview_dir / "train-0001.tif", oneview_dir / "val-0001.tif"  # different fields
    est = evaluate_json(capsys, "--model", "fast", "--frame-pair", str(a), str(b))["estimate"]
    assert not est["trusted"] and est["problems"]
    assert "model" not in est and "raw" not in est
    assert main(["evaluate", "--model", "fast", "--frame-pair", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "no estimate" in text and est["problems"][0] in text
    assert "95 % interval" not in text and "the best Gaussian" not in text


def test_an_untrusted_estimate_prints_its_problems_instead_of_numbers() -> None:
    sim = TEMSimulator(SimulationConfig(specimen="nanoparticles", size=SIDE, seed=1))
    a, b = (sim.render(0.002, stage_xy_px=(x, 0.0)) for x in (0.0, 40.0))  # moved 40 px
    est = estimate_pair(a.astype(float), b.astype(float))
    assert not est.trusted and est.problems and not est.rows
    text = est.render()
    assert est.problems[0] in text
    assert "the field moved" in text and "PSNR" not in text and "dB" not in text


# --- --store: a recorded run --------------------------------------------------------------------


#: The frames of the recorded run, by pair: static, static, stage moved, static, drifted 40 px.
STAGE_MOVED_PAIR, DRIFTED_PAIR = 2, 4


def record_run(path: Path, metadata_dict: Any) -> Path:
    """A 10-frame simulated run recorded by the store's writer, as ``LiveRecorder`` records one.

    Pairs (0, 1), (2, 3), (6, 7) are of one static field; between frames 4 and 5 the stage moved
    (the rows say so); frame 9 saw the field 40 px away with the stage read-back unchanged
    (drift the estimate must refuse).
    """
    sim = TEMSimulator(SimulationConfig(specimen="nanoparticles", detector="counting", seed=1,
                                        size=SIDE, dose_rate=1000.0))
    meta = AcquisitionMetadata.model_validate(metadata_dict(
        camera={"counts_per_electron": sim.counts_per_electron, "binning": 1},
        instrument={"pixel_size_A": sim.pixel_size_A}, exposure_ms=5.0, dose_e_per_px=5.0,
    ))
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    with AcquisitionWriter(path, meta, (SIDE, SIDE), np.uint16, denoised=False) as writer:
        for i in range(10):
            moved = i == 5
            field_px = (300.0, 0.0) if moved else (40.0, 0.0) if i == 9 else (0.0, 0.0)
            frame = sim.render(0.005, stage_xy_px=field_px)
            record = FrameRecord(timestamp=t0 + timedelta(seconds=i), elapsed_ms=1e3 * i,
                                 stage_x_um=3.0 if moved else 0.0, stage_y_um=0.0)
            writer.append_raw(frame, record)
    return path


def test_store_estimates_consecutive_pairs_and_counts_the_skipped(
    tmp_path: Path, metadata_dict: Any, fast_pkg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = record_run(tmp_path / "run.ome.zarr", metadata_dict)
    rep = evaluate_json(capsys, "--model", str(fast_pkg), "--store", str(store), "--blocks", "2")
    assert rep["frames"] == 10 and rep["pairs"] == 5
    assert rep["used"] == 3 and rep["skipped_count"] == 2
    assert rep["skipped_by_kind"] == {"stage moved": 1, "estimate not trusted": 1}
    by_frames = {tuple(s["frames"]): s for s in rep["skipped"]}
    assert by_frames[(4, 5)]["kind"] == "stage moved" and "3 um" in by_frames[(4, 5)]["reason"]
    assert by_frames[(8, 9)]["kind"] == "estimate not trusted"
    summary = rep["summary"]
    assert summary["trusted"]
    for name in ("raw", "gaussian", "model"):
        assert_sane_row(summary[name])
    assert summary["raw"]["mse"] == pytest.approx(5.0, rel=0.25)  # Poisson: variance = dose
    assert [b["pairs"] for b in rep["blocks"]] == [2, 1]  # pairs at 0, 2 s | 6 s (of 0-9 s)
    assert rep["blocks"][0]["start_s"] == 0 and rep["blocks"][-1]["end_s"] == 9
    assert main(["evaluate", "--model", str(fast_pkg), "--store", str(store)]) == 0
    text = capsys.readouterr().out
    assert "5 consecutive pairs: 3 used, 2 skipped (1 stage moved, 1 estimate not trusted)" in text
    assert "95 % interval" in text and "per time block" in text


def test_store_of_a_real_acquisition_skips_the_pair_the_stage_moved_in(
    tmp_path: Path, fast_pkg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run recorded by LiveRecorder through pycro-manager on the simulated microscope; the
    stage moves 50 um (its own events) for frame 5 and back for frame 6."""
    from pycromanager import Acquisition

    from acquisition_hooks import LiveRecorder, simulated_microscope

    store = tmp_path / "live.ome.zarr"
    events = [{"axes": {"time": i}, "exposure": 2.0, "x": 50.0 * (i == 5), "y": 0.0}
              for i in range(8)]
    with simulated_microscope(size=SIDE, seed=1, dose_rate=2500.0) as scope:
        settings = scope.recorder_settings()
        with LiveRecorder(store, exposure_ms=2.0, model=None, **settings) as live:
            hooks = live.acquisition_kwargs()
            with Acquisition(directory=None, show_display=False, **hooks) as acq:
                acq.acquire(events)
    rep = evaluate_json(capsys, "--model", str(fast_pkg), "--store", str(store))
    assert (rep["frames"], rep["pairs"], rep["used"]) == (8, 4, 3)
    (skipped,) = rep["skipped"]
    assert skipped["frames"] == [4, 5] and skipped["kind"] == "stage moved"
    assert rep["summary"]["trusted"]
    assert sum(b["pairs"] for b in rep["blocks"]) == 3


# --- --pairs: two short exposures per field -----------------------------------------------------


def test_pairs_with_two_shorts_per_field_get_the_estimate(
    tmp_path: Path, fast_pkg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_evaluate import write_store

    pairs = simulate_pairs("nanoparticles", "counting", n_fields=2, short_doses=(5.0,),
                           shorts_per_dose=2, size=192, seed=4)
    store = write_store(pairs, tmp_path / "p.ome.zarr")
    (rep,) = evaluate_json(capsys, "--model", str(fast_pkg), "--pairs", str(store), "--no-flips")
    assert rep["rows"]  # the long-exposure metrics, as before
    # one estimate per dose group of the report (the doses are measured: each field's 5 e-/px
    # less what its specimen scatters out of the aperture), each pair of shorts in one of them
    assert rep["estimate"] and sum(e["pairs_of_shorts"] for e in rep["estimate"]) == 2
    for est in rep["estimate"]:
        assert 3 < est["dose_group_e_per_px"] < 6
        assert est["trusted"] and est["pairs"] == est["pairs_of_shorts"]
        for name in ("raw", "gaussian", "model"):
            assert_sane_row(est[name])
    assert main(["evaluate", "--model", str(fast_pkg), "--pairs", str(store), "--no-flips"]) == 0
    text = capsys.readouterr().out
    for est in rep["estimate"]:
        assert f"ground-truth-free estimate at {est['dose_group_e_per_px']:g} e-/px (" in text


def test_pairs_with_one_short_per_field_have_no_estimate(
    tmp_path: Path, fast_pkg: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_pairs_store(tmp_path / "p.ome.zarr", fields=2, k=1)
    (rep,) = evaluate_json(capsys, "--model", str(fast_pkg), "--pairs", str(store), "--no-flips")
    assert rep["estimate"] == []


# --- bad inputs: one line, exit 2 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    return {
        "run": make_acquisition_store(root / "run.ome.zarr", frames=4),
        "one": make_acquisition_store(root / "one.ome.zarr", frames=1),
        "pairs": make_pairs_store(root / "pairs.ome.zarr", fields=1, k=2),
        "missing": root / "missing.ome.zarr",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--store", "{pairs}"), "is a pairs store; evaluate it with --pairs"),
        (("--pairs", "{run}"), "is an acquisition store; evaluate it with --store"),
        (("--store", "{one}"), "holds 1 frame; the estimate needs two or more"),
        (("--store", "{missing}"), "does not exist"),
        (("--store", "{run}", "--counts-per-electron", "44"), "a store records it"),
        (("--store", "{run}", "--figure", "f.png"), "estimate has no figure"),
        (("--store", "{run}", "--reference", "truth"), "--reference applies to --pairs only"),
        (("--store", "{run}", "--blocks", "0"), "--blocks must be >= 1"),
        (("--store", "{run}", "--block-s", "-1"), "--block-s must be > 0"),
        (("--pairs", "{pairs}", "--blocks", "3"), "apply to --store only"),
    ],
)
def test_bad_inputs_are_refused_in_one_line(
    inputs: dict[str, Path],
    fast_pkg: Path,
    args: tuple[str, ...],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [a.format(**inputs) for a in args]
    assert main(["evaluate", "--model", str(fast_pkg), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_bad_store_is_refused_in_one_line_by_the_real_command(
    inputs: dict[str, Path], fast_pkg: Path, tmp_path: Path
) -> None:
    done = run_command("evaluate", "--model", str(fast_pkg), "--store", str(inputs["pairs"]),
                       cwd=tmp_path)
    assert "evaluate it with --pairs" in done.one_error_line()
