"""Evaluating a denoiser: on pairs per dose against baselines, and on two real frames.

One job per module:

- :mod:`tem_acq.evaluate.loop`: the evaluation loop (:func:`evaluate_pairs`,
  :func:`evaluate_groups`), dose groups and the report's data classes;
- :mod:`tem_acq.evaluate.targets`: the quality targets and generic checks (:func:`checks_for`);
- :mod:`tem_acq.evaluate.tables`: reports as text (:func:`render_table`) and as model-card
  quality rows (:func:`quality_rows`);
- :mod:`tem_acq.evaluate.figures`: the comparison figure (:func:`figure`);
- :mod:`tem_acq.evaluate.frame_pair`: two real frames of one field (:func:`evaluate_frame_pair`);
- :mod:`tem_acq.evaluate.runner`: loading and timing the model under evaluation.

Writing the quality rows into a package's card is the package's business
(:func:`tem_acq.denoise.package.write_quality`, re-exported here). Evaluation reads pairs
from :mod:`tem_acq.pairs` and never imports :mod:`tem_acq.train`.
"""

from __future__ import annotations

from tem_acq.denoise.package import write_quality
from tem_acq.evaluate.figures import figure
from tem_acq.evaluate.frame_pair import FramePairReport, evaluate_frame_pair
from tem_acq.evaluate.loop import (
    METRIC_HELP,
    MIN_MASK_PX,
    EvalReport,
    MetricRow,
    dose_groups,
    evaluate_groups,
    evaluate_pairs,
    vacuum_from_truth,
)
from tem_acq.evaluate.tables import IMAGE_KINDS, quality_rows, render_table
from tem_acq.evaluate.targets import (
    FLIP_PASS_DB,
    MEAN_SHIFT_PASS_PCT,
    TARGET_DOSE,
    Check,
    checks_for,
)

__all__ = [
    "FLIP_PASS_DB",
    "IMAGE_KINDS",
    "MEAN_SHIFT_PASS_PCT",
    "METRIC_HELP",
    "MIN_MASK_PX",
    "TARGET_DOSE",
    "Check",
    "EvalReport",
    "FramePairReport",
    "MetricRow",
    "checks_for",
    "dose_groups",
    "evaluate_frame_pair",
    "evaluate_groups",
    "evaluate_pairs",
    "figure",
    "quality_rows",
    "render_table",
    "vacuum_from_truth",
    "write_quality",
]
