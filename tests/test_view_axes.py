"""A multi-dimensional useq run is shown by its axes: `tem-acq info` lists them, the napari view
has one slider per axis (the lazy hyperstack), and a plain series stays along t."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from acquisition_hooks import simulated_microscope
from tem_acq.cli import main
from tem_acq.store import open_store
from tem_acq.viewer import build_view

useq = pytest.importorskip("useq")


def test_info_and_view_follow_the_sequence_axes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from acquisition_hooks.mda import MDARecorder

    path = tmp_path / "grid.ome.zarr"
    sequence = useq.MDASequence(
        time_plan={"interval": 0, "loops": 3}, grid_plan={"rows": 1, "columns": 2}
    )
    with simulated_microscope(stack="pymmcore-plus", size=64, real_time=False) as scope:
        settings = scope.recorder_settings()
        with MDARecorder(path, core=scope.core, exposure_ms=2.0, **settings) as rec:
            scope.core.mda.run(sequence, output=rec)
    assert main(["info", str(path)]) == 0
    assert "axes        t 3 x g 2 (from useq-schema" in capsys.readouterr().out
    store = open_store(path)
    view = build_view(store)
    assert view.axis_labels == ("t", "g", "y", "x")
    raw = view.layers[0].data
    assert raw.shape == (3, 2, 64, 64) and len(view.layers[0].scale) == 4
    for row in store.frames:  # each place shows the frame the rows put there
        t, g = row.axes["t"], row.axes["g"]
        np.testing.assert_array_equal(raw[t, g], store.raw[row.index])


def test_a_plain_series_is_shown_along_t(tmp_path: Path) -> None:
    path = tmp_path / "plain.ome.zarr"
    assert main(["acquire", "--simulated", "--frames", "3", "--size", "64", "--model", "none",
                 "--out", str(path)]) == 0  # fmt: skip
    view = build_view(open_store(path))
    assert view.axis_labels == ("t", "y", "x") and view.layers[0].data.shape[0] == 3
