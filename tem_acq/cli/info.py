"""``tem-acq info STORE``: summarise an acquisition store (readable text or ``--json``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tem_acq.cli.command import JSON, STORE, Command


def arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``info`` arguments."""
    STORE.add(parser)
    JSON.add(parser, help="print JSON instead of text")
    parser.add_argument(
        "--check",
        action="store_true",
        help="verify every committed frame against the log and its checksum and name each "
        "damaged frame; exit 1: recorded data damaged, 3: only derived data or metadata "
        "(tem-acq recover fixes metadata), 0: all verified",
    )


def run(args: argparse.Namespace) -> int:
    """Print the summary; a bad path raises StoreError (the CLI prints it and exits 2)."""
    from tem_acq.store import open_pairs, open_store, store_kind

    if args.check:
        from tem_acq.store.check import check_store

        report = check_store(args.store)
        print(json.dumps(report.as_dict(), indent=2) if args.json else "\n".join(report.lines()))
        return report.exit_code
    if store_kind(args.store) == "pairs":
        info = open_pairs(args.store).info()
        text = format_pairs_info
    else:
        info = open_store(args.store).info()
        text = format_info
    print(json.dumps(info, indent=2) if args.json else text(info))
    return 0


def format_pairs_info(info: dict[str, Any]) -> str:
    """Render :meth:`PairsStore.info` as aligned text lines."""
    shift = (
        "none"
        if info["shift_px_median"] is None
        else f"median {info['shift_px_median']:.2f} px, max {info['shift_px_max']:.2f} px"
    )
    flags = ", ".join(f"{k}: {v}" for k, v in info["flags"].items()) or "none"
    lines = [
        ("store", info["path"]),
        ("kind", f"pairs (schema {info['schema_version']}), created {info['created']}"),
        ("status", _pairs_status(info)),
        ("pairs", f"{info['pairs']} from {info['fields']} fields, {info['n_short']} per field"),
        ("frames", " x ".join(str(n) for n in info["shape"]) + f" {info['dtype']}"),
        ("camera", f"{info['camera']}, {info['counts_per_electron']:.4g} counts/e-"),
        ("detector", _detector(info)),
        (
            "exposures",
            f"{info['exposure_ms']:g} ms short, {info['long_exposure_ms']:g} ms long "
            f"({info['long_mode']})",
        ),
        (
            "dose",
            f"{info['measured_dose_e_per_px'] or 0:.3g} e-/px short, "
            f"{info['measured_long_dose_e_per_px'] or 0:.4g} e-/px long (measured)",
        ),
        ("pixel size", f"{info['pixel_size_A']:.4g} A"),
        ("registration", shift),
        ("flagged", flags),
        ("ground truth", "yes (simulated)" if info["truth"] else "no"),
        ("errors", str(len(info["errors"])) if info["errors"] else "none"),
    ]
    width_key = max(len(key) for key, _ in lines)
    return "\n".join(f"{key:<{width_key}}  {value}" for key, value in lines)


def _pairs_status(info: dict[str, Any]) -> str:
    if info["complete"]:
        return "complete"
    if info.get("aborted"):
        return "ABORTED (stopped early; resume with --resume)"
    return "INCOMPLETE (resume with --resume)"


def format_info(info: dict[str, Any]) -> str:
    """Render :meth:`AcquisitionStore.info` as aligned text lines."""

    def number(value: float | None, unit: str = "", digits: int = 4) -> str:
        return "unknown" if value is None else f"{value:.{digits}g}{unit}"

    frames, height, width = info["shape"]
    status = "complete" if info["complete"] else "INCOMPLETE (not closed cleanly; frames read)"
    if info.get("aborted"):
        status = "ABORTED (stopped early; every frame recorded until then is complete)"
    model = info["model"]
    lines = [
        ("store", info["path"]),
        ("kind", f"{info['kind']} (schema {info['schema_version']}), created {info['created']}"),
        ("status", status),
        ("frames", f"{frames} x {height} x {width} {info['dtype']}"),
        ("axes", _axes(info)),
        ("camera", f"{info['camera']}, {number(info['counts_per_electron'])} counts/e-"),
        ("detector", _detector(info)),
        ("voltage", number(info["voltage_kV"], " kV")),
        ("pixel size", number(info["pixel_size_A"], " A")),
        ("exposure", number(info["exposure_ms"], " ms")),
        (
            "dose/frame",
            f"{number(info['dose_e_per_px'])} e-/px, {number(info['dose_e_per_A2'])} e-/A^2",
        ),
        ("raw mean", _per_frame(info, "raw_mean_e_per_px", "observed, counts / counts per e-")),
        ("corrected", "dose " + _per_frame(info, "corrected_dose_e_per_px", "detector-corrected")),
        ("denoised", f"{info['denoised_frames']} of {frames} frames"),
        ("skipped", _skipped(info)),
        (
            "latency",
            "none measured"
            if info["denoise_latency_p50_ms"] is None
            else f"p50 {number(info['denoise_latency_p50_ms'], ' ms', 3)}, "
            f"p95 {number(info['denoise_latency_p95_ms'], ' ms', 3)}",
        ),
        ("model", "none" if model is None else f"{model['name']} (sha256 {model['sha256'][:12]})"),
        ("simulated", "yes" if info["simulated"] else "no"),
        ("on disk", f"{info['bytes_on_disk'] / 1e6:.1f} MB"),
        ("errors", str(len(info["errors"])) if info["errors"] else "none"),
    ]
    warnings = info.get("warnings") or []
    if warnings:
        lines.append(("warnings", str(len(warnings))))
    width_key = max(len(key) for key, _ in lines)
    text = [f"{key:<{width_key}}  {value}" for key, value in lines]
    text += [f"  - {message}" for message in info["errors"]]
    text += [f"  - warning: {message}" for message in warnings]
    return "\n".join(text)


def _axes(info: dict[str, Any]) -> str:
    """The acquisition's axes and sizes (``t 10 x p 4``), and the stage positions' names."""
    axes = info.get("axes")
    if not axes:
        return "t (a plain series in acquisition order)"
    text = " x ".join(f"{name} {size}" for name, size in axes.items())
    source = info.get("axes_source")
    text += f" (from {source})" if source else " (from the frames' rows)"
    if info.get("frames_unplaced"):
        text += f"; {info['frames_unplaced']} frame(s) without a place"
    if info.get("positions"):
        text += f"; positions {', '.join(info['positions'])}"
    return text


def _detector(info: dict[str, Any]) -> str:
    """The detector kind, the camera's binning and whether its model is stated."""
    kind = info.get("detector_kind") or "unknown kind"
    model = info.get("detector_model")
    stated = "model stated" if model is not None else "no model stated"
    if model is not None and model.get("kind") == "integrating":
        stated += (
            f": read noise {model['read_noise_e']:.3g} e-, offset {model['dark_offset_e']:.3g} "
            f"e-, gain CV {model['gain_cv']:.3g}"
        )
    return f"{kind}, binning {info.get('binning', 1)}, {stated}"


def _per_frame(info: dict[str, Any], name: str, what: str) -> str:
    """A per-frame dose column's mean and range over the frames, or why it is unknown."""
    mean = info.get(name)
    if mean is None:
        return "unknown (not recorded)"
    return (
        f"{mean:.4g} e-/px mean ({info[name + '_min']:.4g}-{info[name + '_max']:.4g} over "
        f"frames; {what})"
    )


def _skipped(info: dict[str, Any]) -> str:
    if not info["skipped"]:
        return "0"
    reasons = ", ".join(
        f"{reason or 'no reason'}: {n}" for reason, n in sorted(info["skipped_reasons"].items())
    )
    return f"{info['skipped']} ({reasons})"


COMMAND = Command(
    "info",
    help="summarise an acquisition or pairs store",
    description=(
        "Summarise an acquisition store: frames, geometry, exposure and dose, denoised and "
        "skipped frames, denoise latency, model, errors, and whether it was closed cleanly."
    ),
    arguments=arguments,
    run=run,
    rank=10,
)
