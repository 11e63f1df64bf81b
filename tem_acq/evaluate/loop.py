"""Evaluate a denoiser on pairs: per dose, raw vs oracle Gaussian vs model (vs long exposure).

The protocol is ``docs/design/quality.md``'s; the metric definitions are in
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

Numbers are averaged over the frames of one dose (PSNR in dB) and checked against the targets
of :mod:`tem_acq.evaluate.targets`; :func:`~tem_acq.evaluate.evaluate_frame_pair` checks two
real frames of one field (no ground truth).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from tem_acq import metrics as M
from tem_acq.denoise.normalization import counts_to_electrons
from tem_acq.errors import TemAcqError
from tem_acq.evaluate.runner import denoise_fn, load_denoiser, time_ms
from tem_acq.evaluate.targets import TARGET_DOSE, Check, checks_for, wiener_note
from tem_acq.pairs import PairArrays, aligned_long_electrons
from tem_acq.registration import border_for

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from tem_acq.denoise import Denoiser
    from tem_acq.evaluate.estimates import DoseEstimate

#: Fewest mask pixels for a masked metric (particles) to be reported for a frame.
MIN_MASK_PX = 400


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
    "vacuum_mean_error_pct": "mean in vacuum vs the true dose there (%)",
    "vacuum_max_z": "largest local low-pass residual in vacuum, in noise rms (<= 5)",
    "flip_max_db": "max PSNR change over the 8 flips/rotations (dB)",
    "gaussian_sigma_px": "the oracle Gaussian's sigma (px)",
}


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
    estimates
        The ground-truth-free estimate per dose, for pairs with two or more short exposures
        per field (:class:`tem_acq.evaluate.estimates.ShortPairs`); empty otherwise.
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
    estimates: list[DoseEstimate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN and inf become ``None``); ``estimate``: one entry per dose."""
        plain = json_ready(asdict(replace(self, estimates=[])))
        plain.pop("estimates")
        return {**plain, "estimate": [e.to_dict() for e in self.estimates]}

    def get(self, dose: float, metric: str) -> MetricRow | None:
        """The row of ``metric`` at ``dose`` (nearest dose within 1 %), or ``None``."""
        for r in self.rows:
            if r.metric == metric and abs(r.dose - dose) <= 0.01 * dose:
                return r
        return None


def json_ready(obj: Any) -> Any:
    """``obj`` (dicts, lists, numbers) with NaN and inf replaced by ``None`` for JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    return obj


def vacuum_from_truth(truth: np.ndarray) -> np.ndarray:
    """Vacuum mask of a noise-free frame (pairs stores hold truth but no mask).

    Vacuum is flat (7x7 standard deviation below 0.5 % of the level) and the brightest flat
    region (support film and specimen absorb): pixels within 1 % of the 99th percentile of the
    flat pixels' local means. A frame with no flat region gets an empty mask; on a frame
    without vacuum the brightest flat film is taken instead, which must stay flat all the same.
    """
    from scipy import ndimage

    t = np.asarray(truth, dtype=np.float64)
    mean = ndimage.uniform_filter(t, 7, mode="reflect")
    sq = ndimage.uniform_filter(t * t, 7, mode="reflect")
    std = np.sqrt(np.maximum(sq - mean**2, 0.0))
    scale = max(float(np.abs(t).max()), 1e-12)
    flat = std < 0.005 * np.maximum(np.abs(mean), 1e-3 * scale)
    if flat.sum() < 64:
        return np.zeros(t.shape, dtype=bool)
    level = float(np.percentile(mean[flat], 99))
    return flat & (np.abs(t - level) < 0.01 * abs(level))


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


class EvalOptions(TypedDict, total=False):
    """The keyword options of :func:`evaluate_pairs` (their defaults and meaning are there)."""

    reference: str
    flips_at_dose: float | None
    max_flip_frames: int
    timing_repeats: int


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
    den, use_truth = _checked_inputs(model, pairs, device=device, reference=reference)
    labels = dose_groups(pairs.low_dose)
    doses = np.unique(labels)
    notes = _range_notes(den, pairs, doses)
    shifts = pairs.shift if pairs.shift is not None else np.full((len(pairs), 2), np.nan)
    flip_dose = None
    if flips_at_dose is not None:
        flip_dose = float(doses[np.argmin(np.abs(np.log(doses / flips_at_dose)))])
    from tem_acq.evaluate.estimates import ShortPairs  # it renders with this module's helpers

    acc = _Metrics()
    shorts = ShortPairs()
    flips_done = 0
    for i in range(len(pairs)):
        dose = float(labels[i])
        frame = _Frame.of(den, pairs, i, (float(shifts[i, 0]), float(shifts[i, 1])), use_truth)
        shorts.add(int(pairs.field[i]), dose, np.asarray(pairs.low[i]), frame.cpe, frame.den_e)
        acc.add_frame(dose, frame, _particles(pairs, i, frame.crop), use_truth)
        acc.add_vacuum(dose, frame, _vacuum(pairs, i, frame))
        if flip_dose is not None and dose == flip_dose and flips_done < max_flip_frames:
            acc.add_flips(dose, frame, den, np.asarray(pairs.low[i]), pairs.camera(i))
            flips_done += 1
    i5 = int(np.argmin(np.abs(pairs.low_dose - TARGET_DOSE)))
    ms = time_ms(
        den, np.asarray(pairs.low[i5]), float(pairs.counts_per_electron[i5]), timing_repeats
    )
    report = _report(den, pairs, use_truth, acc.rows(), notes, ms_per_frame=ms)
    report.estimates = shorts.results()
    return report


def _report(
    den: Denoiser,
    pairs: PairArrays,
    use_truth: bool,
    rows: list[MetricRow],
    notes: list[str],
    *,
    ms_per_frame: float,
) -> EvalReport:
    """The report of the measured rows, with its checks and the oracle Wiener's note."""
    dets, specs = sorted(set(pairs.detector)), sorted(set(pairs.specimen))
    report = EvalReport(
        model=den.card.name,
        package_hash=den.package_hash,
        reference="truth" if use_truth else "long",
        specimen=specs[0] if len(specs) == 1 else "",
        detector=dets[0] if len(dets) == 1 else "",
        frame_shape=pairs.shape,
        n_pairs=len(pairs),
        ms_per_frame=ms_per_frame,
        device=den.path_name,
        rows=rows,
        notes=notes,
    )
    report.checks = checks_for(report)
    note = wiener_note(report)
    if note:
        report.notes.append(note)
    return report


def _checked_inputs(
    model: Any, pairs: PairArrays, *, device: str, reference: str
) -> tuple[Denoiser, bool]:
    """The loaded model, and whether the reference is the truth, once the inputs can be used."""
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
    den = load_denoiser(model, device)
    h, w = pairs.shape
    if min(h, w) < den.multiple:
        raise TemAcqError(
            f"frames of {h}x{w} px are smaller than model {den.card.name!r} can take "
            f"({den.multiple} px at least); evaluate on larger frames"
        )
    return den, use_truth


def _range_notes(den: Denoiser, pairs: PairArrays, doses: np.ndarray) -> list[str]:
    """Warnings about pairs outside what the model was trained on (doses, detector)."""
    notes: list[str] = []
    lo, hi = den.card.dose_range_e_per_px
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
    return notes


@dataclass
class _Frame:
    """One pair's images: whole frames in electrons, and dose-normalised without the border.

    Attributes
    ----------
    cpe, low_dose
        The pair's counts per electron and short-frame dose (e-/px).
    raw_e, den_e
        The raw and the denoised frame in electrons (whole frames).
    raw, model, long
        Raw frame, model output and registered long exposure, each divided by its dose and
        cropped to ``crop``.
    gauss, sigma
        The oracle Gaussian of ``raw`` against ``ref``, and its sigma (px).
    truth
        The ground truth, normalised and cropped the same way (``None``: not known).
    ref
        The reference: ``truth`` when it is used, else ``long``.
    crop
        The frame without its registration border.
    """

    cpe: float
    low_dose: float
    raw_e: np.ndarray
    den_e: np.ndarray
    raw: np.ndarray
    model: np.ndarray
    long: np.ndarray
    truth: np.ndarray | None
    ref: np.ndarray
    gauss: np.ndarray
    sigma: float
    crop: tuple[slice, slice]

    @classmethod
    def of(
        cls, den: Denoiser, pairs: PairArrays, i: int, shift: tuple[float, float], use_truth: bool
    ) -> _Frame:
        """Pair ``i`` denoised, its long exposure registered with ``shift`` (Fourier)."""
        cpe = float(pairs.counts_per_electron[i])
        d_nom = float(pairs.low_dose[i])
        raw_e = np.asarray(counts_to_electrons(pairs.low[i], cpe), dtype=np.float64)
        den_e = np.asarray(den.denoise(pairs.low[i], **pairs.camera(i)), dtype=np.float64)
        long_n = aligned_long_electrons(pairs, i, shift, "fourier").astype(np.float64) / float(
            pairs.high_dose[i]
        )
        h, w = pairs.shape
        m = border_for(shift, "fourier")
        sl = (slice(m, h - m), slice(m, w - m))
        truth_n = None
        if pairs.truth is not None:
            truth_n = np.asarray(pairs.truth[i], np.float64)[sl] / d_nom
        raw_n, long_n = raw_e[sl] / d_nom, long_n[sl]
        ref = truth_n if use_truth and truth_n is not None else long_n
        gauss, sigma = M.oracle_gaussian(raw_n, ref)
        model_n = den_e[sl] / d_nom
        return cls(cpe, d_nom, raw_e, den_e, raw_n, model_n, long_n, truth_n, ref, gauss, sigma, sl)


def _particles(pairs: PairArrays, i: int, crop: tuple[slice, slice]) -> np.ndarray | None:
    """Pair ``i``'s particle mask within ``crop``, when it has enough pixels to measure."""
    if pairs.particles is None:
        return None
    particles = np.asarray(pairs.particles[i], bool)[crop]
    if particles.sum() < MIN_MASK_PX:
        return None  # too few pixels for a meaningful number
    return particles


def _vacuum(pairs: PairArrays, i: int, frame: _Frame) -> np.ndarray | None:
    """Pair ``i``'s vacuum mask within the crop: recorded, else found in the ground truth."""
    if pairs.vacuum is not None:
        return np.asarray(pairs.vacuum[i], bool)[frame.crop]
    if frame.truth is not None:
        return vacuum_from_truth(frame.truth)
    return None


class _Metrics:
    """Every metric's values per dose and per image (raw, gaussian, model...), frame by frame."""

    def __init__(self) -> None:
        self.values: dict[tuple[float, str], dict[str, list[float]]] = {}

    def add(self, dose: float, metric: str, who: str, value: float | None) -> None:
        """Record one value (``None`` and NaN are left out: not measurable on this frame)."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return
        self.values.setdefault((dose, metric), {}).setdefault(who, []).append(float(value))

    def add_frame(
        self, dose: float, frame: _Frame, particles: np.ndarray | None, use_truth: bool
    ) -> None:
        """The comparisons with the reference, of the raw frame, the baselines and the model."""
        ref = frame.ref
        images = {"raw": frame.raw, "gaussian": frame.gauss, "model": frame.model}
        if use_truth:
            images["long"] = frame.long
            images["wiener"] = M.oracle_wiener(frame.raw, ref)
        rng = M.data_range(ref)
        edges = M.edge_mask(ref)
        for who, img in images.items():
            self.add(dose, "psnr_db", who, M.psnr(img, ref, data_range_value=rng))
            self.add(dose, "ssim", who, M.ssim(img, ref, data_range_value=rng))
            self.add(dose, "psnr_edge_db", who, M.psnr(img, ref, data_range_value=rng, mask=edges))
            if particles is not None:
                psnr_in = M.psnr(img, ref, data_range_value=rng, mask=particles)
                self.add(dose, "psnr_particles_db", who, psnr_in)
                ssim_in = M.ssim(img, ref, data_range_value=rng, mask=particles)
                self.add(dose, "ssim_particles", who, ssim_in)
            if who == "wiener":
                continue
            self.add(dose, "mean_error_pct", who, M.mean_error_pct(img, ref))
            if use_truth and who != "long":
                vs_long = M.psnr(img, frame.long, data_range_value=M.data_range(frame.long))
                self.add(dose, "psnr_vs_long_db", who, vs_long)
        self.add(dose, "gaussian_sigma_px", "gaussian", frame.sigma)
        # The electron total is a whole-frame property: measured before cropping the border.
        self.add(dose, "mean_shift_pct", "model", M.mean_shift_pct(frame.den_e, frame.raw_e))
        self.add(dose, "mean_shift_pct", "gaussian", M.mean_shift_pct(frame.gauss, frame.raw))

    def add_vacuum(self, dose: float, frame: _Frame, vacuum: np.ndarray | None) -> None:
        """Structure invented in the vacuum, by the model and by the oracle Gaussian."""
        if vacuum is None or not vacuum.any():
            return
        # The vacuum check needs a clean reference: truth, else the long exposure.
        vref = frame.truth if frame.truth is not None else frame.long
        if frame.truth is not None:
            # the dose the vacuum received is known only with the simulator's truth
            for who, img in (("raw", frame.raw), ("model", frame.model)):
                error = M.mean_error_pct(img[vacuum], frame.truth[vacuum])
                self.add(dose, "vacuum_mean_error_pct", who, error)
        for who, img in (("model", frame.model), ("gaussian", frame.gauss)):
            vc = M.vacuum_structure(img, frame.raw, vref, vacuum)
            if vc is not None:
                self.add(dose, "vacuum_structure_ratio", who, vc.ratio)
                self.add(dose, "vacuum_max_z", who, vc.max_z)

    def add_flips(
        self,
        dose: float,
        frame: _Frame,
        den: Denoiser,
        raw_counts: np.ndarray,
        camera: dict[str, Any],
    ) -> None:
        """The model's PSNR spread over the 8 flips/rotations of the frame (8 denoisings)."""
        cons = M.flip_consistency(
            denoise_fn(den, **camera),
            raw_counts,
            frame.ref,
            normalize=frame.low_dose,
            crop=frame.crop,
        )
        self.add(dose, "flip_max_db", "model", cons.max_abs_db)

    def rows(self) -> list[MetricRow]:
        """One row per dose and metric (sorted), each image's values averaged over frames."""
        rows = []
        for (dose, metric), vals in sorted(self.values.items()):

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
        return rows


def evaluate_groups(
    model: Any, pairs: PairArrays, *, device: str = "auto", **options: Unpack[EvalOptions]
) -> list[EvalReport]:
    """:func:`evaluate_pairs` on each (specimen, detector) group of the pairs.

    Pairs whose specimen or detector is unknown form one group. ``model`` is loaded once, on
    ``device``; the ``options`` are :func:`evaluate_pairs`'s.
    """
    den = load_denoiser(model, device)
    keys = [
        (pairs.specimen[i] if pairs.specimen else "", pairs.detector[i] if pairs.detector else "")
        for i in range(len(pairs))
    ]
    reports = []
    for key in sorted(set(keys)):
        idx = [i for i, k in enumerate(keys) if k == key]
        reports.append(evaluate_pairs(den, pairs.subset(idx), **options))
    return reports
