"""Checking a model on two real frames of one field, where there is no ground truth.

The two frames should denoise to nearly the same image, and nothing should appear that is in
neither input (:func:`tem_acq.metrics.frame_pair_check`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tem_acq import metrics as M
from tem_acq.denoise.normalization import counts_to_electrons
from tem_acq.errors import TemAcqError
from tem_acq.evaluate.loop import json_ready
from tem_acq.evaluate.runner import load_denoiser, time_ms


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
        return json_ready(asdict(self))

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
    den = load_denoiser(model, device)
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
        ms_per_frame=time_ms(den, a_arr, counts_per_electron, repeats=3),
    )
