"""tem-acq view: layer specs (pure, no napari), the napari-missing message, napari itself."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from faults.damage import pair_record
from test_report import CPE, SHAPE, MetadataBuilder, make_store

from tem_acq.cli import main as cli
from tem_acq.errors import StoreError
from tem_acq.store import Camera, Instrument, PairsMetadata, PairsWriter, open_store
from tem_acq.viewer import (
    ViewerUnavailableError,
    build_view,
    contrast_limits,
    describe,
    sample_frames,
    show,
)


def make_pairs_store(path: Path, fields: int = 2, k: int = 2) -> Path:
    rng = np.random.default_rng(3)
    meta = PairsMetadata(
        instrument=Instrument(voltage_kV=300, pixel_size_A=2.5),
        camera=Camera(name="K3", counts_per_electron=1.0),
        short_exposure_ms=2.0,
        long_exposure_ms=400.0,
        n_short=k,
        planned_fields=fields,
    )
    writer = PairsWriter(path, meta, (32, 40), truth=True)
    for field in range(fields):
        truth = np.full((k, 32, 40), 5.0, dtype=np.float32)
        truth[:, 10:20, 10:20] = 2.0
        low = rng.poisson(truth).astype(np.uint16)
        high = rng.poisson(truth * 200).astype(np.float32)
        records = [
            pair_record(
                field,
                i,
                high_exposure_ms=400.0,
                low_dose_e_per_px=float(low[i].mean()),
                high_dose_e_per_px=float(high[i].mean()),
                shift_dy_px=0.1,
                shift_dx_px=-0.2,
                flag="drift" if field == 1 else None,
            )
            for i in range(k)
        ]
        writer.append_field(field, low=low, high=high, records=records, truth=truth)
    writer.close()
    return path


# -- the pure part ------------------------------------------------------------------------------


def test_sample_frames() -> None:
    assert sample_frames(0) == []
    assert sample_frames(1) == [0]
    assert sample_frames(2) == [0, 1]
    assert sample_frames(40) == [0, 20, 39]
    assert sample_frames(40, 1) == [20]


def test_contrast_limits_come_from_percentiles_not_the_dtype() -> None:
    rng = np.random.default_rng(0)
    counts = rng.poisson(5.0, (4, 64, 64)).astype(np.uint16)
    low, high = contrast_limits(counts)  # type: ignore[misc]
    assert 0 <= low < high <= 20  # of 0-65535
    assert contrast_limits(counts, scale=0.5) == pytest.approx((low / 2, high / 2))
    # NaN (frames not denoised) is ignored; all-NaN gives no window
    floats = counts.astype(np.float32)
    floats[1:] = np.nan
    assert contrast_limits(floats) == contrast_limits(counts[:1])
    assert contrast_limits(np.full((3, 8, 8), np.nan, dtype=np.float32)) is None
    # a flat frame still gets an open window
    flat_low, flat_high = contrast_limits(np.zeros((2, 8, 8), np.uint16))  # type: ignore[misc]
    assert flat_high > flat_low == 0


def test_acquisition_view(tmp_path: Path, metadata: MetadataBuilder) -> None:
    store = open_store(make_store(tmp_path / "run.ome.zarr", metadata, 30))
    spec = build_view(store)
    assert [layer.name for layer in spec.layers] == ["raw [counts]", "denoised [e-/px]"]
    raw, den = spec.layers
    assert store.denoised is not None
    assert raw.data is store.raw and den.data is store.denoised
    assert raw.data.shape == den.data.shape == (30, *SHAPE)
    # t in seconds (the frame interval), y and x in angstrom
    assert raw.scale == den.scale == pytest.approx((0.008, 29.88, 29.88))
    assert spec.axis_labels == ("t", "y", "x")
    assert spec.axis_units == ("second", "angstrom", "angstrom")
    # raw counts are ~4.6 e- x 44 counts: the window sits there, not at 0-65535
    lo, hi = raw.contrast_limits
    assert 0 <= lo < 4.6 * CPE < hi < 20 * CPE
    # denoised window from denoised frames only (the skipped ones are NaN)
    lo, hi = den.contrast_limits
    assert 1.0 < lo < hi <= 4.6 + 1e-3
    assert raw.value_unit == "counts" and den.value_unit == "e-/px"
    assert den.metadata["model"] == "unet-test"
    assert raw.metadata["counts_per_electron"] == CPE
    kwargs = raw.napari_kwargs()
    assert set(kwargs) == {"name", "scale", "contrast_limits", "colormap", "visible", "metadata"}
    assert spec.grid is True
    for text in ("run.ome.zarr", "30 frames", "4.6 e-/px", "0.005152 e-/A^2", "3.3 ms", "200 kV"):
        assert text in spec.title
    assert "29.88 A/px, 200 kV, 20,000x" in spec.summary
    assert "15 of 30 frames denoised (15 skipped)" in spec.summary
    assert "Gatan OneView, 44 counts/e-" in spec.summary
    text = describe(spec)
    assert "layer 'raw [counts]': 30 x 48 x 64 uint16" in text
    assert "y 29.88 angstrom" in text


def test_raw_only_view_and_paths(tmp_path: Path, metadata: MetadataBuilder) -> None:
    path = make_store(tmp_path / "raw.ome.zarr", metadata, 5, model=False)
    spec = build_view(path)  # a path works too
    assert [layer.name for layer in spec.layers] == ["raw [counts]"]
    assert spec.grid is False
    assert "no denoised image" in spec.summary and "model none" in spec.title


def test_denoised_window_falls_back_to_raw_in_electrons(
    tmp_path: Path, metadata: MetadataBuilder
) -> None:
    """Nothing denoised yet (all skipped): the raw window converted to electrons."""
    path = make_store(tmp_path / "s.ome.zarr", metadata, 6, denoise_every=0, close=False)
    store = open_store(path)
    assert store.denoised_frames == 0
    raw, den = build_view(store).layers
    assert den.contrast_limits == pytest.approx(
        (raw.contrast_limits[0] / CPE, raw.contrast_limits[1] / CPE)
    )
    assert "INCOMPLETE" in build_view(store).summary


def test_pairs_view(tmp_path: Path) -> None:
    spec = build_view(make_pairs_store(tmp_path / "p.ome.zarr"))
    assert [layer.name for layer in spec.layers] == [
        "low [counts]",
        "high [counts]",
        "truth [e-/px]",
    ]
    assert spec.axis_labels == ("pair", "y", "x")
    assert all(layer.scale == (1.0, 2.5, 2.5) for layer in spec.layers)
    assert all(layer.data.shape == (4, 32, 40) for layer in spec.layers)
    low, high, truth = (layer.contrast_limits for layer in spec.layers)
    assert low[1] < 20 and 300 < high[1] < 1500 and truth == pytest.approx((2.0, 5.0))
    assert "4 pairs" in spec.title and "2.5 A/px" in spec.title
    assert "2 of 4 pairs flagged (drift 2)" in spec.summary


# -- the command ----------------------------------------------------------------------------------


def test_describe_prints_layers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], metadata: MetadataBuilder
) -> None:
    store = make_store(tmp_path / "d.ome.zarr", metadata, 4)
    assert cli(["view", str(store), "--describe", "--percentiles", "1", "99"]) == 0
    out = capsys.readouterr().out
    assert "layer 'raw [counts]'" in out and "layer 'denoised [e-/px]'" in out
    assert cli(["view", str(store), "--percentiles", "90", "10"]) == 2
    assert "LOW < HIGH" in capsys.readouterr().err


def test_without_napari_exit_2_says_how_to_install_and_other_ways(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    metadata: MetadataBuilder,
) -> None:
    monkeypatch.setitem(sys.modules, "napari", None)  # import napari -> ImportError
    store = make_store(tmp_path / "n.ome.zarr", metadata, 3)
    assert cli(["view", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tem-acq view: error: napari is not installed")
    assert "pip install 'tem-acq[viewer]'" in err
    for way in ("tem-acq report", "tem-acq info", "open_store", "zarr.open_array", "xarray"):
        assert way in err, way
    assert f"napari --plugin napari-ome-zarr {store}" in err
    with pytest.raises(ViewerUnavailableError):
        show(build_view(store), block=False)


def test_view_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["view", str(tmp_path / "nothing.zarr")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="not a zarr v3 store"):
        build_view(tmp_path / "plain")


# -- napari itself (skipped where it is not installed) ----------------------------------------


def test_populate_a_napari_viewer_model(tmp_path: Path, metadata: MetadataBuilder) -> None:
    """The spec applied to napari's window-less ViewerModel (no Qt or OpenGL needed)."""
    pytest.importorskip("napari")
    from napari.components import ViewerModel

    from tem_acq.viewer import _canvas_parts, populate

    spec = build_view(make_store(tmp_path / "m.ome.zarr", metadata, 10))
    viewer = ViewerModel()
    populate(viewer, spec)
    assert viewer.title == spec.title
    assert [layer.name for layer in viewer.layers] == ["raw [counts]", "denoised [e-/px]"]
    raw = viewer.layers["raw [counts]"]
    np.testing.assert_allclose(raw.scale, (0.008, 29.88, 29.88))
    assert [str(u) for u in raw.units] == ["second", "angstrom", "angstrom"]
    assert tuple(raw.contrast_limits) == pytest.approx(spec.layers[0].contrast_limits)
    assert tuple(viewer.dims.axis_labels) == ("t", "y", "x")
    grid, scale_bar, text = _canvas_parts(viewer)
    assert grid.enabled and tuple(grid.shape) == (1, 2) and scale_bar.visible
    assert text.visible and "Gatan OneView" in text.text


@pytest.mark.skipif(
    not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")),
    reason="a Qt window needs a display (OpenGL); run under xvfb-run to include it",
)
def test_show_in_a_qt_viewer(tmp_path: Path) -> None:
    pytest.importorskip("napari")
    spec = build_view(make_pairs_store(tmp_path / "q.ome.zarr"))
    viewer = show(spec, block=False)
    try:
        assert [layer.name for layer in viewer.layers] == [layer.name for layer in spec.layers]
        shot = viewer.screenshot(canvas_only=True, flash=False)
        assert shot.ndim == 3 and shot[..., :3].max() > 0  # something was drawn
    finally:
        viewer.close()
