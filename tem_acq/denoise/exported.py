"""A tem-acq denoiser as one self-contained torch module, normalisation included.

This file imports only torch and segmentation_models_pytorch, never tem-acq: it travels inside
bioimage.io packages as the architecture of their state-dict weights, and the same module is
traced to TorchScript and exported to ONNX, so that every format computes what tem-acq does.

The input is electrons per pixel (``counts / counts_per_electron``: the bioimage.io package does
that division as its preprocessing), shape ``(batch, 1, y, x)`` with ``y`` and ``x`` multiples of
the U-Net's stride. The output is the expected electrons per pixel, tem-acq's dose-aware rule for
a linear (counting) detector (``tem_acq.denoise.normalization``): ``s = max(mean(e), min_scale)``,
``x = e / s``, ``y = net(x)``, ``y += mean(x) - mean(y)`` (with ``preserve_mean``), output
``y * s``. Each frame (each batch entry) is normalised by its own mean, so tiling a frame into
blocks normalises each block by its own dose: give whole frames.
"""

from __future__ import annotations

from typing import Any

import torch


class DoseNormalizedUNet(torch.nn.Module):
    """An smp U-Net between tem-acq's dose normalisation and its inverse.

    Parameters
    ----------
    unet
        The smp model's configuration (a tem-acq package's ``config.json``: ``_model_class``
        and the model's keyword arguments).
    min_scale
        Floor of the dose scale in electrons per pixel.
    preserve_mean
        Shift each output so that its mean equals the input's (the linear rule).
    """

    def __init__(
        self, unet: dict[str, Any], min_scale: float = 0.05, preserve_mean: bool = True
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        config = dict(unet)
        family = getattr(smp, str(config.pop("_model_class", "Unet")))
        config["encoder_weights"] = None  # the weights come with the package
        self.net = family(**config)
        self.min_scale = float(min_scale)
        self.preserve_mean = bool(preserve_mean)

    def forward(self, electrons: torch.Tensor) -> torch.Tensor:
        """Expected electrons per pixel of ``(batch, 1, y, x)`` frames in electrons."""
        scale = electrons.mean(dim=(-2, -1), keepdim=True).clamp(min=self.min_scale)
        x = electrons / scale
        y = self.net(x)
        if self.preserve_mean:
            y = y + (x.mean(dim=(-2, -1), keepdim=True) - y.mean(dim=(-2, -1), keepdim=True))
        return y * scale
