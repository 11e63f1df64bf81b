"""A self-contained HTML report of an acquisition store.

``tem-acq report STORE`` (or :func:`write_report`) writes one HTML file with no external assets:
the acquisition's metadata as tables (dose in e-/px and e-/A^2, exposure, pixel size, voltage,
camera and its counts per electron, model name and hash, whether the store was closed cleanly,
recorded errors and warnings), per-frame plots (dose: the raw mean beside the detector-corrected
dose where recorded; denoise latency with skipped frames marked; frame interval), and raw next
to denoised for a few frames. Images are PNGs embedded as base64 data
URIs, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Raw frames are shown in electrons per pixel (counts divided by the camera's counts per
electron), the unit of the denoised frames, so both colour bars read in the same physical unit;
each panel's window comes from percentiles of its own pixels.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tem_acq.errors import StoreError, TemAcqError
from tem_acq.outputs import claim_output

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from tem_acq.store import (
        AcquisitionMetadata,
        AcquisitionStore,
        Camera,
        Instrument,
        SoftwareVersions,
    )

#: Percentiles of each frame's pixels that set its display window.
FRAME_PERCENTILES: tuple[float, float] = (0.5, 99.5)

#: Frames shown side by side by default: first, middle and last.
DEFAULT_FRAMES = 3

_DPI = 100


@dataclass(frozen=True)
class FramePick:
    """A frame chosen for the side-by-side panels and why."""

    index: int
    target: str


def default_report_path(store: str | os.PathLike[str]) -> Path:
    """Where ``tem-acq report`` writes by default: beside the store, ``NAME.report.html``.

    ``/data/run.ome.zarr`` gives ``/data/run.report.html``.
    """
    p = Path(store).resolve()
    name = p.name
    for suffix in (".zarr", ".ome"):
        name = name.removesuffix(suffix)
    return p.parent / f"{name or 'store'}.report.html"


def write_report(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    frames: int = DEFAULT_FRAMES,
) -> Path:
    """Write the HTML report of an acquisition store.

    Parameters
    ----------
    store
        Path of the acquisition store.
    out
        Output file; a directory gets ``NAME.report.html`` inside it. Default: beside the store
        (:func:`default_report_path`). An existing HTML file is replaced; any other file, and
        a path inside the store, is refused.
    frames
        How many frames to show raw next to denoised (spread from first to last; 0 for none).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    StoreError
        If ``store`` is not a readable acquisition store.
    TemAcqError
        If the report cannot be written where asked, or matplotlib is missing.
    """
    from tem_acq.store import open_store, store_kind

    source = Path(store)
    if store_kind(source) == "pairs":
        raise StoreError(
            f"{source} is a pairs store; tem-acq report covers acquisition stores. Browse pairs "
            f"with tem-acq info {source} or tem-acq view {source}"
        )
    opened = open_store(source)
    target = default_report_path(source) if out is None else Path(out)
    if target.is_dir():
        target = target / default_report_path(source).name
    if not target.parent.exists():
        raise TemAcqError(
            f"cannot write the report to {target}: folder {target.parent} does not exist; "
            "create it or pass another --out"
        )
    # an earlier report is replaced; anything else, or a path in or around the store, is not
    claim_output(target, overwrite=True, kind="report", inputs=[source])
    document = render_report(opened, frames=frames)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(document, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TemAcqError(
            f"cannot write the report to {target} ({exc.strerror or exc}); pass --out with a "
            "writable path"
        ) from None
    return target


def render_report(store: AcquisitionStore, *, frames: int = DEFAULT_FRAMES) -> str:
    """The report of an opened acquisition store as one HTML document (a string)."""
    _require_matplotlib()
    from tem_acq import __version__

    meta = store.metadata
    n = store.n_frames
    title = f"tem-acq report: {store.path.name}"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f"<h1>{_e(store.path.name)}</h1>",
        f'<p class="sub">Acquisition report of <code>{_e(str(store.path))}</code>, '
        f"generated {generated} by tem-acq {_e(__version__)}.</p>",
        _status_banner(store),
    ]
    if meta.description:
        parts.append(f'<p class="desc">{_e(meta.description)}</p>')
    parts.append("<h2>Metadata</h2>")
    parts.append('<div class="cards">')
    for section, rows in metadata_rows(store):
        parts.append(_table(section, rows))
    parts.append("</div>")
    parts.append("<h2>Errors</h2>")
    if store.errors:
        items = "".join(f"<li>{_e(message)}</li>" for message in store.errors)
        parts.append(f'<ul class="errors">{items}</ul>')
    else:
        parts.append('<p class="none">No errors recorded.</p>')
    if store.warnings:
        parts.append("<h2>Warnings</h2>")
        items = "".join(f"<li>{_e(message)}</li>" for message in store.warnings)
        parts.append(f'<ul class="warnings">{items}</ul>')
    parts.append("<h2>Per frame</h2>")
    if n == 0:
        parts.append('<p class="none">No frames were recorded.</p>')
    else:
        parts.append(
            _img(
                _figure_png(per_frame_figure(store)),
                "Per-frame dose, denoise latency and frame interval",
            )
        )
    parts += _quality_section(store)
    parts.append("<h2>Frames</h2>")
    parts += _frames_section(store, pick_frames(store, frames))
    parts.append("</body></html>")
    return "\n".join(parts)


def _frames_section(store: AcquisitionStore, picks: list[FramePick]) -> list[str]:
    """The HTML of the raw-next-to-denoised panels, with a note on their units and windows."""
    if not picks:
        return ['<p class="none">No frames to show.</p>']
    meta = store.metadata
    lo, hi = FRAME_PERCENTILES
    parts = [
        f'<p class="note">Values in electrons per pixel (raw counts / '
        f"{_num(meta.camera.counts_per_electron)} counts per e-). Each panel's window spans "
        f"the {lo:g}th to {hi:g}th percentile of its own pixels."
        + (
            " Frames are the denoised ones nearest to the first, middle and last frame."
            if store.denoised is not None and store.denoised_frames
            else ""
        )
        + "</p>"
    ]
    single = store.denoised is None and meta.model is None
    parts.append(f'<div class="frames{" single" if single else ""}">')
    for pick in picks:
        figure, caption = frame_figure(store, pick)
        parts.append(
            "<figure>"
            + _img(_figure_png(figure, grayscale=True), caption)
            + f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    parts.append("</div>")
    return parts


# -- metadata ---------------------------------------------------------------------------------


def metadata_rows(store: AcquisitionStore) -> list[tuple[str, list[tuple[str, str]]]]:
    """The metadata tables: (section title, [(name, value text)]) in reading order."""
    meta = store.metadata
    table = store.frame_table()
    info = store.info()
    return [
        ("Acquisition", _acquisition_rows(store, table)),
        ("Dose", _dose_rows(store, table)),
        ("Instrument", _instrument_rows(meta.instrument, store.frame_shape)),
        ("Camera", _camera_rows(meta.camera)),
        ("Denoising", _denoising_rows(store, info)),
        ("Software", _software_rows(meta.software, info)),
    ]


def _acquisition_rows(
    store: AcquisitionStore, table: dict[str, np.ndarray]
) -> list[tuple[str, str]]:
    """Frames, exposure, timing, when and how the store was recorded, whether it closed."""
    meta = store.metadata
    n = store.n_frames
    h, w = store.frame_shape
    seconds = _seconds_since_start(table)
    duration = float(seconds[-1]) if seconds.size > 1 else None
    return [
        ("frames", f"{n} x {h} x {w} px, {store.raw.dtype}"),
        ("exposure", f"{_num(meta.exposure_ms)} ms"),
        (
            "frame interval",
            "not recorded"
            if meta.frame_interval_ms is None
            else f"{_num(meta.frame_interval_ms)} ms",
        ),
        (
            "duration",
            "unknown"
            if duration is None
            else f"{duration:.3g} s ({_rate((n - 1) / duration)} frames/s)"
            if duration > 0
            else "0 s",
        ),
        ("created", meta.created.strftime("%Y-%m-%d %H:%M:%S %Z")),
        ("simulated", "yes" if meta.protocol.simulated else "no"),
        ("backend", meta.protocol.backend or "unknown"),
        ("complete", "yes" if store.complete else "NO (not closed cleanly)"),
        *_axes_rows(store),
    ]


def _axes_rows(store: AcquisitionStore) -> list[tuple[str, str]]:
    """The acquisition's axes (a multi-dimensional sequence) and its named positions."""
    places = store.places
    if not places.sizes:
        return []
    sizes = " x ".join(f"{name} {size}" for name, size in places.sizes.items())
    rows = [("axes", f"{sizes}; {places.placed} of {store.n_frames} frames placed")]
    names = sorted({row.position_name for row in store.frames if row.position_name})
    if names:
        rows.append(("positions", ", ".join(names)))
    return rows


def _dose_rows(store: AcquisitionStore, table: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """Nominal dose per frame (per pixel, per area, rate), measured dose and the total."""
    meta = store.metadata
    n = store.n_frames
    px2 = meta.instrument.pixel_size_A**2
    measured = table["dose_e_per_px"]
    measured = measured[np.isfinite(measured)]
    per_px_total = (
        float(measured.sum())
        if measured.size == len(table["index"]) and measured.size
        else (n * meta.dose_e_per_px if meta.dose_e_per_px is not None else None)
    )
    return [
        ("per frame", f"{_num(meta.dose_e_per_px)} e-/px"),
        ("per frame, per area", f"{_num(meta.dose_e_per_A2)} e-/\u00c5\u00b2"),
        ("dose rate", f"{_num(meta.dose_rate_e_per_px_per_s)} e-/px/s"),
        (
            "measured per frame",
            f"{_num(float(measured.mean()))} e-/px (mean; {_num(float(measured.min()))} to "
            f"{_num(float(measured.max()))})"
            if measured.size
            else "not recorded",
        ),
        *_dose_column_rows(table),
        (
            "total, all frames",
            "unknown"
            if per_px_total is None
            else f"{_num(per_px_total)} e-/px = {_num(per_px_total / px2)} e-/\u00c5\u00b2",
        ),
    ]


def _dose_column_rows(table: dict[str, np.ndarray]) -> list[tuple[str, str]]:
    """The per-frame raw mean and detector-corrected dose (schema 1.3), when recorded."""
    rows = []
    for name, label in (
        ("raw_mean_e_per_px", "raw mean per frame"),
        ("corrected_dose_e_per_px", "corrected dose per frame"),
    ):
        values = table[name][np.isfinite(table[name])]
        rows.append(
            (
                label,
                f"{_num(float(values.mean()))} e-/px (mean; {_num(float(values.min()))} to "
                f"{_num(float(values.max()))})"
                if values.size
                else "not recorded",
            )
        )
    return rows


def _instrument_rows(inst: Instrument, frame_shape: tuple[int, int]) -> list[tuple[str, str]]:
    """The microscope; pixel size and field of view also in nm, for reading."""
    h, w = frame_shape
    return [
        ("microscope", inst.name or "not recorded"),
        ("voltage", f"{_num(inst.voltage_kV)} kV"),
        ("pixel size", f"{_num(inst.pixel_size_A)} \u00c5 ({_num(inst.pixel_size_A / 10)} nm)"),
        (
            "field of view",
            f"{_num(w * inst.pixel_size_A / 10)} x {_num(h * inst.pixel_size_A / 10)} nm",
        ),
        (
            "magnification",
            "not recorded" if inst.magnification is None else f"{_num(inst.magnification)}x",
        ),
        ("defocus", "not recorded" if inst.defocus_nm is None else f"{_num(inst.defocus_nm)} nm"),
        ("tilt", "not recorded" if inst.tilt_deg is None else f"{_num(inst.tilt_deg)}\u00b0"),
    ]


def _camera_rows(cam: Camera) -> list[tuple[str, str]]:
    """The camera and how it was read out."""
    return [
        ("camera", cam.name),
        ("counts per electron", _num(cam.counts_per_electron)),
        ("detector", cam.detector_kind or "not recorded"),
        ("detector model", _detector_model_text(cam)),
        ("binning", str(cam.binning)),
        ("mode", cam.mode or "not recorded"),
        (
            "sensor",
            "not recorded"
            if cam.sensor_shape_px is None
            else f"{cam.sensor_shape_px[0]} x {cam.sensor_shape_px[1]} px",
        ),
    ]


def _detector_model_text(cam: Camera) -> str:
    """The detector model the camera states (its response in electrons), or that it states none."""
    model = cam.detector_model
    if model is None:
        return "not stated"
    if model.kind == "counting":
        return "counting (observed mean = dose)"
    return (
        f"integrating: gain CV {_num(model.gain_cv, 3)}, read noise {_num(model.read_noise_e, 3)} "
        f"e-, offset {_num(model.dark_offset_e, 3)} e-, light spread "
        f"{_num(model.spread_x, 3)}/{_num(model.spread_y, 3)}, "
        f"{'clipped at 0' if model.clip_at_zero else 'not clipped'}"
    )


def _denoising_rows(store: AcquisitionStore, info: dict[str, Any]) -> list[tuple[str, str]]:
    """The model and what it did: denoised and skipped frames, latency."""
    model = store.metadata.model
    if model is None:
        return [("model", "none (raw frames only)")]
    skipped = ", ".join(
        f"{reason or 'no reason'}: {count}"
        for reason, count in sorted(info["skipped_reasons"].items())
    )
    return [
        ("model", model.name),
        ("weights sha256", model.sha256),
        ("architecture", model.architecture or "not recorded"),
        (
            "normalization",
            ", ".join(f"{k}={v}" for k, v in model.normalization.items()) or "not recorded",
        ),
        ("device", " ".join(x for x in (model.device, model.precision) if x) or "unknown"),
        ("denoised frames", f"{store.denoised_frames} of {store.n_frames}"),
        ("skipped frames", f"{info['skipped']}" + (f" ({skipped})" if skipped else "")),
        (
            "latency",
            "none measured"
            if info["denoise_latency_p50_ms"] is None
            else f"p50 {_num(info['denoise_latency_p50_ms'], 3)} ms, "
            f"p95 {_num(info['denoise_latency_p95_ms'], 3)} ms",
        ),
    ]


def _software_rows(sw: SoftwareVersions, info: dict[str, Any]) -> list[tuple[str, str]]:
    """Versions of what wrote the store (those it loaded), and the store's size on disk."""
    software = [
        (name, value)
        for name, value in (
            ("tem-acq", sw.tem_acq),
            ("python", sw.python),
            ("numpy", sw.numpy),
            ("zarr", sw.zarr),
            ("torch", sw.torch),
            ("pycro-manager", sw.pycromanager),
            ("pymmcore", sw.pymmcore),
            ("pymmcore-plus", sw.pymmcore_plus),
            *sorted(sw.other.items()),
        )
        if value
    ]
    software.append(("store on disk", _bytes(info["bytes_on_disk"])))
    return software


# -- figures ----------------------------------------------------------------------------------


def pick_frames(store: AcquisitionStore, count: int = DEFAULT_FRAMES) -> list[FramePick]:
    """Frames to show: first, middle and last (``count`` spread evenly).

    When the store has denoised frames, each target moves to the nearest denoised frame, so the
    panels compare raw with denoised rather than showing empty denoised panels.
    """
    n = store.n_frames
    if n == 0 or count <= 0:
        return []
    targets = np.linspace(0, n - 1, num=min(count, n))
    names = _target_names(len(targets))
    done = np.array(sorted(i for i, row in _rows_by_index(store).items() if row.denoised))
    picks: list[FramePick] = []
    seen: set[int] = set()
    for target, name in zip(targets, names, strict=True):
        index = round(float(target))
        if done.size:
            index = int(done[np.argmin(np.abs(done - target))])
        if index not in seen:
            seen.add(index)
            picks.append(FramePick(index=index, target=name))
    return picks


def per_frame_figure(store: AcquisitionStore) -> Figure:
    """Dose, denoise latency (skipped frames marked) and frame interval against frame index."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    meta = store.metadata
    table = store.frame_table()
    index = table["index"]
    has_model = meta.model is not None or store.denoised is not None
    fig = Figure(figsize=(11, 7.6 if has_model else 5.2), dpi=_DPI, layout="constrained")
    axes = list(fig.subplots(3 if has_model else 2, 1, sharex=True))
    interval_ax = axes[-1]
    _dose_panel(axes[0], table, meta)
    if has_model:
        _latency_panel(axes[1], table)
    _interval_panel(interval_ax, table, meta.exposure_ms)
    interval_ax.set_xlabel("frame")
    interval_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if index.size:
        interval_ax.set_xlim(-0.5, max(float(index[-1]), 1.0) + 0.5)
    for ax in axes:
        ax.grid(True, color="0.9", lw=0.8)
        ax.set_axisbelow(True)
    return fig


#: The rows of a quality estimate the report plots, with their labels and colours.
_QUALITY_ROWS = (
    ("raw", "raw", "0.55"),
    ("gaussian", "best Gaussian", "C0"),
    ("model", "model", "C2"),
)


def _quality_section(store: AcquisitionStore) -> list[str]:
    """The live quality estimate over time (the store's ``quality`` rows); nothing without."""
    estimates = store.quality
    if not estimates:
        return []
    trusted = [e for _, e in estimates if e.get("trusted")]
    below = sum(1 for e in trusted if (_gain_ci(e) or (0.0, 0.0))[1] < 0)
    text = (
        f"{len(estimates)} live estimates of the denoising quality on pairs of consecutive raw "
        f"frames (no ground truth: the second frame's independent noise is the reference), "
        f"{len(estimates) - len(trusted)} not trusted; the model was below the best Gaussian "
        f"filter beyond the interval in {below} of {len(trusted)}."
    )
    return [
        "<h2>Live quality estimate</h2>",
        f"<p>{_e(text)}</p>",
        _img(
            _figure_png(quality_figure(store)),
            "Live quality estimate: PSNR of raw, best Gaussian and model over time",
        ),
    ]


def quality_figure(store: AcquisitionStore) -> Figure:
    """PSNR (with 95 % intervals) of raw, best Gaussian and model at each live estimate."""
    from matplotlib.figure import Figure

    seconds = _seconds_since_start(store.frame_table())
    times = {i: float(seconds[i]) if i < seconds.size else float(i) for i, _ in store.quality}
    fig = Figure(figsize=(11, 3.6), dpi=_DPI, layout="constrained")
    ax = fig.subplots()
    ax.set_title("Live quality estimate (ground-truth free)", loc="left", fontsize=11)
    for key, label, color in _QUALITY_ROWS:
        points = [(times[i], e[key]) for i, e in store.quality if _plottable(e, key)]
        if not points:
            continue
        x = np.array([t for t, _ in points])
        y = np.array([row["psnr_db"] for _, row in points], dtype=np.float64)
        ci = [row.get("ci") or (value, value) for (_, row), value in zip(points, y, strict=True)]
        err = np.abs(np.array(ci, dtype=np.float64).T - y)
        ax.errorbar(x, y, yerr=err, fmt="o-", color=color, ms=4, lw=1, capsize=2, label=label)
    untrusted = [times[i] for i, e in store.quality if not e.get("trusted")]
    if untrusted:
        from matplotlib.transforms import blended_transform_factory

        bottom = blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(untrusted, np.full(len(untrusted), 0.04), "|", color="C3", ms=12, mew=1.5,
                transform=bottom, label=f"not trusted ({len(untrusted)})")  # fmt: skip
    ax.set_xlabel("time since the first frame (s)")
    ax.set_ylabel("estimated PSNR (dB)")
    ax.grid(True, color="0.9", lw=0.8)
    _legend(ax)
    return fig


def _plottable(estimate: dict[str, Any], key: str) -> bool:
    row = estimate.get(key)
    return (
        bool(estimate.get("trusted")) and isinstance(row, dict) and row.get("psnr_db") is not None
    )


def _gain_ci(estimate: dict[str, Any]) -> tuple[float, float] | None:
    gain = (estimate.get("gain_over_gaussian_db") or {}).get("model")
    ci = gain.get("ci") if isinstance(gain, dict) else None
    if not isinstance(ci, list) or None in ci:
        return None
    return float(ci[0]), float(ci[1])


def _dose_panel(ax: Axes, table: dict[str, np.ndarray], meta: AcquisitionMetadata) -> None:
    """Measured dose of each frame against the nominal dose; e-/A^2 on the right axis."""
    px2 = meta.instrument.pixel_size_A**2
    dose = table["dose_e_per_px"]
    raw, corrected = table["raw_mean_e_per_px"], table["corrected_dose_e_per_px"]
    if np.isfinite(raw).any() or np.isfinite(corrected).any():  # schema 1.3: both doses
        _measured_line(ax, table["index"], raw, "C0", label="raw mean")
        _measured_line(ax, table["index"], corrected, "C2", label="corrected dose")
        dose = np.concatenate([raw, corrected])
    elif np.isfinite(dose).any():
        _measured_line(ax, table["index"], dose, "C0")
    if meta.dose_e_per_px is not None:
        _reference_line(ax, meta.dose_e_per_px, f"nominal {meta.dose_e_per_px:.3g}")
    ax.set_ylabel("dose (e-/px)")
    ax.set_title("Dose per frame", loc="left", fontsize=11)

    def per_area(values: Any) -> Any:
        return values / px2

    def per_pixel(values: Any) -> Any:
        return values * px2

    secondary = ax.secondary_yaxis("right", functions=(per_area, per_pixel))
    secondary.set_ylabel("e-/\u00c5\u00b2")
    _legend(ax)
    _pad_limits(ax, dose, meta.dose_e_per_px)


def _interval_panel(ax: Axes, table: dict[str, np.ndarray], exposure_ms: float) -> None:
    """Time between consecutive frames against the exposure (a note when not recorded)."""
    seconds = _seconds_since_start(table)
    ax.set_title("Interval between frames", loc="left", fontsize=11)
    ax.set_ylabel("interval (ms)")
    if seconds.size > 1 and np.isfinite(seconds).all():
        gaps = np.diff(seconds) * 1000.0
        _measured_line(ax, table["index"][1:], gaps, "C1")
        _reference_line(ax, exposure_ms, f"exposure {exposure_ms:.3g} ms")
        _legend(ax)
        ax.set_ylim(bottom=0)
    else:
        ax.text(
            0.5,
            0.5,
            "timestamps not recorded",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="0.4",
        )


def _measured_line(
    ax: Axes, index: np.ndarray, values: np.ndarray, color: str, *, label: str = "measured"
) -> None:
    """A measured per-frame series: small dots joined by a thin line."""
    ax.plot(index, values, ".-", color=color, lw=1, ms=3, label=label)


def _reference_line(ax: Axes, value: float, label: str) -> None:
    """The value a series is expected at (nominal dose, exposure): a grey dashed line."""
    ax.axhline(value, color="0.4", ls="--", lw=1, label=label)


def _latency_panel(ax: Axes, table: dict[str, np.ndarray]) -> None:
    """Denoise latency of each denoised frame; skipped frames as red ticks at the bottom."""
    from matplotlib.transforms import blended_transform_factory

    index = table["index"]
    ax.set_title("Denoise latency (hand-over to stored result)", loc="left", fontsize=11)
    ax.set_ylabel("latency (ms)")
    latency = table["denoise_latency_ms"]
    measured = np.isfinite(latency)
    done = table["denoised"] | measured
    if measured.any():
        ax.plot(
            index[measured],
            latency[measured],
            "o",
            color="C2",
            ms=4,
            label=f"denoised ({int(done.sum())})",
        )
    skipped = np.array([value is not None for value in table["skipped"]], dtype=bool)
    lost = ~done & ~skipped
    # frames without a latency: ticks along the bottom of the axes
    bottom = blended_transform_factory(ax.transData, ax.transAxes)
    for which, color, label in (
        (skipped, "C3", "skipped"),
        (lost, "0.6", "not denoised, no reason recorded"),
    ):
        if which.any():
            ax.plot(
                index[which],
                np.full(int(which.sum()), 0.04),
                "|",
                color=color,
                ms=12,
                mew=1.5,
                transform=bottom,
                label=f"{label} ({int(which.sum())})",
            )
    if measured.any():
        ax.set_ylim(0, float(np.nanmax(latency)) * 1.15)
    else:
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no frame was denoised", transform=ax.transAxes, ha="center", color="0.4")
    _legend(ax)


def frame_figure(store: AcquisitionStore, pick: FramePick) -> tuple[Figure, str]:
    """Raw (in e-/px) next to denoised for one frame; returns the figure and its caption."""
    from matplotlib.figure import Figure

    meta = store.metadata
    cpe = meta.camera.counts_per_electron
    row = _rows_by_index(store).get(pick.index)
    raw = np.asarray(store.raw[pick.index], dtype=np.float32) / np.float32(cpe)
    denoised = None
    if store.denoised is not None and pick.index < store.denoised.shape[0]:
        candidate = np.asarray(store.denoised[pick.index], dtype=np.float32)
        if np.isfinite(candidate).any():
            denoised = candidate
    with_panel = store.denoised is not None or meta.model is not None
    h, w = raw.shape
    panel_w = 5.2 if with_panel else 3.4  # a lone raw panel shares its row with others
    columns = 2 if with_panel else 1
    image_w = panel_w - 0.9  # what is left beside the colour bar and its labels
    fig = Figure(figsize=(panel_w * columns, image_w * h / w + 0.45), dpi=_DPI)
    axes = fig.subplots(1, columns, squeeze=False)[0]
    # the figure is cropped to its content when saved: generous, uniform margins
    fig.subplots_adjust(left=0.01, right=0.99 - 0.9 / panel_w / columns, bottom=0.01, top=0.9)
    fig.subplots_adjust(wspace=0.9 / image_w + 0.05)
    when = ""
    seconds = _seconds_since_start(store.frame_table())
    if pick.index < seconds.size and np.isfinite(seconds[pick.index]):
        when = f", t = {seconds[pick.index] * 1000:.4g} ms"
    _image_panel(axes[0], raw, f"raw, frame {pick.index}{when}", meta.instrument.pixel_size_A)
    caption = f"Frame {pick.index} ({pick.target}): raw mean {float(raw.mean()):.3g} e-/px"
    if with_panel:
        if denoised is not None:
            latency = (
                ""
                if row is None or row.denoise_latency_ms is None
                else (f", {row.denoise_latency_ms:.3g} ms")
            )
            model = "" if meta.model is None else f" ({meta.model.name}{latency})"
            _image_panel(axes[1], denoised, f"denoised{model}", meta.instrument.pixel_size_A)
            caption += f"; denoised mean {float(np.nanmean(denoised)):.3g} e-/px"
        else:
            reason = (
                "not denoised" if row is None or not row.skipped else (f"skipped: {row.skipped}")
            )
            _empty_panel(axes[1], (h, w), reason)
            caption += f"; {reason}"
    caption += "."
    return fig, caption


def _image_panel(ax: Axes, image: np.ndarray, title: str, pixel_size_A: float) -> None:
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    finite = image[np.isfinite(image)]
    lo, hi = (float(v) for v in np.percentile(finite, FRAME_PERCENTILES)) if finite.size else (0, 1)
    if not hi > lo:
        hi = lo + 1.0
    shown = ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_title(title, fontsize=11)
    ax.set_xticks([])
    ax.set_yticks([])
    # a colour bar exactly as tall as the image, whatever the frame's aspect ratio
    bar_ax = make_axes_locatable(ax).append_axes("right", size="4%", pad=0.08)
    colorbar = ax.figure.colorbar(shown, cax=bar_ax)
    colorbar.set_label("e-/px")
    _scale_bar(ax, image.shape[1], pixel_size_A)


def _empty_panel(ax: Axes, shape: tuple[int, int], message: str) -> None:
    """A grey frame-sized panel with a message, the same size as an image panel."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    ax.imshow(np.full(shape, 0.93), cmap="gray", vmin=0, vmax=1)
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])
    make_axes_locatable(ax).append_axes("right", size="4%", pad=0.08).set_axis_off()


def _scale_bar(ax: Axes, width_px: int, pixel_size_A: float) -> None:
    """A white bar of a round length (about a fifth of the width) with its label."""
    from matplotlib.font_manager import FontProperties
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    target_nm = width_px * pixel_size_A / 10 / 5
    magnitude = 10 ** math.floor(math.log10(target_nm))
    length_nm = max(m * magnitude for m in (1, 2, 5) if m * magnitude <= target_nm)
    label = f"{length_nm / 1000:g} \u00b5m" if length_nm >= 1000 else f"{length_nm:g} nm"
    if length_nm < 1:
        label = f"{length_nm * 10:g} \u00c5"
    bar = AnchoredSizeBar(
        ax.transData,
        length_nm * 10 / pixel_size_A,
        label,
        "lower left",
        pad=0.4,
        color="white",
        frameon=True,
        size_vertical=max(1.0, width_px / 120),
        fontproperties=FontProperties(size=10),
    )
    bar.patch.set_facecolor("black")
    bar.patch.set_alpha(0.55)
    bar.patch.set_edgecolor("none")
    ax.add_artist(bar)


# -- helpers ----------------------------------------------------------------------------------


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise TemAcqError(
            "tem-acq report draws its plots with matplotlib, which is not installed: "
            "pip install matplotlib"
        ) from None


def _rows_by_index(store: AcquisitionStore) -> dict[int, Any]:
    return {row.index: row for row in store.frames}


def _seconds_since_start(table: dict[str, np.ndarray]) -> np.ndarray:
    """Seconds from the first frame, from the timestamps (else the engine's elapsed_ms)."""
    stamps = table["timestamp"]
    if stamps.size and not np.isnat(stamps).any():
        seconds = (stamps - stamps[0]).astype("timedelta64[us]").astype(np.float64) / 1e6
        if stamps.size == 1 or np.ptp(seconds) > 0:
            return seconds
    elapsed = table["elapsed_ms"]
    if elapsed.size and np.isfinite(elapsed).all() and np.ptp(elapsed) > 0:
        return (elapsed - elapsed[0]) / 1000.0
    return np.full(stamps.size, np.nan)


def _target_names(count: int) -> list[str]:
    if count == 1:
        return ["first"]
    if count == 3:
        return ["first", "middle", "last"]
    return ["first"] + [f"{i} of {count}" for i in range(2, count)] + ["last"]


def _pad_limits(ax: Axes, values: np.ndarray, nominal: float | None) -> None:
    """Keep a near-constant series from filling the axis with noise-level ticks."""
    finite = values[np.isfinite(values)].tolist() + ([nominal] if nominal is not None else [])
    if not finite:
        return
    lo, hi = min(finite), max(finite)
    pad = max((hi - lo) * 0.15, abs(hi) * 0.05, 1e-9)
    ax.set_ylim(max(0.0, lo - pad) if lo >= 0 else lo - pad, hi + pad)


def _legend(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        # on the title's line, right-aligned: never over the data
        ax.legend(
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncol=3,
            fontsize=9,
            frameon=False,
            borderaxespad=0.1,
            handlelength=1.5,
        )


def _figure_png(fig: Figure, *, grayscale: bool = False) -> bytes:
    """PNG bytes of a figure cropped to its content; grey figures are stored as one channel."""
    from PIL import Image

    drawn = io.BytesIO()
    fig.savefig(drawn, format="png", dpi=_DPI, bbox_inches="tight", pad_inches=0.06)
    image = Image.open(io.BytesIO(drawn.getvalue())).convert("RGB")
    if grayscale:
        rgb = np.asarray(image)
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
            image = image.convert("L")  # frames in grey: a third of the bytes, nothing lost
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}">'


def _table(title: str, rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{_e(name)}</th><td>{_e(value)}</td></tr>" for name, value in rows)
    return f"<table><caption>{_e(title)}</caption><tbody>{body}</tbody></table>"


def _status_banner(store: AcquisitionStore) -> str:
    if store.complete and not store.errors:
        return '<p class="status ok">Complete: the writer closed the store cleanly.</p>'
    problems = []
    if not store.complete:
        problems.append(
            "INCOMPLETE: the writer did not close the store (it crashed or is still writing); "
            "every committed frame reads"
        )
    if store.errors:
        problems.append(f"{len(store.errors)} error(s) recorded, listed below")
    return f'<p class="status bad">{_e("; ".join(problems))}.</p>'


def _rate(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _bytes(count: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def _num(value: float | None, digits: int = 4) -> str:
    from tem_acq.viewer import format_number

    return format_number(value, digits, missing="unknown")


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_CSS = """
body { font-family: "DejaVu Sans", "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
  max-width: 1160px; margin: 24px auto; padding: 0 16px; line-height: 1.4; }
h1 { font-size: 24px; margin: 0 0 4px; word-break: break-all; }
h2 { font-size: 18px; margin: 28px 0 10px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.sub { color: #666; margin: 0 0 12px; font-size: 13px; word-break: break-all; }
p.desc { font-style: italic; }
p.note, p.none { color: #555; font-size: 13px; }
p.status { padding: 8px 12px; border-radius: 4px; font-weight: bold; }
p.status.ok { background: #e6f4ea; color: #1e6b34; }
p.status.bad { background: #fdecea; color: #a12622; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr));
  gap: 14px 22px; align-items: start; }
table { border-collapse: collapse; font-size: 13px; width: 100%; }
caption { text-align: left; font-weight: bold; padding: 4px 0; font-size: 14px; }
th, td { text-align: left; vertical-align: top; padding: 3px 8px; border-bottom: 1px solid #eee; }
th { color: #555; font-weight: normal; white-space: nowrap; width: 40%; }
td { word-break: break-word; font-variant-numeric: tabular-nums; }
ul.errors { color: #a12622; font-size: 13px; }
ul.warnings { color: #8a5a00; font-size: 13px; }
code { font-size: 12px; }
img { max-width: 100%; height: auto; display: block; }
figure { margin: 0 0 22px; }
.frames.single { display: flex; flex-wrap: wrap; gap: 0 18px; }
.frames.single figure { flex: 0 1 auto; max-width: 100%; }
figcaption { color: #444; font-size: 13px; margin-top: 4px; }
"""
