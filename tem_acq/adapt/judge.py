"""Judging a model on held-out frames with the ground-truth-free estimate, before and after.

Both judgements use :func:`tem_acq.quality.estimate_frames` on the same held-out blocks (pairs
``(0, 1), (2, 3), ...`` of each block) with the same seed, summarised over every pair with
:func:`tem_acq.quality.summarize`; only the model differs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from tem_acq.adapt.inputs import FrameSeries
from tem_acq.adapt.split import Block
from tem_acq.errors import TemAcqError

if TYPE_CHECKING:
    from tem_acq.quality import PairEstimate

#: The rule that decides whether an adapted model improved, in the words the card records.
IMPROVEMENT_RULE = (
    "the adapted model's estimated MSE interval on the held-out frames lies wholly below the "
    "base model's (its upper bound below the base model's lower bound)"
)

Electrons = Callable[[np.ndarray], np.ndarray]


def judge(
    inputs: Sequence[FrameSeries],
    blocks: Sequence[Block],
    denoise: Electrons,
    *,
    seed: int = 0,
) -> PairEstimate:
    """The estimate of ``denoise`` (electrons in, electrons out) over the held-out blocks.

    Returns one summarised estimate whose ``"model"`` row is ``denoise``'s; ``trusted`` is
    False (with the problems) when no pair of the blocks can be trusted.
    """
    from tem_acq.quality import estimate_frames, summarize

    estimates = []
    for block in blocks:
        series = inputs[block.series]
        estimates += estimate_frames(
            series.electrons[block.frames],
            denoisers={"model": denoise},
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


def improved(before: PairEstimate, after: PairEstimate) -> bool:
    """Whether ``after`` beats ``before`` by :data:`IMPROVEMENT_RULE` (both must be trusted)."""
    if not (before.trusted and after.trusted):
        return False
    return after.rows["model"].mse_ci[1] < before.rows["model"].mse_ci[0]
