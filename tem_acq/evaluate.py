"""Evaluate a denoiser on pairs: per dose, raw vs oracle Gaussian vs model (vs long exposure).

The protocol is ``shared/notes/quality.md``'s; the metric definitions are in
:mod:`tem_acq.metrics`. Per frame, every image is converted to electrons per pixel and divided
by the short frame's dose (dose-normalised, vacuum = 1):

- ``raw``: the short frame; ``gaussian``: the oracle Gaussian of the raw frame (sigma picked
  against the reference); ``wiener`` (simulated pairs only): the oracle Wiener filter
  (:func:`tem_acq.metrics.oracle_wiener`, which knows the clean image's power spectrum: an
  upper bound for any linear filter, and close to the bound of any estimator on amorphous
  texture); ``model``: the denoiser's output; ``long``: the long exposure registered onto the
  short frame (its shift, Fourier) and divided by its own dose.
- The **reference** is the simulator's noise-free image (``truth``) when the pairs have it,
  else the long exposure. With truth, PSNR against the long exposure is reported too.
- The registration border (``ceil(|shift|) + 1`` px) is left out of every metric.

Numbers are averaged over the frames of one dose (PSNR in dB). :func:`evaluate_frame_pair`
checks two real frames of one field (no ground truth).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tem_acq import metrics as M
from tem_acq.denoise.normalization import counts_to_electrons
from tem_acq.errors import TemAcqError
from tem_acq.pairs import PairArrays
from tem_acq.registration import align_to_low, border_for

if TYPE_CHECKING:
    from tem_acq.denoise import Denoiser, QualityRow

#: What each specimen kind is called in quality tables.
IMAGE_KINDS = {
    "nanoparticles": "low magnification",
    "atomic": "atomic resolution, uncorrected",
}
#: Tolerances of the generic checks.
MEAN_SHIFT_PASS_PCT = 1.0
FLIP_PASS_DB = 0.1
#: Fewest mask pixels for a masked metric (particles) to be reported for a frame.
MIN_MASK_PX = 400
#: The dose at which the quality targets are checked (e-/px).
TARGET_DOSE = 5.0


@dataclass
class MetricRow:
    """One metric at one dose: the model with its baselines.

    Attributes
    ----------
    dose
        Short-frame dose (e-/px).
    metric
        Metric name (see :data:`METRIC_HELP`).
    model, raw, gaussian, long
        Values for the model, the raw frame, the oracle Gaussian and the long exposure
        (``None`` where it does not apply).
    n
        Frames averaged.
    wiener
        The oracle Wiener filter's value (PSNR and SSIM against ground truth only).
    """

    dose: float
    metric: str
    model: float | None
    raw: float | None = None
    gaussian: float | None = None
    long: float | None = None
    n: int = 0
    wiener: float | None = None


#: Metric names and what they mean.
METRIC_HELP = {
    "psnr_db": "PSNR vs the reference (dB)",
    "ssim": "SSIM vs the reference",
    "psnr_edge_db": "PSNR in the edge mask of the reference (dB)",
    "psnr_vs_long_db": "PSNR vs the 1000 e-/px long exposure (dB)",
    "psnr_particles_db": "PSNR inside the particles/nanocrystals (simulated pairs; dB)",
    "ssim_particles": "SSIM inside the particles/nanocrystals (simulated pairs)",
    "mean_shift_pct": "change of the mean electrons by the filter (%)",
    "mean_error_pct": "mean vs the reference's mean (%)",
    "vacuum_structure_ratio": "low-pass residual in vacuum vs raw (<= 1.2: flat)",
    "vacuum_max_z": "largest local low-pass residual in vacuum, in noise rms (<= 5)",
    "flip_max_db": "max PSNR change over the 8 flips/rotations (dB)",
    "gaussian_sigma_px": "the oracle Gaussian's sigma (px)",
}


@dataclass
class Check:
    """A pass/fail target.

    Attributes
    ----------
    name
        What is checked.
    value
        The measured value.
    target
        The target, as text.
    passed
        Whether it is met.
    """

    name: str
    value: float
    target: str
    passed: bool


@dataclass
class EvalReport:
    """Evaluation of one model on one set of pairs.

    Attributes
    ----------
    model
        Package name.
    package_hash
        The package's ``sha256:`` hash.
    reference
        ``"truth"`` or ``"long"``.
    specimen, detector
        Specimen kind and detector of the pairs (``""`` when unknown or mixed).
    frame_shape
        ``(y, x)`` of the frames.
    n_pairs
        Pairs evaluated.
    ms_per_frame
        Median milliseconds to denoise one frame on ``device``.
    device
        Where the model ran (device and execution path).
    rows
        The metrics per dose.
    checks
        Pass/fail targets (quality targets at 5 e-/px and the generic checks).
    notes
        Warnings (e.g. doses outside the model's training range).
    """

    model: str
    package_hash: str
    reference: str
    specimen: str
    detector: str
    frame_shape: tuple[int, int]
    n_pairs: int
    ms_per_frame: float
    device: str
    rows: list[MetricRow] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN and inf become ``None``)."""
        return _clean(asdict(self))

    def get(self, dose: float, metric: str) -> MetricRow | None:
        """The row of ``metric`` at ``dose`` (nearest dose within 1 %), or ``None``."""
        for r in self.rows:
            if r.metric == metric and abs(r.dose - dose) <= 0.01 * dose:
                return r
        return None


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def _load(model: Any, device: str) -> Denoiser:
    from tem_acq.denoise import Denoiser, load_model

    if isinstance(model, Denoiser):
        return model
    return load_model(model, device)


def vacuum_from_truth(truth: np.ndarray) -> np.ndarray:
    """Vacuum mask of a noise-free frame (pairs stores hold truth but no mask).

    Vacuum is flat (7x7 standard deviation below 0.5 % of the level) and the brightest flat
    region (support film and specimen absorb): pixels within 1 % of the 99th percentile of the
    flat pixels' local means. A frame with no flat region gets an empty mask; on a frame
    without vacuum the brightest flat film is taken instead, which must stay flat all the same.
    """
    t = np.asarray(truth, dtype=np.float64)
    k = np.ones(7) / 7.0
    mean = M._convolve_axis(M._convolve_axis(t, k, 0), k, 1)
    sq = M._convolve_axis(M._convolve_axis(t * t, k, 0), k, 1)
    std = np.sqrt(np.maximum(sq - mean**2, 0.0))
    scale = max(float(np.abs(t).max()), 1e-12)
    flat = std < 0.005 * np.maximum(np.abs(mean), 1e-3 * scale)
    if flat.sum() < 64:
        return np.zeros(t.shape, dtype=bool)
    level = float(np.percentile(mean[flat], 99))
    return flat & (np.abs(t - level) < 0.01 * abs(level))


def _denoise_fn(den: Denoiser, cpe: float) -> Any:
    def run(counts: np.ndarray) -> np.ndarray:
        return np.asarray(den.denoise(counts, counts_per_electron=cpe), dtype=np.float64)

    return run


def _time_ms(den: Denoiser, frame: np.ndarray, cpe: float, repeats: int = 5) -> float:
    den.warmup(frame.shape)
    den.denoise(frame, counts_per_electron=cpe)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        den.denoise(frame, counts_per_electron=cpe)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def dose_groups(doses: np.ndarray, tolerance: float = 0.15) -> np.ndarray:
    """Label each frame's dose with its group's dose (3 significant digits).

    Measured doses scatter around the nominal one (shot noise, gun drift), so doses within
    ``tolerance`` (relative) of a group's smallest dose form one group, labelled by the
    group's geometric mean.
    """
    d = np.asarray(doses, dtype=np.float64)
    labels = np.empty_like(d)
    order = np.argsort(d)
    start = 0
    while start < len(order):
        stop = start
        while stop < len(order) and d[order[stop]] <= d[order[start]] * (1 + tolerance):
            stop += 1
        members = order[start:stop]
        labels[members] = float(f"{np.exp(np.log(d[members]).mean()):.3g}")
        start = stop
    return labels


def evaluate_pairs(
    model: Any,
    pairs: PairArrays,
    *,
    device: str = "auto",
    reference: str = "auto",
    flips_at_dose: float | None = TARGET_DOSE,
    max_flip_frames: int = 4,
    timing_repeats: int = 5,
) -> EvalReport:
    """Evaluate a model on pairs (see the module docstring).

    Parameters
    ----------
    model
        A package name or folder, or a loaded :class:`~tem_acq.denoise.Denoiser`.
    pairs
        Pairs with long exposures (and ``truth`` for simulated pairs). Frames are grouped by
        dose with :func:`dose_groups`.
    device
        Device for the model.
    reference
        ``"auto"`` (truth when present, else the long exposure), ``"truth"`` or ``"long"``.
    flips_at_dose
        Measure flip/rotation consistency on the frames of this dose (nearest available);
        ``None`` to skip (it costs 8 denoisings per frame).
    max_flip_frames
        At most this many frames for the flip/rotation check.
    timing_repeats
        Timed denoisings for ``ms_per_frame`` (the median is reported).

    Returns
    -------
    The report.

    Raises
    ------
    TemAcqError
        No long exposures, truth asked for but absent, frames too small for the model, an
        unknown reference.
    """
    if reference not in ("auto", "truth", "long"):
        raise TemAcqError(f"unknown reference {reference!r}; use auto, truth or long")
    if pairs.high is None:
        raise TemAcqError(
            "these pairs have no long exposures to compare with; evaluate on pairs recorded "
            "with a long exposure per field"
        )
    if reference == "truth" and pairs.truth is None:
        raise TemAcqError(
            "reference 'truth' asked for but the pairs hold no ground truth (only simulated "
            "pairs do); use --reference long"
        )
    use_truth = pairs.truth is not None and reference != "long"
    den = _load(model, device)
    h, w = pairs.shape
    if min(h, w) < den.multiple:
        raise TemAcqError(
            f"frames of {h}x{w} px are smaller than model {den.card.name!r} can take "
            f"({den.multiple} px at least); evaluate on larger frames"
        )
    notes: list[str] = []
    lo, hi = den.card.dose_range_e_per_px
    labels = dose_groups(pairs.low_dose)
    doses = np.unique(labels)
    outside = [float(d) for d in doses if d < 0.8 * lo or d > 1.25 * hi]
    if outside:
        notes.append(
            f"doses {', '.join(f'{d:g}' for d in outside)} e-/px lie outside the model's "
            f"training range {lo:g}-{hi:g} e-/px"
        )
    dets = sorted(set(pairs.detector))
    if dets and not set(dets) <= set(den.card.detectors):
        notes.append(
            f"the pairs come from a {'/'.join(dets)} detector; the model was trained on "
            f"{'/'.join(den.card.detectors)}"
        )
    specs = sorted(set(pairs.specimen))
    shifts = pairs.shift if pairs.shift is not None else np.full((len(pairs), 2), np.nan)
    flip_dose = None
    if flips_at_dose is not None:
        flip_dose = float(doses[np.argmin(np.abs(np.log(doses / flips_at_dose)))])
    per: dict[tuple[float, str], dict[str, list[float]]] = {}
    flips_done = 0

    def add(dose: float, metric: str, who: str, value: float) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        per.setdefault((dose, metric), {}).setdefault(who, []).append(float(value))

    for i in range(len(pairs)):
        dose = float(labels[i])
        cpe = float(pairs.counts_per_electron[i])
        d_nom = float(pairs.low_dose[i])
        raw_e = np.asarray(counts_to_electrons(pairs.low[i], cpe), dtype=np.float64)
        den_e = np.asarray(den.denoise(pairs.low[i], counts_per_electron=cpe), dtype=np.float64)
        sh = (float(shifts[i, 0]), float(shifts[i, 1]))
        high_e = np.asarray(counts_to_electrons(np.asarray(pairs.high[i], np.float32), cpe))
        long_n = align_to_low(high_e, sh, "fourier").astype(np.float64) / float(pairs.high_dose[i])
        m = border_for(sh, "fourier")
        sl = (slice(m, h - m), slice(m, w - m))
        raw_n, model_n, long_n = raw_e[sl] / d_nom, den_e[sl] / d_nom, long_n[sl]
        truth_n = None
        if pairs.truth is not None:
            truth_n = np.asarray(pairs.truth[i], np.float64)[sl] / d_nom
        ref = truth_n if use_truth and truth_n is not None else long_n
        rng = M.data_range(ref)
        gauss_n, sigma = M.oracle_gaussian(raw_n, ref)
        edges = M.edge_mask(ref)
        particles = None
        if pairs.particles is not None:
            particles = np.asarray(pairs.particles[i], bool)[sl]
            if particles.sum() < MIN_MASK_PX:
                particles = None  # too few pixels for a meaningful number
        images = {"raw": raw_n, "gaussian": gauss_n, "model": model_n}
        if use_truth:
            images["long"] = long_n
            images["wiener"] = M.oracle_wiener(raw_n, ref)
        for who, img in images.items():
            add(dose, "psnr_db", who, M.psnr(img, ref, data_range_value=rng))
            add(dose, "ssim", who, M.ssim(img, ref, data_range_value=rng))
            add(dose, "psnr_edge_db", who, M.psnr(img, ref, data_range_value=rng, mask=edges))
            if particles is not None:
                add(
                    dose,
                    "psnr_particles_db",
                    who,
                    M.psnr(img, ref, data_range_value=rng, mask=particles),
                )
                add(
                    dose,
                    "ssim_particles",
                    who,
                    M.ssim(img, ref, data_range_value=rng, mask=particles),
                )
            if who == "wiener":
                continue
            add(dose, "mean_error_pct", who, M.mean_error_pct(img, ref))
            if use_truth and who != "long":
                add(
                    dose,
                    "psnr_vs_long_db",
                    who,
                    M.psnr(img, long_n, data_range_value=M.data_range(long_n)),
                )
        add(dose, "gaussian_sigma_px", "gaussian", sigma)
        # The electron total is a whole-frame property: measured before cropping the border.
        add(dose, "mean_shift_pct", "model", M.mean_shift_pct(den_e, raw_e))
        add(dose, "mean_shift_pct", "gaussian", M.mean_shift_pct(gauss_n, raw_n))
        vac = None
        if pairs.vacuum is not None:
            vac = np.asarray(pairs.vacuum[i], bool)[sl]
        elif truth_n is not None:
            vac = vacuum_from_truth(truth_n)
        if vac is not None and vac.any():
            # The vacuum check needs a clean reference: truth, else the long exposure.
            vref = truth_n if truth_n is not None else long_n
            for who, img in (("model", model_n), ("gaussian", gauss_n)):
                vc = M.vacuum_structure(img, raw_n, vref, vac)
                if vc is not None:
                    add(dose, "vacuum_structure_ratio", who, vc.ratio)
                    add(dose, "vacuum_max_z", who, vc.max_z)
        if flip_dose is not None and dose == flip_dose and flips_done < max_flip_frames:
            cons = M.flip_consistency(
                _denoise_fn(den, cpe), np.asarray(pairs.low[i]), ref, normalize=d_nom, crop=sl
            )
            add(dose, "flip_max_db", "model", cons.max_abs_db)
            flips_done += 1

    rows = []
    for (dose, metric), vals in sorted(per.items()):

        def mean(who: str, vals: dict[str, list[float]] = vals) -> float | None:
            v = vals.get(who)
            return float(np.mean(v)) if v else None

        n = max(len(v) for v in vals.values())
        rows.append(
            MetricRow(
                dose,
                metric,
                mean("model"),
                mean("raw"),
                mean("gaussian"),
                mean("long"),
                n,
                wiener=mean("wiener"),
            )
        )
    i5 = int(np.argmin(np.abs(pairs.low_dose - TARGET_DOSE)))
    ms = _time_ms(
        den, np.asarray(pairs.low[i5]), float(pairs.counts_per_electron[i5]), timing_repeats
    )
    report = EvalReport(
        model=den.card.name,
        package_hash=den.package_hash,
        reference="truth" if use_truth else "long",
        specimen=specs[0] if len(specs) == 1 else "",
        detector=dets[0] if len(dets) == 1 else "",
        frame_shape=(h, w),
        n_pairs=len(pairs),
        ms_per_frame=ms,
        device=den.path_name,
        rows=rows,
        notes=notes,
    )
    report.checks = checks_for(report)
    note = _wiener_note(report)
    if note:
        report.notes.append(note)
    return report


def _wiener_note(report: EvalReport) -> str | None:
    """How far the oracle Wiener filter gets at the target dose, beside the model."""
    p, s = report.get(TARGET_DOSE, "psnr_db"), report.get(TARGET_DOSE, "ssim")
    if not (p and s) or None in (p.wiener, p.gaussian, p.model, s.wiener, s.model):
        return None
    assert p.wiener is not None and p.gaussian is not None and p.model is not None
    assert s.wiener is not None and s.model is not None
    return (
        f"at {p.dose:g} e-/px the oracle Wiener filter (the best linear filter, knowing the "
        f"clean image's spectrum) gets {p.wiener - p.gaussian:+.2f} dB over the oracle Gaussian "
        f"and SSIM {s.wiener:.3f}; the model {p.model - p.gaussian:+.2f} dB, SSIM {s.model:.3f}"
    )


def evaluate_groups(
    model: Any,
    pairs: PairArrays,
    *,
    device: str = "auto",
    reference: str = "auto",
    flips_at_dose: float | None = TARGET_DOSE,
) -> list[EvalReport]:
    """:func:`evaluate_pairs` on each (specimen, detector) group of the pairs.

    Pairs whose specimen or detector is unknown form one group.
    """
    den = _load(model, device)
    keys = [
        (pairs.specimen[i] if pairs.specimen else "", pairs.detector[i] if pairs.detector else "")
        for i in range(len(pairs))
    ]
    reports = []
    for key in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == key]
        reports.append(
            evaluate_pairs(den, pairs.subset(idx), reference=reference, flips_at_dose=flips_at_dose)
        )
    return reports


def checks_for(report: EvalReport) -> list[Check]:
    """The pass/fail targets for a report.

    Quality targets at 5 e-/px (on fields never seen in training): atomic resolution: model
    PSNR >= oracle Gaussian + 3 dB and SSIM >= 0.85, over the whole field and inside the
    nanocrystals (when the pairs have particle masks); low magnification: model PSNR >= the
    1000 e-/px long exposure's and edge-masked PSNR >= oracle Gaussian + 3 dB. At every dose:
    mean shift within 1 %, vacuum flat (structure ratio <= 1.2 and no local residual above 5
    noise rms; rows average over frames, the check takes the worst dose); flips/rotations
    within 0.1 dB.
    """
    out: list[Check] = []
    r = report.get(TARGET_DOSE, "psnr_db")
    s = report.get(TARGET_DOSE, "ssim")
    e = report.get(TARGET_DOSE, "psnr_edge_db")
    if report.specimen == "atomic" and r and r.model is not None and r.gaussian is not None:
        out.append(
            Check(
                "PSNR vs oracle Gaussian at 5 e-/px (dB)",
                r.model - r.gaussian,
                ">= +3",
                r.model - r.gaussian >= 3.0,
            )
        )
        if s and s.model is not None:
            out.append(Check("SSIM at 5 e-/px", s.model, ">= 0.85", s.model >= 0.85))
        # the same targets inside the nanocrystals, where the lattice is
        pp = report.get(TARGET_DOSE, "psnr_particles_db")
        sp = report.get(TARGET_DOSE, "ssim_particles")
        if pp and pp.model is not None and pp.gaussian is not None:
            gain = pp.model - pp.gaussian
            out.append(
                Check(
                    "PSNR in nanocrystals vs oracle Gaussian at 5 e-/px (dB)",
                    gain,
                    ">= +3",
                    gain >= 3.0,
                )
            )
        if sp and sp.model is not None:
            out.append(
                Check("SSIM in nanocrystals at 5 e-/px", sp.model, ">= 0.85", sp.model >= 0.85)
            )
    if report.specimen == "nanoparticles" and r and r.model is not None:
        if r.long is not None:
            out.append(
                Check(
                    "PSNR vs 1000 e-/px long exposure at 5 e-/px (dB)",
                    r.model - r.long,
                    ">= 0",
                    r.model >= r.long,
                )
            )
        if e and e.model is not None and e.gaussian is not None:
            out.append(
                Check(
                    "edge PSNR vs oracle Gaussian at 5 e-/px (dB)",
                    e.model - e.gaussian,
                    ">= +3",
                    e.model - e.gaussian >= 3.0,
                )
            )
    shifts = [
        abs(x.model) for x in report.rows if x.metric == "mean_shift_pct" and x.model is not None
    ]
    if shifts:
        out.append(
            Check(
                "largest |mean shift| (%)",
                max(shifts),
                f"<= {MEAN_SHIFT_PASS_PCT:g}",
                max(shifts) <= MEAN_SHIFT_PASS_PCT,
            )
        )
    for metric, limit, label in (
        ("vacuum_structure_ratio", M.VACUUM_PASS_RATIO, "largest vacuum structure ratio"),
        ("vacuum_max_z", M.VACUUM_MAX_Z, "largest local vacuum residual (noise rms)"),
    ):
        vals = [x.model for x in report.rows if x.metric == metric and x.model is not None]
        if vals:
            out.append(Check(label, max(vals), f"<= {limit:g}", max(vals) <= limit))
    fl = [x.model for x in report.rows if x.metric == "flip_max_db" and x.model is not None]
    if fl:
        out.append(
            Check(
                "flip/rotation PSNR spread (dB)",
                max(fl),
                f"<= {FLIP_PASS_DB:g}",
                max(fl) <= FLIP_PASS_DB,
            )
        )
    return out


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
    if markdown:
        lines = [f"### {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        lines += [""] + [f"- {c}" for c in checks] + [f"- note: {n}" for n in report.notes]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [title, fmt.format(*head)] + [fmt.format(*row) for row in body]
    lines += checks + [f"note: {n}" for n in report.notes]
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


def write_quality(package: str | os.PathLike[str], rows: Sequence[QualityRow]) -> None:
    """Replace the quality table in a package's ``card.json`` (weights are untouched).

    Raises
    ------
    TemAcqError
        The package is untrained (an untrained model has no quality table).
    """
    from tem_acq.denoise.card import read_card, write_card
    from tem_acq.denoise.package import CARD_FILE, resolve_package

    folder = resolve_package(package)
    card = read_card(folder / CARD_FILE)
    if not card.trained:
        raise TemAcqError(f"{folder} is untrained; train it before recording its quality")
    new = card.model_validate({**card.model_dump(), "quality": [r.model_dump() for r in rows]})
    write_card(new, folder / CARD_FILE)


def figure(
    model: Any,
    pairs: PairArrays,
    path: str | os.PathLike[str],
    *,
    index: int | None = None,
    device: str = "auto",
) -> Path:
    """Save raw | oracle Gaussian | model | long exposure | difference, one shared scale.

    Parameters
    ----------
    model
        Package name/folder or a loaded denoiser.
    pairs
        The pairs; ``index`` picks the frame (default: the first one nearest 5 e-/px).
    path
        PNG file to write.
    index
        Which pair.
    device
        Device for the model.

    Returns
    -------
    The file written. The first four panels share one grey scale (0.5-99.5 percentiles of the
    reference); the difference panel (model - reference) has its own symmetric scale.
    """
    try:
        import matplotlib
    except ImportError as exc:
        raise TemAcqError(
            "the figure needs matplotlib; install it (pip install matplotlib)"
        ) from exc
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if pairs.high is None:
        raise TemAcqError("the figure needs pairs with long exposures")
    den = _load(model, device)
    i = _figure_index(pairs) if index is None else index
    if not 0 <= i < len(pairs):
        raise TemAcqError(f"pair index {i} out of range (0-{len(pairs) - 1})")
    cpe, dose = float(pairs.counts_per_electron[i]), float(pairs.low_dose[i])
    raw = np.asarray(counts_to_electrons(pairs.low[i], cpe), np.float64) / dose
    mod = np.asarray(den.denoise(pairs.low[i], counts_per_electron=cpe), np.float64) / dose
    sh = (0.0, 0.0) if pairs.shift is None else (float(pairs.shift[i, 0]), float(pairs.shift[i, 1]))
    high_e = np.asarray(counts_to_electrons(np.asarray(pairs.high[i], np.float32), cpe))
    long_n = align_to_low(high_e, sh, "fourier").astype(np.float64) / float(pairs.high_dose[i])
    ref = np.asarray(pairs.truth[i], np.float64) / dose if pairs.truth is not None else long_n
    gauss, sigma = M.oracle_gaussian(raw, ref)
    vmin, vmax = np.percentile(ref, [0.5, 99.5])
    diff = mod - ref
    dmax = float(np.percentile(np.abs(diff), 99.5)) or 1.0
    panels = [
        (raw, f"raw {dose:.3g} e-/px"),
        (gauss, f"oracle Gaussian (sigma {sigma:.1f} px)"),
        (mod, f"model {den.card.name}"),
        (long_n, f"long exposure {float(pairs.high_dose[i]):.4g} e-/px"),
    ]
    fig, axes = plt.subplots(1, 5, figsize=(20, 4.4), constrained_layout=True)
    im: Any = None
    for ax, (img, title) in zip(axes[:4], panels, strict=True):
        im = ax.imshow(img, cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.colorbar(im, ax=list(axes[:4]), shrink=0.8, label="electrons / dose (vacuum = 1)")
    imd = axes[4].imshow(diff, cmap="RdBu_r", vmin=-dmax, vmax=dmax, interpolation="nearest")
    axes[4].set_title(f"model - {'truth' if pairs.truth is not None else 'long'}", fontsize=10)
    axes[4].axis("off")
    fig.colorbar(imd, ax=axes[4], shrink=0.8)
    out = Path(path)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def _figure_index(pairs: PairArrays) -> int:
    """The frame nearest 5 e-/px with the most structure (largest relative reference std).

    So the figure shows edges rather than bare film.
    """
    labels = dose_groups(pairs.low_dose)
    target = labels[np.argmin(np.abs(np.log(labels / TARGET_DOSE)))]
    cands = np.flatnonzero(labels == target)
    refs = pairs.truth if pairs.truth is not None else pairs.high
    assert refs is not None
    spread = [float(np.std(refs[i]) / max(float(np.mean(refs[i])), 1e-12)) for i in cands]
    return int(cands[int(np.argmax(spread))])


@dataclass
class FramePairReport:
    """:func:`evaluate_frame_pair`'s result.

    Attributes
    ----------
    model
        Package name.
    counts_per_electron
        Conversion factor used.
    dose_e_per_px
        Mean electrons per pixel of the two frames.
    check
        The metrics (see :class:`tem_acq.metrics.FramePairCheck`).
    ms_per_frame
        Median ms to denoise one frame.
    """

    model: str
    counts_per_electron: float
    dose_e_per_px: float
    check: M.FramePairCheck
    ms_per_frame: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return _clean(asdict(self))

    def render(self) -> str:
        """Readable lines."""
        c = self.check
        return "\n".join(
            [
                f"model {self.model}, {self.dose_e_per_px:.2f} e-/px per frame, "
                f"{self.counts_per_electron:g} counts/e-, {self.ms_per_frame:.1f} ms/frame",
                f"PSNR between the two frames: raw {c.psnr_raw_db:.2f} dB, denoised "
                f"{c.psnr_denoised_db:.2f} dB",
                f"structure in neither input: ratio {c.structure_ratio:.3f} (<= "
                f"{M.VACUUM_PASS_RATIO:g}), 5-sigma outliers {100 * c.outlier_fraction:.3f} % "
                f"(<= 0.1 %): {'PASS' if c.passed else 'FAIL'}",
            ]
        )


def evaluate_frame_pair(
    model: Any,
    a: np.ndarray,
    b: np.ndarray,
    counts_per_electron: float,
    *,
    device: str = "auto",
) -> FramePairReport:
    """Check a model on two real frames of one field (e.g. the OneView frames).

    Parameters
    ----------
    model
        Package name/folder or loaded denoiser.
    a, b
        Two raw frames of one field (counts, same shape).
    counts_per_electron
        The camera's conversion factor (44 for the Katsuno OneView frames).
    device
        Device for the model.

    Returns
    -------
    The report: how alike the two frames denoise, and whether anything appears that is in
    neither input (see :func:`tem_acq.metrics.frame_pair_check`).
    """
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    if a_arr.ndim != 2 or a_arr.shape != b_arr.shape:
        raise TemAcqError(
            f"need two single frames of one shape, got {a_arr.shape} and {b_arr.shape}"
        )
    if not (math.isfinite(counts_per_electron) and counts_per_electron > 0):
        raise TemAcqError(f"counts_per_electron must be > 0, got {counts_per_electron}")
    den = _load(model, device)
    a_e = np.asarray(counts_to_electrons(a_arr, counts_per_electron), np.float64)
    b_e = np.asarray(counts_to_electrons(b_arr, counts_per_electron), np.float64)
    da = den.denoise(a_arr, counts_per_electron=counts_per_electron)
    db = den.denoise(b_arr, counts_per_electron=counts_per_electron)
    check = M.frame_pair_check(a_e, b_e, da, db)
    return FramePairReport(
        model=den.card.name,
        counts_per_electron=float(counts_per_electron),
        dose_e_per_px=float(0.5 * (a_e.mean() + b_e.mean())),
        check=check,
        ms_per_frame=_time_ms(den, a_arr, counts_per_electron, repeats=3),
    )
