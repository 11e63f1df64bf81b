"""What the ground-truth-free estimate reports: one row per image, gains, and why not trusted."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """The estimated error of one image made from the frames.

    Attributes
    ----------
    mse
        Mean squared error against the noise-free image (electrons^2 per pixel^2). It may be at
        or below 0 when the error is smaller than these frames can resolve.
    mse_ci
        95 % interval of ``mse``.
    psnr_db
        ``10 log10(peak^2 / mse)``; None when ``mse <= 0``.
    ci
        95 % interval of ``psnr_db`` (an end is None where the MSE interval reaches 0).
    sigma_px
        The Gaussian's sigma (the ``"gaussian"`` row only).
    """

    mse: float
    mse_ci: tuple[float, float]
    psnr_db: float | None
    ci: tuple[float | None, float | None]
    sigma_px: float | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        out: dict[str, object] = {
            "mse": self.mse,
            "mse_ci": list(self.mse_ci),
            "psnr_db": self.psnr_db,
            "ci": list(self.ci),
        }
        if self.sigma_px is not None:
            out["sigma_px"] = self.sigma_px
        return out


@dataclass(frozen=True)
class Gain:
    """How one image compares with another (a denoiser with the best Gaussian, say).

    The difference of their errors is what the frames measure precisely (the noise common to
    both cancels); the ratio in dB is undefined where an error's interval reaches 0, as it does
    when an error is below what the frames resolve (a near-empty field).

    Attributes
    ----------
    db
        How many dB it beats the other by (negative: it is worse); None when undefined.
    ci
        95 % interval of ``db``; an end is None where the errors' draws reach 0.
    mse_diff
        Its error minus the other's (electrons^2 per pixel^2): negative when it is better.
    mse_diff_ci
        95 % interval of ``mse_diff``, from the paired bootstrap.
    """

    db: float | None
    ci: tuple[float | None, float | None]
    mse_diff: float = math.nan
    mse_diff_ci: tuple[float, float] = (math.nan, math.nan)

    @property
    def better(self) -> bool:
        """Its error is below the other's beyond the interval."""
        return self.mse_diff_ci[1] < 0

    @property
    def worse(self) -> bool:
        """Its error is above the other's beyond the interval."""
        return self.mse_diff_ci[0] > 0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict."""
        return {
            "db": self.db,
            "ci": list(self.ci),
            "mse_diff": _finite_or_none(self.mse_diff),
            "mse_diff_ci": [_finite_or_none(v) for v in self.mse_diff_ci],
        }


@dataclass(frozen=True)
class PairEstimate:
    """The estimate from one pair of frames (or, from :func:`summarize`, from many).

    Attributes
    ----------
    trusted
        Whether the numbers can be trusted; when not, ``rows`` is empty and ``problems`` says why.
    problems
        One line per reason the estimate cannot be trusted.
    notes
        One line per thing worth knowing that does not spoil the estimate (tiles left out, ...).
    shift_px
        ``(dy, dx)``: the second frame relative to the first.
    dose_e_per_px
        Mean electrons per pixel per frame.
    noise_var_e2
        The frames' noise variance (electrons^2 per pixel^2), as measured from the pair.
    pixels
        Pixels the estimate is made from (per direction, summed over pairs).
    peak_e
        The peak of the PSNR (the robust range of the best-Gaussian image).
    rows
        ``"raw"``, ``"gaussian"``, then each denoiser's or output's name.
    gains
        Each denoiser's or output's gain over ``"gaussian"``.
    pairs
        How many pairs of frames the estimate comes from.
    region_px
        ``(y0, y1, x0, x1)``: the pixels compared, on each source frame's grid (one pair only).
    """

    trusted: bool
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()
    shift_px: tuple[float, float] = (math.nan, math.nan)
    dose_e_per_px: float = math.nan
    noise_var_e2: float = math.nan
    pixels: int = 0
    peak_e: float = math.nan
    rows: dict[str, Estimate] = field(default_factory=dict)
    gains: dict[str, Gain] = field(default_factory=dict)
    pairs: int = 1
    region_px: tuple[int, int, int, int] | None = None
    #: bootstrap draws of each row's MSE (the same resampling for every row), for summaries
    draws: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    #: half-width each row's interval is widened by for what the pair cannot tell apart (how the
    #: noise scales with the dose, when the two frames' doses differ)
    systematic: dict[str, float] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict: the fields, each row under its name, and the gains."""
        out: dict[str, object] = {
            "trusted": self.trusted,
            "problems": list(self.problems),
            "notes": list(self.notes),
            "pairs": self.pairs,
            "shift_px": [_finite_or_none(v) for v in self.shift_px],
            "dose_e_per_px": _finite_or_none(self.dose_e_per_px),
            "noise_var_e2": _finite_or_none(self.noise_var_e2),
            "pixels": self.pixels,
            "peak_e": _finite_or_none(self.peak_e),
            "region_px": None if self.region_px is None else list(self.region_px),
        }
        out.update({name: row.to_dict() for name, row in self.rows.items()})
        out["gain_over_gaussian_db"] = {name: g.to_dict() for name, g in self.gains.items()}
        return out

    def verdict(self, name: str = "model") -> str:
        """One line: whether ``name`` beats the best Gaussian on these frames."""
        if not self.trusted:
            return "no estimate: " + "; ".join(self.problems)
        gain, gauss = self.gains.get(name), self.rows.get("gaussian")
        if gain is None or gauss is None:
            return f"{name}: not compared with the best Gaussian"
        where = f"the best Gaussian (sigma {gauss.sigma_px:.2g} px)"
        if gain.db is not None and None not in gain.ci:
            span = f"{gain.db:+.2f} dB [{_fmt(gain.ci[0])}, {_fmt(gain.ci[1])}]"
        else:  # an error below what the frames resolve: the difference still tells
            lo, hi = gain.mse_diff_ci
            span = (
                f"an error {-gain.mse_diff:+.3g} e-^2 lower [{-hi:.3g}, {-lo:.3g}] (the "
                "errors are too small here for a ratio in dB)"
            )
        if gain.better:
            return f"{name} beats {where} by {span} on these frames"
        if gain.worse:
            return f"{name} is WORSE than {where}: {span} on these frames"
        return f"{name} is level with {where} within the interval: {span} on these frames"

    def render(self) -> str:
        """Readable lines: one per row, then the verdict of each denoiser."""
        if not self.trusted:
            return self.verdict()
        lines = [
            f"estimate without ground truth from {self.pairs} pair(s), {self.pixels} px, "
            f"{self.dose_e_per_px:.2f} e-/px per frame, shift "
            f"({self.shift_px[0]:+.2f}, {self.shift_px[1]:+.2f}) px",
            f"  {'':15} {'MSE e-^2':>10} {'PSNR dB':>8}  95 % interval",
        ]
        for name, row in self.rows.items():
            label = name if row.sigma_px is None else f"{name} {row.sigma_px:.2g}px"
            lines.append(
                f"  {label:15} {row.mse:10.4g} {_fmt(row.psnr_db):>8}  "
                f"[{_fmt(row.ci[0])}, {_fmt(row.ci[1])}]"
            )
        lines += [f"  {n} vs best Gaussian: {self.verdict(n)}" for n in self.gains]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None
