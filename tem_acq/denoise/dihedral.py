"""The 8 flips/90-degree rotations of an image, for numpy arrays and torch tensors alike.

One convention for training augmentation, test-time augmentation and the flip-consistency
metric: transform ``k`` (0-7) is ``k % 4`` quarter turns of the last two axes, then a
left-right flip when ``k >= 4`` (odd ``k`` transposes the shape).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

Image = TypeVar("Image", np.ndarray, "torch.Tensor")


def dihedral(a: Image, k: int) -> Image:
    """The ``k``-th (0-7) of the 8 flips/90-degree rotations of the last two axes."""
    if isinstance(a, np.ndarray):
        out = np.rot90(a, k % 4, axes=(-2, -1))
        return out[..., ::-1] if k >= 4 else out
    turned = a.rot90(k % 4, dims=(-2, -1))
    return turned.flip(-1) if k >= 4 else turned


def inverse_dihedral(a: Image, k: int) -> Image:
    """Undo :func:`dihedral` ``k``."""
    if isinstance(a, np.ndarray):
        out = a[..., ::-1] if k >= 4 else a
        return np.rot90(out, -(k % 4), axes=(-2, -1))
    flipped = a.flip(-1) if k >= 4 else a
    return flipped.rot90(-(k % 4), dims=(-2, -1))
