"""Reports as text: readable tables (plain or Markdown) and the model card's quality rows."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tem_acq.errors import TemAcqError

if TYPE_CHECKING:
    from tem_acq.denoise import QualityRow
    from tem_acq.evaluate.loop import EvalReport

#: What each specimen kind is called in quality tables.
IMAGE_KINDS = {
    "nanoparticles": "low magnification",
    "atomic": "atomic resolution, uncorrected",
}


def render_table(report: EvalReport, *, markdown: bool = False) -> str:
    """A readable table of a report (plain text, or Markdown)."""

    def f(v: float | None, metric: str) -> str:
        if v is None or not math.isfinite(v):
            return "-"
        three = metric.startswith("ssim") or metric == "vacuum_structure_ratio"
        return f"{v:.3f}" if three else f"{v:.2f}"

    title = (
        f"model {report.model} ({report.package_hash.removeprefix('sha256:')[:12]}) on "
        f"{report.specimen or 'mixed'}/{report.detector or 'mixed'} pairs: {report.n_pairs} "
        f"frames {report.frame_shape[0]}x{report.frame_shape[1]}, reference {report.reference}, "
        f"{report.ms_per_frame:.1f} ms/frame ({report.device})"
    )
    wiener = any(r.wiener is not None for r in report.rows)
    head = ["dose e-/px", "metric", "raw", "gaussian"]
    head += ["oracle Wiener"] if wiener else []
    head += ["model", "long exposure"]
    body = [
        [f"{r.dose:g}", r.metric, f(r.raw, r.metric), f(r.gaussian, r.metric)]
        + ([f(r.wiener, r.metric)] if wiener else [])
        + [f(r.model, r.metric), f(r.long, r.metric)]
        for r in report.rows
    ]
    checks = [
        f"{'PASS' if c.passed else 'FAIL'}  {c.name}: {c.value:.3f} (target {c.target})"
        for c in report.checks
    ]
    estimates = [e.line() for e in report.estimates]
    if markdown:
        lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        lines += [""] + [f"- {c}" for c in checks] + [f"- {e}" for e in estimates]
        lines += [f"- note: {n}" for n in report.notes]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [title, fmt.format(*head)] + [fmt.format(*row) for row in body]
    lines += checks + estimates + [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def quality_rows(report: EvalReport) -> list[QualityRow]:
    """Model-card quality rows from a report (image kind from the specimen)."""
    from tem_acq.denoise import QualityRow

    if not report.detector:
        raise TemAcqError("a quality table needs pairs of one detector kind; evaluate them apart")
    kind = IMAGE_KINDS.get(report.specimen, report.specimen or "mixed")
    suffix = "" if report.reference == "truth" else " (vs long exposure)"
    rows = []
    for r in report.rows:
        if r.model is None or r.metric == "gaussian_sigma_px":
            continue
        rows.append(
            QualityRow(
                image_kind=kind + suffix,
                detector=report.detector,  # type: ignore[arg-type]
                dose_e_per_px=r.dose,
                metric=r.metric,
                value=round(r.model, 4),
                raw=None if r.raw is None else round(r.raw, 4),
                gaussian=None if r.gaussian is None else round(r.gaussian, 4),
                wiener=None if r.wiener is None else round(r.wiener, 4),
            )
        )
        if r.long is not None and r.metric in (
            "psnr_db",
            "ssim",
            "psnr_edge_db",
            "psnr_particles_db",
            "ssim_particles",
        ):
            rows.append(
                QualityRow(
                    image_kind=kind + suffix,
                    detector=report.detector,  # type: ignore[arg-type]
                    dose_e_per_px=r.dose,
                    metric=f"{r.metric}_long_exposure",
                    value=round(r.long, 4),
                )
            )
    return rows
