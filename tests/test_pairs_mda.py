"""Paired collection on pymmcore-plus: useq events through ``core.mda.run``, the same store."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from acquisition_hooks import simulated_microscope
from acquisition_hooks.pairs import PairPlan, collect_pairs
from tem_acq.cli import main as cli
from tem_acq.store import open_pairs

ARGS = ["--fields", "3", "--n-short", "2", "--short-exposure-ms", "2", "--long-exposure-ms", "40"]


def _collect(stack: str, out: Path) -> int:
    return cli(
        ["collect-pairs", "--simulated", "--stack", stack, *ARGS, "--size", "64", "--out", str(out)]
    )


def test_both_stacks_write_the_same_pairs_store(tmp_path: Path) -> None:
    """Same fields, pairs, arrays and metadata; only the protocol's backend differs."""
    a, b = tmp_path / "pm.ome.zarr", tmp_path / "pp.ome.zarr"
    assert _collect("pycromanager", a) == 0
    assert _collect("pymmcore-plus", b) == 0
    pm, pp = open_pairs(a), open_pairs(b)
    assert pp.complete is True
    assert pm.low.shape == pp.low.shape == pp.high.shape == (6, 64, 64)
    assert pp.truth is not None and pp.truth.shape == pm.truth.shape  # type: ignore[union-attr]
    assert [r.field for r in pp.pairs] == [r.field for r in pm.pairs] == [0, 0, 1, 1, 2, 2]
    # the same stage positions and exposures, the long frame 20x the dose of a short
    for rm, rp in zip(pm.pairs, pp.pairs, strict=True):
        assert (rp.stage_x_um, rp.stage_y_um) == (rm.stage_x_um, rm.stage_y_um)
        assert rp.high_dose_e_per_px / rp.low_dose_e_per_px == pytest.approx(20, rel=0.05)
    # truth follows each frame's own field: the same specimen region on both stacks
    assert np.corrcoef(pm.truth[2].ravel(), pp.truth[2].ravel())[0, 1] > 0.99  # type: ignore[index]
    md_m, md_p = pm.metadata.model_dump(mode="json"), pp.metadata.model_dump(mode="json")
    assert md_p["protocol"].pop("backend") == "pymmcore-plus"
    assert md_m["protocol"].pop("backend") == "pycromanager"
    md_m.pop("created", None), md_p.pop("created", None)
    assert md_p == md_m


def test_pymmcore_plus_collection_resumes_where_it_stopped(tmp_path: Path) -> None:
    out = tmp_path / "r.ome.zarr"
    plan = PairPlan(fields=4, n_short=1, short_exposure_ms=2.0, long_exposure_ms=20.0)
    stop = threading.Event()

    def stop_after_field_1(field: int) -> None:
        if field == 1:
            stop.set()  # as Ctrl-C does

    with simulated_microscope(size=64, seed=7, stack="pymmcore-plus") as scope:
        collect_pairs(scope, plan, out, on_field=stop_after_field_1, stop=stop)
    first = open_pairs(out)
    assert first.complete is False
    done = sorted({r.field for r in first.pairs})
    assert done[:2] == [0, 1] and len(done) < 4
    with simulated_microscope(size=64, seed=7, stack="pymmcore-plus") as scope:
        collect_pairs(scope, plan, out, resume=True)
    p = open_pairs(out)
    assert p.complete is True
    assert sorted(r.field for r in p.pairs) == [0, 1, 2, 3]
    np.testing.assert_array_equal(p.low[: len(done)], first.low[: len(done)])


def test_stop_cancels_the_running_sequence(tmp_path: Path) -> None:
    """A stop during a long exposure ends the collection after it, as Ctrl-C does.

    pymmcore-plus cancels between events: the exposure being snapped completes (its field is
    written when complete), no later event runs.
    """
    out = tmp_path / "s.ome.zarr"
    plan = PairPlan(fields=3, n_short=1, short_exposure_ms=2.0, long_exposure_ms=3000.0)
    stop = threading.Event()
    with simulated_microscope(size=64, stack="pymmcore-plus") as scope:
        timer = threading.Timer(0.5, stop.set)
        timer.start()
        t0 = time.perf_counter()
        collect_pairs(scope, plan, out, stop=stop)
        elapsed = time.perf_counter() - t0
    p = open_pairs(out)
    assert p.complete is False and {r.field for r in p.pairs} <= {0}
    # the collection ended with the first long exposure (3 s); three fields take 9 s
    assert elapsed < 4.5
