"""The model under evaluation: loading it, denoising with it, timing it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tem_acq.denoise import Denoiser


def load_denoiser(model: Any, device: str) -> Denoiser:
    """``model`` itself when it is a loaded :class:`~tem_acq.denoise.Denoiser`, else loaded.

    ``model`` is then a package name or folder; ``device`` applies only to loading.
    """
    from tem_acq.denoise import Denoiser, load_model

    if isinstance(model, Denoiser):
        return model
    return load_model(model, device)


def denoise_fn(
    den: Denoiser, counts_per_electron: float, **camera: Any
) -> Callable[[np.ndarray], np.ndarray]:
    """Raw counts -> denoised electrons (float64) of one camera.

    ``camera`` holds its ``detector`` and ``binning``, as ``PairArrays.camera`` gives them.
    """

    def run(counts: np.ndarray) -> np.ndarray:
        out = den.denoise(counts, counts_per_electron=counts_per_electron, **camera)
        return np.asarray(out, dtype=np.float64)

    return run


def time_ms(den: Denoiser, frame: np.ndarray, cpe: float, repeats: int = 5) -> float:
    """Median milliseconds to denoise ``frame``, after a warm-up and one untimed call."""
    den.warmup(frame.shape)
    den.denoise(frame, counts_per_electron=cpe)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        den.denoise(frame, counts_per_electron=cpe)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


@contextmanager
def tta_mode(den: Denoiser, on: bool) -> Iterator[Denoiser]:
    """``den`` with test-time augmentation switched ``on`` (or off) inside the block.

    One loaded model serves both the plain and the flip-averaged outputs (``--tta`` reports
    both), so its weights are loaded and warmed up once.
    """
    before = den.tta
    den.tta = on
    try:
        yield den
    finally:
        den.tta = before
