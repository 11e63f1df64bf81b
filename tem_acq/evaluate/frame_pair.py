"""Checking a model on two real frames of one field, where there is no ground truth.

The ground-truth-free estimate (:mod:`tem_acq.quality`) measures the model's error, the raw
frame's and the best Gaussian filter's from the two frames' independent noise; besides, the two
frames should denoise to nearly the same image, and nothing should appear that is in neither
input (:func:`tem_acq.metrics.frame_pair_check`).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tem_acq import metrics as M
from tem_acq.denoise.normalization import counts_to_electrons
from tem_acq.errors import TemAcqError
from tem_acq.evaluate.estimates import denoise_outputs, estimate_counts_pair
from tem_acq.evaluate.loop import json_ready
from tem_acq.evaluate.runner import load_denoiser, time_ms, tta_mode

if TYPE_CHECKING:
    from tem_acq.quality import PairEstimate


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
        Median ms to denoise one frame (with TTA when asked).
    tta
        The check and the timing used the model averaged over the 8 flips and rotations.
    estimate
        The ground-truth-free estimate: rows ``raw``, ``gaussian``, ``model`` (and ``tta``).
    """

    model: str
    counts_per_electron: float
    dose_e_per_px: float
    check: M.FramePairCheck
    ms_per_frame: float
    tta: bool
    estimate: PairEstimate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``estimate`` is :meth:`tem_acq.quality.PairEstimate.to_dict`."""
        plain = json_ready(asdict(replace(self, estimate=None)))  # type: ignore[arg-type]
        return {**plain, "estimate": json_ready(self.estimate.to_dict())}

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
                self.estimate.render(),
            ]
        )


def evaluate_frame_pair(
    model: Any,
    a: np.ndarray,
    b: np.ndarray,
    counts_per_electron: float,
    *,
    device: str = "auto",
    tta: bool = False,
    figure: str | os.PathLike[str] | None = None,
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
    tta
        Also estimate the model averaged over the 8 flips and rotations (row ``tta``); the
        check and the timing then use it.
    figure
        Also save raw | model | raw - model for both frames here
        (:func:`~tem_acq.evaluate.figures.frame_pair_figure`).

    Returns
    -------
    The report: the ground-truth-free estimate of raw, best Gaussian and model, how alike the
    two frames denoise, and whether anything appears that is in neither input (see
    :func:`tem_acq.metrics.frame_pair_check`).
    """
    a_arr, b_arr = np.asarray(a), np.asarray(b)
    if a_arr.ndim != 2 or a_arr.shape != b_arr.shape:
        raise TemAcqError(
            f"need two single frames of one shape, got {a_arr.shape} and {b_arr.shape}"
        )
    if not (math.isfinite(counts_per_electron) and counts_per_electron > 0):
        raise TemAcqError(f"counts_per_electron must be > 0, got {counts_per_electron}")
    den = load_denoiser(model, device)
    a_e = np.asarray(counts_to_electrons(a_arr, counts_per_electron), np.float64)
    b_e = np.asarray(counts_to_electrons(b_arr, counts_per_electron), np.float64)
    a_out = denoise_outputs(den, a_arr, counts_per_electron, tta=tta)
    b_out = denoise_outputs(den, b_arr, counts_per_electron, tta=tta)
    shown = "tta" if tta else "model"
    check = M.frame_pair_check(a_e, b_e, a_out[shown], b_out[shown])
    if figure is not None:
        from tem_acq.evaluate.figures import frame_pair_figure

        frame_pair_figure(
            (a_e, b_e), (a_out[shown], b_out[shown]), figure, title=f"{den.card.name}: frame pair"
        )
    with tta_mode(den, tta):
        ms = time_ms(den, a_arr, counts_per_electron, repeats=3)
    return FramePairReport(
        model=den.card.name,
        counts_per_electron=float(counts_per_electron),
        dose_e_per_px=float(0.5 * (a_e.mean() + b_e.mean())),
        check=check,
        ms_per_frame=ms,
        tta=tta,
        estimate=estimate_counts_pair(a_arr, b_arr, counts_per_electron, a_out, b_out),
    )
