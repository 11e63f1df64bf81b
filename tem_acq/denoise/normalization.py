"""Dose-aware normalisation: the one definition shared by training and inference.

Katsuno et al. stretched every image between its 1st and 80th percentiles, which saturates the
brightest 20 % and throws the dose away. tem-acq works in physical units instead:

1. **counts → electrons**: ``e = counts / counts_per_electron`` (the camera's conversion
   factor; 44 counts per electron for the Gatan OneView frames of the paper).
2. **dose scale** per frame: ``s = max(mean(e), min_scale)``, the frame's mean electrons per
   pixel, floored at ``min_scale`` e-/px so that an empty (dark or blanked) frame does not
   divide by zero.
3. **network input**: ``x = e / s``; every frame then has a mean of about 1 whatever its dose
   or exposure, so one model serves a range of doses. The noise still tells the network the
   dose (Poisson noise has relative spread ``1/sqrt(s)``).
4. **network output → electrons**: ``d = y * s``: the estimate of the *expected* electrons per
   pixel at the input frame's dose. With ``preserve_mean`` (default), the output is first
   shifted so its mean equals the input's, ``y' = y + mean(x) - mean(y)``: the observed
   electron total is the unbiased estimate of the expected total (Poisson), so a denoiser must
   not change it; the shift is additive so that it stays stable for near-empty frames.

Training uses the same functions: the input is ``to_network(short_e, s)`` with ``s`` from the
short exposure, and the target is the long exposure *rescaled to the short exposure's dose*
(``long_e * dose_short / dose_long``) divided by the **same** ``s``. The loss is computed in
network units; inference then multiplies by ``s`` again.

Every function accepts NumPy arrays or torch tensors of shape ``(..., y, x)`` (a frame or a
stack) and returns the same kind; scales have shape ``(..., 1, 1)`` so they broadcast per frame.
This module does not import torch, so data loaders can use it cheaply.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import ConfigDict, Field

from tem_acq.detector import DetectorModel, response_table
from tem_acq.errors import ConfigError
from tem_acq.schema import StrictModel

ArrayT = TypeVar("ArrayT")


class DoseNormalization(StrictModel):
    """How raw frames become network inputs and network outputs become electrons.

    Stored in every model card so that a model is always run with the normalisation it was
    trained with.

    Attributes
    ----------
    kind
        ``"dose"``: counts → electrons → divided by the frame's mean electrons per pixel.
    min_scale
        Floor of the dose scale in e-/px (guards empty frames against division by zero).
    preserve_mean
        Shift the output so each frame's mean electrons per pixel equals the input's.
    detector_aware
        With ``preserve_mean``, on a nonlinear detector, shift it so that the detector's mean
        response to the output has the input's mean instead (module docstring, rule 5). False
        on cards made before it existed, which then run as they always did.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["dose"] = "dose"
    min_scale: float = Field(default=0.05, gt=0.0)
    preserve_mean: bool = True
    detector_aware: bool = False

    def scale(self, electrons: ArrayT) -> ArrayT:
        """Per-frame dose scale; see :func:`dose_scale`."""
        return dose_scale(electrons, self)

    def to_network(self, electrons: ArrayT, scale: ArrayT) -> ArrayT:
        """Network input; see :func:`to_network`."""
        return to_network(electrons, scale)

    def from_network(
        self,
        output: ArrayT,
        scale: ArrayT,
        network_input: ArrayT | None = None,
        *,
        detector: DetectorModel | None = None,
        binning: int = 1,
    ) -> ArrayT:
        """Electrons per pixel from the network output; see :func:`from_network`."""
        return from_network(
            output, scale, self, network_input=network_input, detector=detector, binning=binning
        )


def _is_torch(x: Any) -> bool:
    # Duck-typed so this module never imports torch itself.
    return type(x).__module__.split(".", 1)[0] == "torch"


def _mean_yx(x: Any) -> Any:
    """Mean over the last two axes, kept as ``(..., 1, 1)``."""
    if _is_torch(x):
        return x.mean(dim=(-2, -1), keepdim=True)
    # float64 accumulation: a 4096x4096 float32 sum loses digits otherwise.
    return np.mean(x, axis=(-2, -1), keepdims=True, dtype=np.float64).astype(
        np.result_type(x.dtype, np.float32)
    )


def counts_to_electrons(counts: ArrayT, counts_per_electron: float) -> ArrayT:
    """Convert camera counts to electrons.

    Parameters
    ----------
    counts
        Raw frame(s) in camera counts (dark-subtracted, gain-normalised), shape ``(..., y, x)``.
        Integer arrays are converted to float32.
    counts_per_electron
        The camera's conversion factor (counts one electron produces on average), > 0.

    Returns
    -------
    Same kind as ``counts``, floating point: electrons per pixel.
    """
    if not counts_per_electron > 0:
        raise ConfigError(f"counts_per_electron must be > 0, got {counts_per_electron}")
    c: Any = counts
    if _is_torch(c):
        c = c if c.is_floating_point() else c.float()
        return c / counts_per_electron
    arr = np.asarray(c)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    return arr / arr.dtype.type(counts_per_electron)


def dose_scale(electrons: ArrayT, norm: DoseNormalization | None = None) -> ArrayT:
    """The per-frame dose scale ``s = max(mean(e), min_scale)`` in e-/px.

    Parameters
    ----------
    electrons
        Frame(s) in electrons per pixel, shape ``(..., y, x)``.
    norm
        The normalisation (for ``min_scale``); the default one when omitted.

    Returns
    -------
    Scale of shape ``(..., 1, 1)``, same kind as the input.
    """
    norm = norm or DoseNormalization()
    m = _mean_yx(electrons)
    if _is_torch(m):
        return m.clamp(min=norm.min_scale)
    return np.maximum(m, m.dtype.type(norm.min_scale))


def to_network(electrons: ArrayT, scale: ArrayT) -> ArrayT:
    """Network input ``x = e / s``.

    Parameters
    ----------
    electrons
        Frame(s) in electrons per pixel, shape ``(..., y, x)``; for training targets, the long
        exposure already rescaled to the short exposure's dose.
    scale
        The dose scale of the *input* frame(s) from :func:`dose_scale`, shape ``(..., 1, 1)``.

    Returns
    -------
    Normalised frame(s) with a mean near 1.
    """
    e: Any = electrons
    return e / scale


def from_network(
    output: ArrayT,
    scale: ArrayT,
    norm: DoseNormalization | None = None,
    *,
    network_input: ArrayT | None = None,
    detector: DetectorModel | None = None,
    binning: int = 1,
) -> ArrayT:
    """Electrons per pixel ``d = y * s`` from the network output.

    Parameters
    ----------
    output
        The network's output ``y`` (linear, in network units), shape ``(..., y, x)``.
    scale
        The dose scale the input was divided by, shape ``(..., 1, 1)``.
    norm
        The normalisation; with ``preserve_mean`` and ``network_input`` given, each frame's
        output is shifted by :func:`keep_input_mean` (see the module docstring).
    network_input
        The network input ``x`` (needed for ``preserve_mean``; without it no shift is made).
    detector, binning
        The camera's detector model and binning, for a ``detector_aware`` normalisation.

    Returns
    -------
    The estimate of the expected electrons per pixel at the input's dose, same kind as input.
    """
    y: Any = output
    if network_input is not None:
        y = keep_input_mean(y, network_input, norm, detector=detector, scale=scale, binning=binning)
    return y * scale


def keep_input_mean(
    output: ArrayT,
    network_input: ArrayT,
    norm: DoseNormalization | None = None,
    *,
    detector: DetectorModel | None = None,
    scale: Any = None,
    binning: int = 1,
) -> ArrayT:
    """The network output shifted so each frame's mean is the input's (``preserve_mean``).

    The one place the rule is applied: inference (:func:`from_network`) and training (the loss
    and validation see what inference will deliver) both call it. Without ``detector``, with
    a linear one (counting) or a normalisation that is not ``detector_aware``: ``y + mean(x) -
    mean(y)`` per frame. With a nonlinear detector and ``detector_aware``: ``y + c`` with ``c``
    solving ``mean(g((y + c) * s)) == mean(x * s)`` per frame (Newton's method on the scalar,
    vectorised over the frames; ``g`` the detector's mean response in electrons, tabulated once
    per model and binning, continued linearly below 0 e-: an output below 0 is an estimate, and
    the continuation keeps the solution unique). For torch tensors ``c`` is computed without
    gradient and the result is ``y - mean(y) + (mean(y) + c).detach()``: the gradient is the
    same projection as the linear rule's.

    Parameters
    ----------
    output
        The network's output ``y`` in network units, shape ``(..., y, x)``.
    network_input
        The network input ``x`` it was computed from, same shape.
    norm
        The normalisation; without ``preserve_mean`` the output is returned unchanged.
    detector
        The camera's detector model (electrons), or None for the linear rule.
    scale
        The dose scale ``s`` of the frames, shape ``(..., 1, 1)`` (needed by the
        detector-aware rule on a nonlinear detector).
    binning
        The camera's binning.

    Returns
    -------
    The shifted output, same kind as ``output``.

    Raises
    ------
    ConfigError
        The detector-aware rule on a nonlinear detector without ``scale``.
    """
    norm = norm or DoseNormalization()
    if not norm.preserve_mean:
        return output
    y: Any = output
    if detector is None or not norm.detector_aware or detector.is_linear:
        return y + (_mean_yx(network_input) - _mean_yx(y))
    if scale is None:
        raise ConfigError(
            "the detector-aware normalisation needs the frames' dose scale; pass scale="
        )
    if _is_torch(y):
        return _keep_response_mean_torch(y, network_input, scale, detector, binning)
    return _keep_response_mean_numpy(y, network_input, scale, detector, binning)


#: Newton iterations of the detector-aware shift (it converges in 3-4 on the cases tested)
_NEWTON_STEPS = 8


def _keep_response_mean_numpy(
    y: Any, x: Any, scale: Any, detector: DetectorModel, binning: int
) -> Any:
    s = np.asarray(scale, np.float64)
    v = np.asarray(y, np.float64) * s  # the output in electrons
    target = np.mean(np.asarray(x, np.float64) * s, axis=(-2, -1), keepdims=True)
    if detector.is_affine:
        u = target - detector.dark_offset_e - v.mean(axis=(-2, -1), keepdims=True)
    else:
        u = _solve_shift(v, target, detector, binning)
    dtype = np.result_type(y.dtype, np.float32)
    return (y + (u / s).astype(dtype)).astype(dtype, copy=False)


def _keep_response_mean_torch(
    y: Any, x: Any, scale: Any, detector: DetectorModel, binning: int
) -> Any:
    import torch

    with torch.no_grad():
        s = scale.detach().double()
        v = (y.detach() * scale.detach()).cpu().numpy().astype(np.float64)
        target = (x.detach().double() * s).mean(dim=(-2, -1), keepdim=True).cpu().numpy()
    if detector.is_affine:
        u = target - detector.dark_offset_e - v.mean(axis=(-2, -1), keepdims=True)
    else:
        u = _solve_shift(v, target, detector, binning)
    with torch.no_grad():
        level = torch.from_numpy(u).to(y.device) / s + y.detach().double().mean(
            dim=(-2, -1), keepdim=True
        )
    mean_y = y.mean(dim=(-2, -1), keepdim=True)
    return y - mean_y + level.to(y.dtype)


#: Most bins of the output histogram the shift is solved on, per frame
_MAX_BINS = 1 << 16


def _solve_shift(v: Any, target: Any, detector: DetectorModel, binning: int) -> Any:
    """Per-frame ``u`` (electrons) with ``mean(g(v + u)) == target``, Newton from the flat guess.

    ``mean(g(v + u))`` is evaluated on the histogram of each frame's ``v`` (bins as narrow as
    the response table's finest step, each at the mean of its pixels): the error of that is
    below 2e-5 of the read noise, and one pass over the pixels serves every iteration.
    """
    table = response_table(detector, binning)
    lead = v.shape[:-2]
    flat = v.reshape(-1, v.shape[-2] * v.shape[-1])
    counts, centres = _histogram(flat, float(table.lam[1] - table.lam[0]))
    tgt = np.asarray(target, np.float64).reshape(-1, 1)
    u = table.inverse(tgt) - flat.mean(axis=1, keepdims=True)
    for _ in range(_NEWTON_STEPS):
        w = centres + u
        f = (counts * table.value(w)).sum(axis=1, keepdims=True) - tgt
        step = f / (counts * table.slope(w)).sum(axis=1, keepdims=True)
        u = u - step
        if float(np.max(np.abs(step))) < 1e-7 * (1.0 + float(np.max(np.abs(tgt)))):
            break
    return u.reshape(*lead, 1, 1)


def _histogram(flat: Any, finest: float) -> tuple[Any, Any]:
    """Per row of ``flat``: pixel shares and mean value of bins ``finest`` wide (or wider)."""
    n, pixels = flat.shape
    lo = flat.min(axis=1, keepdims=True)
    width = np.maximum(finest, (flat.max(axis=1, keepdims=True) - lo) / (_MAX_BINS - 1))
    idx = ((flat - lo) / width).astype(np.int64)
    bins = int(idx.max()) + 1
    idx += np.arange(n)[:, None] * bins
    counts = np.bincount(idx.ravel(), minlength=n * bins).reshape(n, bins).astype(np.float64)
    sums = np.bincount(idx.ravel(), weights=flat.ravel(), minlength=n * bins).reshape(n, bins)
    centres = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
    return counts / pixels, centres
