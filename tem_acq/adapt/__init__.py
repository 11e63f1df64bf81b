"""Adapting a model to the user's own specimen, without a long exposure or a ground truth.

::

    from tem_acq.adapt import adapt

    result = adapt(["run1.ome.zarr"], init="default", out="my-specimen")
    result.before, result.after      # ground-truth-free estimates on held-out frames
    result.improved, result.package  # the package is written only when it improved

Noise2Noise on consecutive registered frames of a static field (:mod:`tem_acq.adapt.split`),
trained by :func:`tem_acq.train.train`, judged before and after by :mod:`tem_acq.quality` on
time blocks held back from training (:mod:`tem_acq.adapt.judge`); :mod:`tem_acq.adapt.run`
ties them together; :class:`BackgroundAdapter` runs it in a separate process during an
acquisition. ``docs/design/adaptation.md`` says why each choice was made.
"""

from __future__ import annotations

from tem_acq.adapt.background import BackgroundAdapter, Candidate
from tem_acq.adapt.inputs import FrameSeries, read_inputs
from tem_acq.adapt.judge import IMPROVEMENT_RULE, denoised, improved, judge
from tem_acq.adapt.run import DEFAULT_STEPS, AdaptResult, adapt
from tem_acq.adapt.split import Block, Split, split_blocks, training_pairs

__all__ = [
    "DEFAULT_STEPS",
    "IMPROVEMENT_RULE",
    "AdaptResult",
    "BackgroundAdapter",
    "Block",
    "Candidate",
    "FrameSeries",
    "Split",
    "adapt",
    "denoised",
    "improved",
    "judge",
    "read_inputs",
    "split_blocks",
    "training_pairs",
]
