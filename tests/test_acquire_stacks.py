"""`tem-acq acquire --stack pycromanager|pymmcore-plus` record the same store, row for row."""

from __future__ import annotations

from pathlib import Path

import pytest

from tem_acq.cli import main
from tem_acq.store import open_store


@pytest.mark.parametrize("stack", ["pycromanager", "pymmcore-plus"])
def test_acquire_on_both_stacks_records_the_same_table(
    stack: str, tmp_path: Path, fast_pkg: Path
) -> None:
    out = tmp_path / f"{stack}.ome.zarr"
    code = main(["acquire", "--simulated", "--stack", stack, "--frames", "50", "--size", "128",
                 "--model", str(fast_pkg), "--out", str(out)])  # fmt: skip
    assert code == 0
    store = open_store(out)
    assert store.complete and store.n_frames == 50 and store.denoised is not None
    assert store.metadata.protocol.backend == stack
    rows = store.frames
    assert all(r.denoised or r.skipped for r in rows)
    assert all(r.exposure_ms == 2.0 and r.dose_e_per_px and r.raw_mean_e_per_px for r in rows)
    ids = [int(r.extra["sim_frame_id"]) for r in rows]
    assert ids == list(range(ids[0], ids[0] + 50))
    fields = sorted(rows[0].model_dump())
    assert fields == sorted(open_store(out).frames[-1].model_dump())
    assert {"axes", "corrected_dose_e_per_px", "stage_x_um", "elapsed_ms"} <= set(fields)
