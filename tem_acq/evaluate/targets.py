"""Quality targets: what a model must reach, checked on an evaluation report.

The targets at :data:`TARGET_DOSE` depend on the kind of image (atomic resolution: beat the
oracle Gaussian by 3 dB with SSIM 0.85, over the field and in the nanocrystals; low
magnification: match the long exposure, beat the oracle Gaussian by 3 dB at the edges); the
generic checks hold at every dose (mean kept, vacuum flat, flips and rotations alike).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tem_acq import metrics as M

if TYPE_CHECKING:
    from tem_acq.evaluate.loop import EvalReport, MetricRow

#: Tolerances of the generic checks.
MEAN_SHIFT_PASS_PCT = 1.0
FLIP_PASS_DB = 0.1
#: The dose at which the quality targets are checked (e-/px).
TARGET_DOSE = 5.0
#: Least gain over the oracle Gaussian (dB) and least SSIM of the quality targets.
GAIN_OVER_GAUSSIAN_DB = 3.0
MIN_SSIM = 0.85


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
    if report.specimen == "atomic":
        out += _atomic_targets(report)
    if report.specimen == "nanoparticles":
        out += _low_magnification_targets(report)
    return out + _generic_checks(report)


def _gain_check(name: str, row: MetricRow | None) -> list[Check]:
    """The model's gain over the oracle Gaussian in ``row`` (none without both values)."""
    if not (row and row.model is not None and row.gaussian is not None):
        return []
    gain = row.model - row.gaussian
    return [Check(name, gain, f">= +{GAIN_OVER_GAUSSIAN_DB:g}", gain >= GAIN_OVER_GAUSSIAN_DB)]


def _ssim_check(name: str, row: MetricRow | None) -> list[Check]:
    """The model's SSIM in ``row`` against :data:`MIN_SSIM` (none without a value)."""
    if not (row and row.model is not None):
        return []
    return [Check(name, row.model, f">= {MIN_SSIM:g}", row.model >= MIN_SSIM)]


def _atomic_targets(report: EvalReport) -> list[Check]:
    """Atomic resolution: gain over the oracle Gaussian and SSIM, whole field and crystals."""
    r = report.get(TARGET_DOSE, "psnr_db")
    if not (r and r.model is not None and r.gaussian is not None):
        return []
    return (
        _gain_check("PSNR vs oracle Gaussian at 5 e-/px (dB)", r)
        + _ssim_check("SSIM at 5 e-/px", report.get(TARGET_DOSE, "ssim"))
        # the same targets inside the nanocrystals, where the lattice is
        + _gain_check(
            "PSNR in nanocrystals vs oracle Gaussian at 5 e-/px (dB)",
            report.get(TARGET_DOSE, "psnr_particles_db"),
        )
        + _ssim_check("SSIM in nanocrystals at 5 e-/px", report.get(TARGET_DOSE, "ssim_particles"))
    )


def _low_magnification_targets(report: EvalReport) -> list[Check]:
    """Low magnification: match the long exposure, and gain over the Gaussian at the edges."""
    r = report.get(TARGET_DOSE, "psnr_db")
    if not (r and r.model is not None):
        return []
    out = []
    if r.long is not None:
        out.append(
            Check(
                "PSNR vs 1000 e-/px long exposure at 5 e-/px (dB)",
                r.model - r.long,
                ">= 0",
                r.model >= r.long,
            )
        )
    return out + _gain_check(
        "edge PSNR vs oracle Gaussian at 5 e-/px (dB)", report.get(TARGET_DOSE, "psnr_edge_db")
    )


def _generic_checks(report: EvalReport) -> list[Check]:
    """At every dose: mean kept, vacuum flat, flips and rotations alike (the worst dose)."""
    out = []
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
        ("flip_max_db", FLIP_PASS_DB, "flip/rotation PSNR spread (dB)"),
    ):
        vals = [x.model for x in report.rows if x.metric == metric and x.model is not None]
        if vals:
            out.append(Check(label, max(vals), f"<= {limit:g}", max(vals) <= limit))
    return out


def wiener_note(report: EvalReport) -> str | None:
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
