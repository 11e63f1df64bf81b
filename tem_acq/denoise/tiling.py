"""Tiling large frames without seams: receptive field, tile layout and blending weights.

A convolutional network's output at a pixel depends only on inputs within its receptive field
(radius ``R``). If each tile's output is used only at least ``R`` pixels away from the tile's
inner borders, the stitched result equals the untiled one up to float rounding. So the default
overlap is ``2 R`` plus a small blend zone, tile origins stay on the network's stride grid
(else strided layers would see a shifted sampling grid), and the weights ramp from 0 to 1 only
inside the zone where both neighbouring tiles are exact: the blending then hides nothing and
simply makes any residual difference (e.g. with a smaller, user-chosen overlap) fade instead of
jump. Networks with global operations (squeeze-excitation) have an unbounded receptive field;
for them tiles can only approximate the untiled output.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def _ceil_to(v: float, m: int) -> int:
    return int(-(-v // m) * m)


def receptive_radius(
    model: torch.nn.Module, multiple: int, probe: int = 512, max_probe: int = 1024
) -> int | None:
    """Radius (pixels) of the network's theoretical receptive field, or ``None`` if global.

    A copy of the model is made "transparent": activations become identities, every
    convolution sums its spatial taps and averages over input channels (weights
    ``1 / in_channels``), batch norms become identities, biases zero and max pools average
    pools. With an all-ones input each input pixel inside the receptive field then gets a
    gradient at the centre output pixel equal to its number of paths (>= 1): no dead or
    saturated unit hides a path and nothing underflows, unlike a gradient probe on the real
    weights. Values grow at most ~9x per 3x3 layer, far from float32's range for U-Nets.

    Parameters
    ----------
    model
        The network (not modified).
    multiple
        The network's input multiple (probe sizes are rounded to it).
    probe, max_probe
        First probe size, doubled up to ``max_probe`` while the field reaches its border.

    Returns
    -------
    The radius in pixels, or ``None`` when it reaches the border of the largest probe
    (global operations, or a radius of ``max_probe / 2`` or more).
    """
    import torch

    # Callers may be inside inference mode; the probe needs autograd on normal tensors.
    with torch.inference_mode(False), torch.enable_grad():
        return _probe(model, multiple, probe, max_probe)


def _probe(model: torch.nn.Module, multiple: int, probe: int, max_probe: int) -> int | None:
    import torch
    from torch import nn

    net = copy.deepcopy(model).float().cpu().eval().requires_grad_(False)  # grad of x only
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            mod_name = type(child).__module__
            if mod_name == "torch.nn.modules.activation" or mod_name.startswith(
                "timm.layers.activations"
            ):
                setattr(parent, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(
                    parent,
                    name,
                    nn.AvgPool2d(
                        child.kernel_size, child.stride, child.padding, ceil_mode=child.ceil_mode
                    ),
                )
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                mod.weight.fill_(1.0 / mod.weight.shape[1])
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                if mod.running_mean is not None and mod.running_var is not None:
                    mod.running_mean.zero_()
                    mod.running_var.fill_(1.0 - mod.eps)
                if mod.affine:
                    mod.weight.fill_(1.0)
                    mod.bias.zero_()
    size = _ceil_to(probe, multiple)
    while size <= max_probe:
        x = torch.ones(1, 1, size, size, requires_grad=True)
        c = size // 2
        net(x)[0, 0, c, c].backward()
        assert x.grad is not None
        hit = torch.nonzero(x.grad[0, 0] != 0)  # NaN/inf (overflow in gating) counts too
        radius = int((hit - c).abs().max()) if len(hit) else 0
        if radius < c - 1:
            return radius
        size *= 2
    return None


def axis_plan(n: int, max_tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Tile length and start offsets along one axis of ``n`` pixels.

    Uses the fewest tiles of at most ``max_tile`` pixels that overlap by at least ``overlap``,
    all the same length (one compiled shape) and starting on multiples of ``multiple``.

    Parameters
    ----------
    n
        Axis length, a multiple of ``multiple``.
    max_tile
        Largest tile length (>= 2 * overlap + 2 * multiple).
    overlap
        Minimum overlap between neighbouring tiles.
    multiple
        The network's stride multiple.

    Returns
    -------
    ``(tile_length, starts)``.
    """
    if n <= max_tile:
        return n, [0]
    k = 2
    while True:
        # +multiple absorbs rounding the starts down to the grid (see the proof in the tests).
        t = _ceil_to((n + (k - 1) * (overlap + multiple)) / k, multiple)
        if t <= max_tile:
            break
        k += 1
    starts = [(i * (n - t) // (k - 1)) // multiple * multiple for i in range(k)]
    starts[-1] = n - t
    return t, starts


def ramp(
    length: int, left: bool, right: bool, overlap: int, exact_margin: int | None, device: object
) -> torch.Tensor:
    """1-D blending weight of a tile: 0 near inner borders, a linear ramp, then 1.

    Parameters
    ----------
    length
        Tile length.
    left, right
        Whether the tile has a neighbour on that side (no ramp at the frame's own border).
    overlap
        The minimum overlap with neighbours.
    exact_margin
        Receptive-field radius when ``overlap >= 2 * exact_margin``: the ramp then lies where
        both neighbours are exact. Otherwise the outer quarter of the overlap gets weight 0.
    device
        torch device of the weights.

    Returns
    -------
    float32 weights of shape ``(length,)``.
    """
    import torch

    z = exact_margin if exact_margin is not None and overlap >= 2 * exact_margin else overlap // 4
    width = max(overlap - 2 * z, 1)
    i = torch.arange(length, device=device, dtype=torch.float32)  # type: ignore[call-overload]
    w = torch.ones(length, device=device)  # type: ignore[call-overload]
    if left:
        w = torch.minimum(w, ((i + 0.5 - z) / width).clamp(0, 1))
    if right:
        w = torch.minimum(w, ((length - i - 0.5 - z) / width).clamp(0, 1))
    return w
