"""Show tem-acq stores in napari: raw and denoised frames (or low/high/truth pairs) as layers.

:func:`build_view` turns a store into a :class:`ViewSpec` (pure: arrays, layer names, scale,
contrast limits, title and summary; no napari needed) and :func:`show` puts that spec into a
napari viewer. ``tem-acq view STORE`` does both.

Contrast limits come from percentiles of a few frames, never from the dtype's range: low-dose
frames hold 0-10 counts of a uint16's 0-65535 and would otherwise show black. Layers are scaled
to physical units (angstrom along y and x, seconds along t) so napari's scale bar reads true.
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tem_acq.errors import StoreError, ViewerUnavailableError

#: Percentiles of the sampled pixels that become a layer's contrast limits.
DEFAULT_PERCENTILES: tuple[float, float] = (0.5, 99.5)

#: At most this many pixels of each sampled frame enter the percentile (a regular subsample).
_MAX_SAMPLE_PIXELS = 1_000_000

INSTALL_HINT = "pip install 'tem-acq[viewer]'"


@dataclass(frozen=True)
class LayerSpec:
    """One napari image layer.

    Attributes
    ----------
    name
        Layer name (with the unit of the values, e.g. ``"raw [counts]"``).
    data
        The (n, y, x) frames, lazy (a zarr array) or in memory; napari reads it on demand.
    scale
        Size of one step along each axis in physical units (see :attr:`ViewSpec.axis_units`).
    contrast_limits
        Display window (low, high) in the values' unit, from percentiles of a few frames.
    value_unit
        Unit of the pixel values (``"counts"``, ``"e-/px"``).
    colormap
        napari colormap name.
    visible
        Whether the layer starts visible.
    metadata
        Kept in the layer's ``metadata`` (store path, counts per electron, ...).
    """

    name: str
    data: Any
    scale: tuple[float, ...]
    contrast_limits: tuple[float, float]
    value_unit: str
    colormap: str = "gray"
    visible: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)

    def napari_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``napari.Viewer.add_image`` (besides ``data``)."""
        return {
            "name": self.name,
            "scale": self.scale,
            "contrast_limits": self.contrast_limits,
            "colormap": self.colormap,
            "visible": self.visible,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class ViewSpec:
    """Everything :func:`show` needs to present a store.

    Attributes
    ----------
    title
        Window title: store name plus the key acquisition facts.
    summary
        Multi-line metadata summary, shown as a text overlay.
    layers
        Image layers, bottom first.
    axis_labels
        Names of the three axes (``("t", "y", "x")`` or ``("pair", "y", "x")``).
    axis_units
        Physical unit of each axis's scale (``("second", "angstrom", "angstrom")``).
    grid
        Show the layers side by side (napari grid mode) rather than stacked.
    """

    title: str
    summary: str
    layers: list[LayerSpec]
    axis_labels: tuple[str, ...]
    axis_units: tuple[str, ...]
    grid: bool = True


# -- pure part: stores to layer specs ---------------------------------------------------------


def sample_frames(n_frames: int, count: int = 3) -> list[int]:
    """Indices of up to ``count`` frames spread over ``n_frames`` (first, middle, last, ...)."""
    if n_frames <= 0 or count <= 0:
        return []
    if count == 1:
        return [n_frames // 2]
    picks = np.linspace(0, n_frames - 1, num=min(count, n_frames))
    return sorted({round(float(p)) for p in picks})


def contrast_limits(
    array: Any,
    frames: Sequence[int] | None = None,
    *,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    scale: float = 1.0,
) -> tuple[float, float] | None:
    """Display window from percentiles of a few frames of a (t, y, x) array.

    Parameters
    ----------
    array
        Array-like of shape (t, y, x) that supports ``array[i]`` (zarr, numpy).
    frames
        Which frames to sample; by default the first, middle and last.
    percentiles
        Lower and upper percentile of the sampled pixels (NaN and inf ignored).
    scale
        Multiply the limits by this (e.g. ``1 / counts_per_electron`` for electrons).

    Returns
    -------
    tuple of float or None
        ``(low, high)`` with ``high > low``, or ``None`` when the sampled frames hold no finite
        value (e.g. denoised frames that were all skipped).
    """
    n = int(array.shape[0])
    picks = sample_frames(n) if frames is None else [i for i in frames if 0 <= i < n]
    samples = []
    for index in picks:
        frame = np.asarray(array[index])
        step = max(1, math.ceil(math.sqrt(frame.size / _MAX_SAMPLE_PIXELS)))
        values = frame[::step, ::step].ravel()
        if np.issubdtype(values.dtype, np.floating):
            values = values[np.isfinite(values)]
        samples.append(values)
    pixels = np.concatenate(samples) if samples else np.empty(0)
    if pixels.size == 0:
        return None
    low, high = (float(v) * scale for v in np.percentile(pixels, percentiles))
    if not high > low:
        # a flat sample (a blank frame): open the window a little so napari can draw it
        high = low + max(abs(low) * 1e-3, scale, 1e-6)
    return low, high


def open_any(path: str | os.PathLike[str]) -> Any:
    """Open an acquisition store (``open_store``) or a pairs store (``open_pairs``).

    Raises
    ------
    StoreError
        If ``path`` is not a readable tem-acq store, or is a pairs store and this tem-acq
        cannot read pairs stores.
    """
    from tem_acq.store import open_pairs, open_store, store_kind

    return open_pairs(path) if store_kind(path) == "pairs" else open_store(path)


def build_view(store: Any, *, percentiles: tuple[float, float] = DEFAULT_PERCENTILES) -> ViewSpec:
    """Describe how to show a store (an ``AcquisitionStore``, a pairs store, or a path).

    Parameters
    ----------
    store
        An opened store, or the path of one.
    percentiles
        Percentiles of a few frames that set each layer's contrast limits.

    Returns
    -------
    ViewSpec
        Layers (lazy arrays, names, scale in angstrom and seconds, contrast limits), title and
        summary. Nothing here imports napari.
    """
    if isinstance(store, str | os.PathLike):
        store = open_any(store)
    if getattr(store.metadata, "kind", "acquisition") == "pairs":
        return _pairs_view(store, percentiles)
    return _acquisition_view(store, percentiles)


def _acquisition_view(store: Any, percentiles: tuple[float, float]) -> ViewSpec:
    layers = _acquisition_layers(store, percentiles)
    title, summary = _acquisition_text(store)
    labels: tuple[str, ...] = ("t", "y", "x")
    units: tuple[str, ...] = ("second", "angstrom", "angstrom")
    if _by_axes(store):
        # a multi-dimensional acquisition: one slider per axis (t, p, z, ...), by its steps
        axes = tuple(store.places.sizes)
        labels, units = (*axes, "y", "x"), (*("" for _ in axes), "angstrom", "angstrom")
        step = (1.0,) * len(axes)
        layers = [
            replace(
                layer,
                data=store.hyperstack(layer.metadata["image"]),
                scale=(*step, *layer.scale[1:]),
            )
            for layer in layers
        ]
        summary += "\naxes " + " x ".join(f"{a} {n}" for a, n in store.places.sizes.items())
    return ViewSpec(
        title=title,
        summary=summary,
        layers=layers,
        axis_labels=labels,
        axis_units=units,
        grid=len(layers) > 1,
    )


def _by_axes(store: Any) -> bool:
    """Show the store by its acquisition's axes: the header states them, or rows give 2+."""
    places = getattr(store, "places", None)
    if places is None or not places.sizes:
        return False
    return store.metadata.axes is not None or len(places.sizes) > 1


def _acquisition_layers(store: Any, percentiles: tuple[float, float]) -> list[LayerSpec]:
    """Raw counts, and denoised electrons windowed on denoised frames (else on raw's window)."""
    meta = store.metadata
    px = float(meta.instrument.pixel_size_A)
    scale = (float(meta.frame_interval_s), px, px)
    cpe = float(meta.camera.counts_per_electron)
    common = {"store": str(store.path), "pixel_size_A": px, "counts_per_electron": cpe}
    raw_limits = contrast_limits(store.raw, percentiles=percentiles) or (0.0, 1.0)
    layers = [_image_layer("raw", "counts", store.raw, scale, raw_limits, common)]
    if store.denoised is not None:
        done = [row.index for row in store.frames if row.denoised]
        picks = [done[i] for i in sample_frames(len(done))]
        limits = contrast_limits(store.denoised, picks, percentiles=percentiles) if picks else None
        if limits is None:  # nothing denoised yet: the raw window, in electrons
            limits = (raw_limits[0] / cpe, raw_limits[1] / cpe)
        model = None if meta.model is None else meta.model.name
        layers.append(
            _image_layer("denoised", "e-/px", store.denoised, scale, limits, common, model=model)
        )
    return layers


def _acquisition_text(store: Any) -> tuple[str, str]:
    """The window title and the metadata overlay of an acquisition store."""
    meta = store.metadata
    px = float(meta.instrument.pixel_size_A)
    cpe = float(meta.camera.counts_per_electron)
    n = store.n_frames
    h, w = store.frame_shape
    model = "none" if meta.model is None else meta.model.name
    title = (
        f"tem-acq: {store.path.name} - {n} frames {h}x{w}, "
        f"{_fmt(meta.dose_e_per_px)} e-/px ({_fmt(meta.dose_e_per_A2)} e-/A^2) per frame, "
        f"{_fmt(meta.exposure_ms)} ms, {_fmt(px)} A/px, {_fmt(meta.instrument.voltage_kV)} kV, "
        f"model {model}"
    )
    denoised = (
        "no denoised image"
        if store.denoised is None
        else (f"{store.denoised_frames} of {n} frames denoised ({len(store.skipped)} skipped)")
    )
    lines = [
        f"{store.path.name}{'' if store.complete else '  [INCOMPLETE: not closed cleanly]'}",
        f"{n} frames, {h} x {w} px, {_fmt(px)} A/px, {_fmt(meta.instrument.voltage_kV)} kV"
        + (
            ""
            if meta.instrument.magnification is None
            else f", {_fmt(meta.instrument.magnification)}x"
        ),
        f"dose/frame {_fmt(meta.dose_e_per_px)} e-/px = {_fmt(meta.dose_e_per_A2)} e-/A^2, "
        f"exposure {_fmt(meta.exposure_ms)} ms",
        f"camera {meta.camera.name}, {_fmt(cpe)} counts/e-",
        f"model {model}"
        + ("" if meta.model is None else f" (sha256 {meta.model.sha256[:12]})")
        + f"; {denoised}",
    ]
    if store.errors:
        lines.append(f"{len(store.errors)} errors recorded: see tem-acq info")
    return title, "\n".join(lines)


def _image_layer(
    image: str,
    unit: str,
    data: Any,
    scale: tuple[float, ...],
    limits: tuple[float, float],
    common: dict[str, Any],
    **metadata: Any,
) -> LayerSpec:
    """The layer of one image of a store, named after it and the unit of its values."""
    return LayerSpec(
        name=f"{image} [{unit}]",
        data=data,
        scale=scale,
        contrast_limits=limits,
        value_unit=unit,
        metadata={**common, "image": image, **metadata},
    )


def _pairs_view(store: Any, percentiles: tuple[float, float]) -> ViewSpec:
    meta = store.metadata
    instrument = getattr(meta, "instrument", None)
    px = float(getattr(instrument, "pixel_size_A", None) or 1.0)
    px_unit = "angstrom" if getattr(instrument, "pixel_size_A", None) else "pixel"
    px_label = "A" if px_unit == "angstrom" else "px"
    camera = getattr(meta, "camera", None)
    cpe = getattr(camera, "counts_per_electron", None)
    scale = (1.0, px, px)
    common = {"store": str(store.path), "pixel_size_A": px, "counts_per_electron": cpe}
    units = {"low": "counts", "high": "counts", "truth": "e-/px"}
    layers = []
    for image in ("low", "high", "truth"):
        data = getattr(store, image, None)
        if data is None:
            continue
        limits = contrast_limits(data, percentiles=percentiles) or (0.0, 1.0)
        layers.append(_image_layer(image, units[image], data, scale, limits, common))
    if not layers:
        raise StoreError(f"{store.path} holds no low/high/truth images: the store is damaged")
    n, h, w = (int(v) for v in layers[0].data.shape)
    title = f"tem-acq pairs: {store.path.name} - {n} pairs {h}x{w}, {_fmt(px)} {px_label}/px"
    rows = list(getattr(store, "pairs", []) or [])
    flags = Counter(str(_get(r, "flag")) for r in rows if _get(r, "flag"))
    flagged = ", ".join(f"{flag} {count}" for flag, count in sorted(flags.items()))
    lines = [
        f"{store.path.name}{'' if getattr(store, 'complete', True) else '  [INCOMPLETE]'}",
        f"{n} pairs, {h} x {w} px, {_fmt(px)} {px_label}/px"
        + ("" if cpe is None else f", {_fmt(cpe)} counts/e-"),
        f"{sum(flags.values())} of {len(rows)} pairs flagged" + (f" ({flagged})" if flags else ""),
        "layers: " + ", ".join(layer.name for layer in layers),
    ]
    return ViewSpec(
        title=title,
        summary="\n".join(lines),
        layers=layers,
        axis_labels=("pair", "y", "x"),
        axis_units=("", px_unit, px_unit),
        grid=len(layers) > 1,
    )


def _get(row: Any, name: str) -> Any:
    return row.get(name) if isinstance(row, dict) else getattr(row, name, None)


def format_number(value: float | None, digits: int = 4, missing: str = "?") -> str:
    """A readable number: ``digits`` significant digits, thousands separators when larger."""
    if value is None:
        return missing
    if abs(value) >= 10**digits:
        return f"{value:,.0f}"  # 20,000 rather than 2e+04
    return f"{value:.{digits}g}"


_fmt = format_number  # short name for this module's f-strings


def describe(spec: ViewSpec) -> str:
    """Readable text of a view: title, summary and each layer's shape, scale and window."""
    lines = [spec.title, "", spec.summary, ""]
    for layer in spec.layers:
        shape = " x ".join(str(int(v)) for v in layer.data.shape)
        scale = ", ".join(
            f"{label} {value:.4g}{' ' + unit if unit else ''}"
            for label, value, unit in zip(
                spec.axis_labels, layer.scale, spec.axis_units, strict=True
            )
        )
        lo, hi = layer.contrast_limits
        lines.append(
            f"layer {layer.name!r}: {shape} {layer.data.dtype}; scale {scale}; "
            f"contrast {lo:.4g} to {hi:.4g} {layer.value_unit}"
        )
    return "\n".join(lines)


# -- napari part --------------------------------------------------------------------------


def other_ways(path: str | os.PathLike[str]) -> str:
    """How to browse a store without napari (printed when napari cannot open)."""
    p = str(path)
    return "\n".join(
        [
            "Other ways to browse the store:",
            f"  tem-acq info {p}          metadata summary",
            f"  tem-acq report {p}        HTML page: metadata, per-frame plots, raw vs denoised",
            "  numpy, through tem-acq:",
            "    from tem_acq.store import open_store",
            f"    s = open_store({p!r}); frame = s.raw[0]; table = s.frame_table()",
            "  zarr:",
            f"    import zarr; raw = zarr.open_array({p + '/raw/0'!r}, mode='r')",
            "  xarray (dimensions t, y, x are stored with the arrays):",
            "    import xarray as xr",
            f"    raw = xr.open_dataset({p + '/raw'!r}, engine='zarr', consolidated=False)['0']",
            "  napari-ome-zarr (one image group at a time):",
            f"    napari --plugin napari-ome-zarr {p}",
        ]
    )


def _import_napari(path: str | os.PathLike[str]) -> Any:
    try:
        import napari
    except ImportError as exc:
        raise ViewerUnavailableError(
            f"napari is not installed ({exc}), so tem-acq view cannot open a window. Install "
            f"it with:\n    {INSTALL_HINT}\n{other_ways(path)}"
        ) from None
    return napari


#: The X11 libraries Qt's xcb platform plugin loads (library name: Debian package); without
#: them Qt aborts the process rather than raising (seen under a virtual display on Debian).
QT_XCB_LIBRARIES: dict[str, str] = {
    "xcb-icccm": "libxcb-icccm4",
    "xcb-keysyms": "libxcb-keysyms1",
    "xcb-image": "libxcb-image0",
    "xcb-render-util": "libxcb-render-util0",
    "xcb-cursor": "libxcb-cursor0",
    "xkbcommon-x11": "libxkbcommon-x11-0",
}


def missing_qt_libraries() -> list[str]:
    """The Debian packages of the Qt xcb libraries this Linux machine lacks (empty: none)."""
    import ctypes.util

    return [pkg for lib, pkg in QT_XCB_LIBRARIES.items() if ctypes.util.find_library(lib) is None]


def _check_display(path: str | os.PathLike[str]) -> None:
    """Refuse early on Linux without a display or Qt's X11 libraries: Qt would abort."""
    if not sys.platform.startswith("linux"):
        return
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform and platform != "xcb":
        return
    if os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        missing = missing_qt_libraries()
        if missing:
            raise ViewerUnavailableError(
                f"Qt cannot open a window here: the X11 libraries its xcb plugin needs are "
                f"missing; on Debian/Ubuntu: sudo apt install {' '.join(missing)}.\n"
                f"{other_ways(path)}"
            )
        return
    if os.environ.get("WAYLAND_DISPLAY") or platform:
        return
    raise ViewerUnavailableError(
        "no display to open napari on (DISPLAY and WAYLAND_DISPLAY are unset): run tem-acq "
        "view on a desktop session or with X forwarding (ssh -X), or set "
        f"QT_QPA_PLATFORM=offscreen for a window nobody sees.\n{other_ways(path)}"
    )


def populate(viewer: Any, spec: ViewSpec) -> None:
    """Put ``spec``'s layers, axis labels, units, title and summary into a napari viewer.

    Works on a ``napari.Viewer`` and on a window-less ``napari.components.ViewerModel``.
    Needs napari 0.6 or newer (layers carry their own ``units`` and ``axis_labels``).
    """
    units = tuple(unit or "pixel" for unit in spec.axis_units)
    viewer.title = spec.title
    for layer in spec.layers:
        viewer.add_image(
            layer.data, units=units, axis_labels=spec.axis_labels, **layer.napari_kwargs()
        )
    viewer.dims.axis_labels = spec.axis_labels
    viewer.dims.current_step = (0,) * len(spec.axis_labels)
    grid, scale_bar, text = _canvas_parts(viewer)
    scale_bar.visible = units[-1] != "pixel"
    if spec.grid:
        grid.shape = (1, len(spec.layers))  # one row: side by side
    grid.enabled = spec.grid
    text.visible = True
    text.position = "top_left"
    text.text = spec.summary
    text.color = "yellow"
    text.font_size = 9
    viewer.reset_view()


def _canvas_parts(viewer: Any) -> tuple[Any, Any, Any]:
    """The grid, scale bar and text overlay: under ``viewer.canvas`` since napari 0.9."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if canvas is not None and overlays is not None and "text" in overlays:
        return canvas.grid, overlays["scale_bar"], overlays["text"]
    return viewer.grid, viewer.scale_bar, viewer.text_overlay


def show(spec: ViewSpec, *, block: bool = True, path: str | os.PathLike[str] = "STORE") -> Any:
    """Open a napari viewer showing ``spec``.

    Parameters
    ----------
    spec
        What to show (from :func:`build_view`).
    block
        Show the window and run napari's event loop until it closes (as ``tem-acq view``
        does); with ``False`` the viewer is created hidden and returned (scripts, tests).
    path
        The store's path, used in error messages.

    Returns
    -------
    napari.Viewer
        The viewer (already closed when ``block`` is True).

    Raises
    ------
    ViewerUnavailableError
        If napari is not installed or there is no display; the message says how to install it
        and lists other ways to browse the store.
    """
    napari = _import_napari(path)
    if block:
        _check_display(path)
    viewer = napari.Viewer(title=spec.title, show=block)
    populate(viewer, spec)
    if block:
        napari.run()
    return viewer
