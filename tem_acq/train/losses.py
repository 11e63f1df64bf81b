"""Training losses in network units: L1 (the paper's), L2, and L1 + (1 - SSIM).

And what the loss compares: :func:`delivered`, the network output shifted as the engine will
shift it (the card's mean rule, per pair's detector model and binning).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tem_acq.denoise.normalization import DoseNormalization, keep_input_mean
from tem_acq.detector import DetectorModel

if TYPE_CHECKING:
    import torch


def delivered(
    y: torch.Tensor,
    x: torch.Tensor,
    norm: DoseNormalization,
    scale: np.ndarray,
    cameras: Sequence[tuple[DetectorModel | None, int]],
) -> torch.Tensor:
    """The output ``y`` (``(b, 1, h, w)``, network units) as the engine delivers it.

    Frames of one (detector model, binning) go through
    :func:`~tem_acq.denoise.normalization.keep_input_mean` together: one call per group.

    Parameters
    ----------
    y, x
        Network output and input.
    norm
        The normalisation the model is trained for.
    scale
        ``(b,)`` dose scale of each frame's pair (e-/px).
    cameras
        ``(detector model or None, binning)`` of each frame.
    """
    import torch

    groups: dict[tuple[DetectorModel | None, int], list[int]] = {}
    for i, camera in enumerate(cameras):
        groups.setdefault(camera, []).append(i)
    if len(groups) == 1:
        ((det, binning),) = groups
        s = torch.as_tensor(np.asarray(scale, np.float32), device=y.device).view(-1, 1, 1, 1)
        return keep_input_mean(y, x, norm, detector=det, scale=s, binning=binning)
    parts = [torch.empty(0)] * len(cameras)
    for (det, binning), members in groups.items():
        idx = torch.as_tensor(members, device=y.device)
        s = torch.as_tensor(np.asarray(scale, np.float32)[members], device=y.device)
        out = keep_input_mean(
            y[idx], x[idx], norm, detector=det, scale=s.view(-1, 1, 1, 1), binning=binning
        )
        for k, i in enumerate(members):
            parts[i] = out[k]
    return torch.stack(parts)


def _gauss_kernel(sigma: float, device: torch.device) -> torch.Tensor:
    import torch

    r = int(3.5 * sigma + 0.5)
    x = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def ssim_torch(y: torch.Tensor, t: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of ``(b, 1, h, w)`` batches (Gaussian window, Wang et al. 2004 constants).

    The data range is each target's max - min (detached), matching :func:`tem_acq.metrics.ssim`.
    """
    import torch.nn.functional as F

    k = _gauss_kernel(sigma, y.device)
    kx = k.view(1, 1, 1, -1)
    ky = k.view(1, 1, -1, 1)

    def blur(a: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(a, kx), ky)  # "valid": no border effects

    rng = (t.amax(dim=(-2, -1), keepdim=True) - t.amin(dim=(-2, -1), keepdim=True)).detach()
    rng = rng.clamp_min(1e-3)
    c1, c2 = (0.01 * rng) ** 2, (0.03 * rng) ** 2
    mu_y, mu_t = blur(y), blur(t)
    vy = blur(y * y) - mu_y**2
    vt = blur(t * t) - mu_t**2
    cov = blur(y * t) - mu_y * mu_t
    s = ((2 * mu_y * mu_t + c1) * (2 * cov + c2)) / ((mu_y**2 + mu_t**2 + c1) * (vy + vt + c2))
    return s.mean()


def compute_loss(name: str, y: torch.Tensor, t: torch.Tensor, ssim_weight: float) -> torch.Tensor:
    """The training loss ``name`` (``l1``, ``l2``, ``l1+ssim``) of output ``y`` vs target ``t``.

    Both are ``(b, 1, h, w)`` float32 tensors in network units.
    """
    if name == "l1":
        return (y - t).abs().mean()
    if name == "l2":
        return (y - t).square().mean()
    if name == "l1+ssim":
        return (y - t).abs().mean() + ssim_weight * (1.0 - ssim_torch(y, t))
    raise ValueError(f"unknown loss {name!r}")
