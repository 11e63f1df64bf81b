"""Judging a model on held-out frames with the ground-truth-free estimate, before and after.

Each model denoises the held-out blocks once (:func:`denoised`); :func:`judge` runs
:func:`tem_acq.quality.estimate_frames` on the blocks' consecutive pairs with those outputs and
summarises every pair with :func:`tem_acq.quality.summarize`. After training, both models'
outputs go into one estimate, so their rows share the same frames, registration and bootstrap
draws: the adapted model's gain over the base model (:func:`tem_acq.quality.gain`) is a paired
comparison, far tighter than two separate intervals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from tem_acq.adapt.inputs import FrameSeries
from tem_acq.adapt.split import Block
from tem_acq.errors import TemAcqError

if TYPE_CHECKING:
    from tem_acq.quality import Gain, PairEstimate

#: The rule that decides whether an adapted model improved, in the words the card records.
IMPROVEMENT_RULE = (
    "the adapted model's error on the held-out frames (estimated without ground truth) is "
    "below the base model's beyond the 95 % interval of their difference (paired bootstrap "
    "over tiles of the same frames); where both errors are measurable that is its gain's "
    "interval above 0 dB"
)

Electrons = Callable[[np.ndarray], np.ndarray]


def denoised(
    inputs: Sequence[FrameSeries], blocks: Sequence[Block], denoise: Electrons
) -> list[np.ndarray]:
    """``denoise`` (electrons in, electrons out) of each block's frames, one stack per block."""
    return [
        np.asarray(denoise(inputs[b.series].electrons[b.frames]), dtype=np.float32) for b in blocks
    ]


def judge(
    inputs: Sequence[FrameSeries],
    blocks: Sequence[Block],
    outputs: Mapping[str, Sequence[np.ndarray]],
    *,
    seed: int = 0,
) -> PairEstimate:
    """The estimate of each named output (stacks from :func:`denoised`) over the blocks.

    Returns one summarised estimate with rows ``raw``, ``gaussian`` and each output's name;
    ``trusted`` is False (with the problems) when no pair of the blocks can be trusted.
    """
    from tem_acq.quality import estimate_frames, summarize

    estimates = []
    for k, block in enumerate(blocks):
        series = inputs[block.series]
        estimates += estimate_frames(
            series.electrons[block.frames],
            outputs={name: stacks[k] for name, stacks in outputs.items()},
            saturation_e=series.saturation_e,
            seed=seed,
        )
    return summarize(estimates)


def require_trusted(estimate: PairEstimate) -> None:
    """Refuse to adapt when the held-out frames cannot judge a model (before any training).

    Raises
    ------
    TemAcqError
        Naming why the estimate cannot be trusted.
    """
    if not estimate.trusted:
        why = "; ".join(estimate.problems) or "no pair of held-out frames could be estimated"
        raise TemAcqError(
            f"the held-out frames cannot judge a model ({why}); record more frames of a "
            "static field (no stage moves, little drift, not saturated)"
        )


def model_view(estimate: PairEstimate, name: str) -> PairEstimate:
    """``estimate`` with only ``raw``, ``gaussian`` and ``name`` (renamed ``"model"``)."""
    keep = {k: v for k, v in estimate.rows.items() if k in ("raw", "gaussian")}
    gains = {"model": estimate.gains[name]} if name in estimate.gains else {}
    draws = {k: v for k, v in estimate.draws.items() if k in keep}
    if name in estimate.draws:
        draws["model"] = estimate.draws[name]
    return dataclasses.replace(
        estimate, rows={**keep, "model": estimate.rows[name]}, gains=gains, draws=draws
    )


def improved(adapted_over_base: Gain) -> bool:
    """Whether the comparison meets :data:`IMPROVEMENT_RULE`."""
    return adapted_over_base.better
