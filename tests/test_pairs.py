"""Paired-data collection: binning, registration, flags, and real collections into pairs stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from acquisition_hooks import simulated_microscope
from acquisition_hooks.pairs import PairPlan, collect_pairs
from tem_acq.cli import main as cli
from tem_acq.errors import AcquisitionError
from tem_acq.pairs import assemble_field, bin_sum, binning_factor, grid_positions_um
from tem_acq.store import open_pairs


def test_bin_sum_preserves_counts() -> None:
    rng = np.random.default_rng(0)
    img = rng.poisson(3.0, (64, 96)).astype(np.uint16)
    binned = bin_sum(img, 4)
    assert binned.shape == (16, 24)
    assert binned.sum() == img.sum()
    assert binned[0, 0] == img[:4, :4].sum()
    with pytest.raises(AcquisitionError, match="cannot bin a 64x96 frame by 5"):
        bin_sum(img, 5)


def test_binning_factor_needs_an_integer_ratio() -> None:
    assert binning_factor((128, 128), (512, 512)) == 4
    with pytest.raises(AcquisitionError, match="integer binning ratio"):
        binning_factor((128, 128), (300, 300))


def test_assemble_field_measures_shift_and_flags() -> None:
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:128, :128]
    centres = rng.uniform(20, 108, (12, 2))

    def particles(dy: float, dx: float) -> np.ndarray:
        dark = sum(
            np.exp(-((yy - cy - dy) ** 2 + (xx - cx - dx) ** 2) / 30.0) for cy, cx in centres
        )
        return np.exp(-1.5 * dark)

    clean, shifted = particles(0, 0), particles(3, -4)
    low = rng.poisson(5 * clean).astype(np.uint16)
    high = rng.poisson(1000 * shifted).astype(np.uint16)
    (pair,) = assemble_field([low], [high], counts_per_electron=1.0, max_shift_px=2.0)
    assert (pair.shift_dy_px, pair.shift_dx_px) == pytest.approx((3.0, -4.0), abs=0.3)
    assert pair.flag == "drift"
    assert pair.high_dose_e_per_px == pytest.approx(high.mean())
    saturated = high.copy()
    saturated[0, 0] = 65535
    (pair,) = assemble_field([low], [saturated], counts_per_electron=1.0, max_shift_px=10)
    assert pair.flag == "saturated"


def test_grid_positions_never_overlap() -> None:
    pos = grid_positions_um(6, field_size_um=0.8)
    assert len(pos) == 6 and len(set(pos)) == 6
    d = min(
        max(abs(a[0] - b[0]), abs(a[1] - b[1])) for i, a in enumerate(pos) for b in pos[i + 1 :]
    )
    assert d > 0.8
    with pytest.raises(AcquisitionError, match="spacing must be > 1"):
        grid_positions_um(2, field_size_um=1.0, spacing=0.5)


def test_collect_pairs_done_when(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's check: 6 fields x 2 shorts -> 12 pairs with registration shifts."""
    out = tmp_path / "p.ome.zarr"
    code = cli(
        [
            "collect-pairs",
            "--simulated",
            "--fields",
            "6",
            "--n-short",
            "2",
            "--short-exposure-ms",
            "2",
            "--long-exposure-ms",
            "400",
            "--size",
            "256",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    capsys.readouterr()
    assert cli(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "pairs"
    assert info["pairs"] == 12
    assert info["planned_fields"] == 6 and info["complete"] is True
    p = open_pairs(out)
    assert p.low.shape == p.high.shape == (12, 256, 256)
    assert p.truth is not None and p.truth.shape == (12, 256, 256)
    rows = p.pairs
    assert [r.field for r in rows] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert all(r.shift_dy_px is not None and r.shift_dx_px is not None for r in rows)
    # no drift configured: registered shifts are small; flat fields cannot be registered
    good = [r for r in rows if r.flag is None]
    # (at 2x5 e-/px against 6 % contrast the precision is about half a pixel)
    assert good and max(max(abs(r.shift_dx_px), abs(r.shift_dy_px)) for r in good) < 1.0
    assert all(r.shift_significance is not None for r in rows)
    assert all(r.flag in (None, "low_contrast") for r in rows)
    # the long exposure has 200x the dose of a short
    ratio = np.mean([r.high_dose_e_per_px / r.low_dose_e_per_px for r in rows])
    assert ratio == pytest.approx(200.0, rel=0.05)
    # truth is the short frame's expected electrons: its mean matches the short frame's dose
    cpe = p.metadata.camera.counts_per_electron
    assert p.truth[0].mean() == pytest.approx(p.low[0].mean() / cpe, rel=0.05)
    # fields differ
    assert np.corrcoef(p.truth[0].ravel(), p.truth[2].ravel())[0, 1] < 0.5


def test_drift_is_measured_and_flagged(tmp_path: Path) -> None:
    plan = PairPlan(
        fields=3, n_short=1, short_exposure_ms=5.0, long_exposure_ms=200.0, max_shift_px=1.0
    )
    with simulated_microscope(size=256, dose_rate=5000.0, drift_px_per_s=20.0, seed=4) as scope:
        collect_pairs(scope, plan, tmp_path / "d.ome.zarr")
        log = list(scope.camera.frame_log)
    rows = open_pairs(tmp_path / "d.ome.zarr").pairs
    registered = [r for r in rows if r.flag != "low_contrast"]
    assert registered
    # per field: short then long; content moves by -drift x (time between exposure centres)
    for r in registered:
        short, long = log[2 * r.field], log[2 * r.field + 1]
        centres = (long.t_s + long.exposure_ms / 2e3) - (short.t_s + short.exposure_ms / 2e3)
        expected = -20.0 * centres
        assert r.shift_dx_px == pytest.approx(expected, abs=0.6)
        assert r.flag == "drift"


def test_sum_mode_and_long_first(tmp_path: Path) -> None:
    plan = PairPlan(
        fields=1,
        n_short=2,
        short_exposure_ms=2.0,
        long_exposure_ms=20.0,
        long_mode="sum",
        long_order="before",
    )
    with simulated_microscope(size=64, dose_rate=2500.0, seed=6) as scope:
        collect_pairs(scope, plan, tmp_path / "s.ome.zarr")
    p = open_pairs(tmp_path / "s.ome.zarr")
    assert p.low.shape[0] == 2
    assert p.metadata.long_mode == "sum"
    assert p.pairs[0].order == "before"
    # ten short frames summed: ten times the dose of one
    assert p.pairs[0].high_dose_e_per_px / p.pairs[0].low_dose_e_per_px == pytest.approx(
        10, rel=0.1
    )


def test_interrupted_collection_resumes_where_it_stopped(tmp_path: Path) -> None:
    out = tmp_path / "r.ome.zarr"
    plan = PairPlan(fields=4, n_short=1, short_exposure_ms=2.0, long_exposure_ms=20.0)
    stop_after = 2

    def interrupt(field: int) -> None:
        if field == stop_after - 1:
            raise KeyboardInterrupt

    with simulated_microscope(size=64, seed=7) as scope:
        with pytest.raises((KeyboardInterrupt, AcquisitionError)):
            collect_pairs(scope, plan, out, on_field=interrupt)
    first = open_pairs(out)
    assert first.complete is False
    done = sorted({r.field for r in first.pairs})
    assert done and len(done) < 4
    with simulated_microscope(size=64, seed=7) as scope:
        collect_pairs(scope, plan, out, resume=True)
    p = open_pairs(out)
    assert p.complete is True
    assert sorted(r.field for r in p.pairs) == [0, 1, 2, 3]
    np.testing.assert_array_equal(p.low[: len(done)], first.low[: len(done)])


def test_existing_pairs_store_needs_overwrite_or_resume(tmp_path: Path) -> None:
    out = tmp_path / "e.ome.zarr"
    plan = PairPlan(fields=1, n_short=1, short_exposure_ms=2.0, long_exposure_ms=10.0)
    with simulated_microscope(size=64) as scope:
        collect_pairs(scope, plan, out)
        with pytest.raises(Exception, match="already exists"):
            collect_pairs(scope, plan, out)


def test_collect_pairs_without_simulated_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["collect-pairs", "--out", "x.ome.zarr"]) == 2
    assert "--simulated" in capsys.readouterr().err


def test_collect_pairs_runs_the_core_plan_too(tmp_path: Path) -> None:
    """The hook layer's PairPlan only adds ``events``; a plain tem_acq.pairs.PairPlan works."""
    from acquisition_hooks.pairs import field_events
    from tem_acq.pairs import PairPlan as CorePairPlan

    settings = {"fields": 1, "n_short": 2, "short_exposure_ms": 2.0, "long_exposure_ms": 20.0}
    core = CorePairPlan(**settings)
    assert field_events(core, 0, 1.0, 2.0) == PairPlan(**settings).events(0, 1.0, 2.0)
    with simulated_microscope(size=64, dose_rate=2500.0, seed=6) as scope:
        collect_pairs(scope, core, tmp_path / "c.ome.zarr")
    assert open_pairs(tmp_path / "c.ome.zarr").low.shape[0] == 2
