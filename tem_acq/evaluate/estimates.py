"""The ground-truth-free estimate where users see it: two frames, a recorded run, pairs stores.

:mod:`tem_acq.quality` measures one pair of exposures of a static field (estimated MSE and
PSNR of raw, best Gaussian and model, with intervals). This module applies it to what
``tem-acq evaluate`` is handed and renders the result:

- :func:`estimate_counts_pair`: two raw frames and their denoised outputs (``--frame-pair``,
  :func:`tem_acq.evaluate.evaluate_frame_pair`);
- :func:`estimate_sequence`: consecutive frames of a recorded acquisition (``--store``):
  non-overlapping pairs ``(0, 1), (2, 3), ...``, those with stage motion or an untrusted
  estimate skipped and counted, summarised over the run and per time block;
- the readable form of an estimate is :meth:`tem_acq.quality.PairEstimate.render` (a table of
  MSE and PSNR with intervals, then one verdict line per output; the reasons when untrusted).

Pairs stores with two or more short exposures per field get theirs in
:func:`tem_acq.evaluate.evaluate_pairs` (``EvalReport.estimates``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from tem_acq.denoise.normalization import counts_to_electrons
from tem_acq.errors import StoreError, TemAcqError
from tem_acq.evaluate.loop import json_ready
from tem_acq.evaluate.runner import tta_mode
from tem_acq.quality import PairEstimate, estimate_pair, saturation_electrons, summarize

if TYPE_CHECKING:
    from tem_acq.denoise import Denoiser

#: Stage positions of two frames further apart than this (micrometres, in x or y) mean the
#: stage moved between them: the pair is skipped. Smaller differences (read-back jitter) are
#: left to the estimate's own registration, which measures the shift and refuses large ones.
STAGE_TOLERANCE_UM = 0.01
#: Time blocks of a run's estimate when no block length is given.
DEFAULT_BLOCKS = 8
#: What a pair skipped because the stage moved is counted as.
STAGE_MOTION = "stage moved"
#: What a pair skipped because the estimate cannot be trusted on it is counted as.
UNTRUSTED = "estimate not trusted"
#: What a pair skipped because a frame could not be read is counted as.
UNREADABLE = "frame unreadable"


class FrameSource(Protocol):
    """Frames read one at a time (an acquisition store's ``raw``, or a plain array)."""

    def __len__(self) -> int: ...  # pragma: no cover

    def __getitem__(self, index: int) -> Any: ...  # pragma: no cover


def output_names(tta: bool) -> tuple[str, ...]:
    """The estimate's rows of the model's outputs: ``model``, and ``tta`` when asked."""
    return ("model", "tta") if tta else ("model",)


def denoise_outputs(
    den: Denoiser, counts: np.ndarray, cpe: float, *, tta: bool
) -> dict[str, np.ndarray]:
    """Raw counts ``(..., y, x)`` denoised (electrons, float64): plain, and with TTA if asked."""
    outputs = {}
    for name in output_names(tta):
        with tta_mode(den, name == "tta"):
            outputs[name] = np.asarray(
                den.denoise(counts, counts_per_electron=cpe), dtype=np.float64
            )
    return outputs


def estimate_counts_pair(
    a: np.ndarray,
    b: np.ndarray,
    counts_per_electron: float,
    a_outputs: dict[str, np.ndarray],
    b_outputs: dict[str, np.ndarray],
) -> PairEstimate:
    """The estimate on two raw frames (counts) of one static field and their denoised outputs.

    Rows: raw, the best Gaussian, then each output (:func:`denoise_outputs`' ``model`` and,
    with TTA, ``tta``). The saturation level is the dtype's maximum count for integer frames.
    """
    return estimate_pair(
        _electrons(a, counts_per_electron),
        _electrons(b, counts_per_electron),
        outputs={name: (a_outputs[name], b_outputs[name]) for name in a_outputs},
        saturation_e=saturation_electrons(np.asarray(a).dtype, counts_per_electron),
    )


def _electrons(counts: np.ndarray, cpe: float) -> np.ndarray:
    return np.asarray(counts_to_electrons(np.asarray(counts), cpe), dtype=np.float64)


def _value(v: float | None, sign: bool = False) -> str:
    """A dB figure with two decimals (``n/a`` where undefined)."""
    if v is None or not math.isfinite(v):
        return "n/a"
    return f"{v:+.2f}" if sign else f"{v:.2f}"


def _interval(ci: tuple[float | None, float | None], sign: bool = False) -> str:
    return f"[{_value(ci[0], sign)}, {_value(ci[1], sign)}]"


def _psnr_cells(est: PairEstimate) -> list[str]:
    """``name PSNR [interval] dB`` for each row of a trusted estimate."""
    return [
        f"{name} {_value(row.psnr_db)} {_interval(row.ci)} dB" for name, row in est.rows.items()
    ]


def _gain_cells(est: PairEstimate) -> list[str]:
    """``gain name +x.xx [lo, hi] dB`` over the best Gaussian, for each output."""
    return [
        f"gain {name} {_value(g.db, True)} {_interval(g.ci, True)} dB"
        for name, g in est.gains.items()
    ]


@dataclass
class SkippedPair:
    """A pair of a run left out of its estimate, and why."""

    frames: tuple[int, int]
    kind: str
    reason: str


@dataclass
class BlockEstimate:
    """The estimate over the pairs of one time block of a run."""

    block: int
    start_s: float
    end_s: float
    estimate: PairEstimate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``pairs``: the estimate's, those of the block)."""
        head = {"block": self.block, "start_s": self.start_s, "end_s": self.end_s}
        return json_ready({**head, **self.estimate.to_dict()})


@dataclass
class SequenceEstimate:
    """:func:`estimate_sequence`'s result: a run's estimate, whole and per time block.

    Attributes
    ----------
    frames
        Frames in the run.
    pairs
        Consecutive non-overlapping pairs ``(0, 1), (2, 3), ...`` considered.
    used
        Pairs whose estimate went into the summary.
    skipped
        The pairs left out, each with its reason.
    summary
        The estimate over every used pair (untrusted, saying so, when every pair was skipped).
    blocks
        The estimate per time block (blocks without a pair are left out).
    """

    frames: int
    pairs: int
    used: int
    skipped: list[SkippedPair]
    summary: PairEstimate
    blocks: list[BlockEstimate] = field(default_factory=list)

    def skipped_by_kind(self) -> dict[str, int]:
        """How many pairs were skipped for each kind of reason."""
        return dict(Counter(s.kind for s in self.skipped))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return json_ready(
            {
                "frames": self.frames,
                "pairs": self.pairs,
                "used": self.used,
                "skipped_count": len(self.skipped),
                "skipped_by_kind": self.skipped_by_kind(),
                "skipped": [
                    {"frames": list(s.frames), "kind": s.kind, "reason": s.reason}
                    for s in self.skipped
                ],
                "summary": self.summary.to_dict(),
                "blocks": [b.to_dict() for b in self.blocks],
            }
        )

    def render(self) -> str:
        """Readable lines: the counts, the summary's table and verdict, one line per block."""
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.skipped_by_kind().items())
        lines = [
            f"{self.frames} frames, {self.pairs} consecutive pairs: {self.used} used, "
            f"{len(self.skipped)} skipped" + (f" ({kinds})" if kinds else "")
        ]
        lines += ["the whole run:", self.summary.render()]
        if self.blocks:
            lines.append("per time block (PSNR dB, model gain over the best Gaussian):")
            lines += [_block_line(b) for b in self.blocks]
        return "\n".join(lines)


def _block_line(block: BlockEstimate) -> str:
    head = f"  {block.start_s:8.1f}-{block.end_s:<8.1f} s  {block.estimate.pairs:3d} pairs  "
    est = block.estimate
    if not est.trusted:
        return head + "no estimate: " + "; ".join(est.problems)
    return head + ", ".join(_psnr_cells(est) + _gain_cells(est))


def estimate_sequence(
    den: Denoiser,
    frames: FrameSource,
    counts_per_electron: float,
    *,
    times_s: np.ndarray,
    stage_um: np.ndarray,
    tta: bool = False,
    blocks: int = DEFAULT_BLOCKS,
    block_s: float | None = None,
) -> SequenceEstimate:
    """The estimate over consecutive frames of a recorded run (``tem-acq evaluate --store``).

    Parameters
    ----------
    den
        The model under evaluation.
    frames
        The run's raw frames (counts), read one at a time (an acquisition store's ``raw``).
    counts_per_electron
        The camera's conversion factor.
    times_s
        ``(n,)`` each frame's time in seconds (NaN where unknown; then blocks follow the
        frames' order).
    stage_um
        ``(n, 2)`` each frame's stage x, y in micrometres (NaN where unknown).
    tta
        Add the model averaged over the 8 flips and rotations (``tta`` rows).
    blocks, block_s
        Summarise per time block: ``blocks`` blocks of equal duration, or blocks of
        ``block_s`` seconds when given.

    Returns
    -------
    The summary and per-block estimates, with every skipped pair and its reason. Pairs are
    ``(0, 1), (2, 3), ...`` (non-overlapping, so their noise is independent); a pair is
    skipped when the stage moved between its frames (:data:`STAGE_TOLERANCE_UM`), when the
    estimate cannot be trusted on it (the field drifted too far or changed, saturation at the
    dtype's maximum count...),
    or when a frame cannot be read (a damaged store: the reason names it).

    Raises
    ------
    TemAcqError
        Fewer than two frames, or bad block settings.
    """
    n = len(frames)
    if n < 2:
        raise TemAcqError(
            f"the run holds {n} frame{'s' if n != 1 else ''}; the estimate needs two or more "
            "consecutive frames of a static field"
        )
    check_blocks(blocks, block_s)
    used: list[tuple[int, PairEstimate]] = []
    skipped: list[SkippedPair] = []
    starts = range(0, n - 1, 2)
    for i in starts:
        outcome = _estimate_one_pair(den, frames, (i, i + 1), counts_per_electron, stage_um, tta)
        if isinstance(outcome, SkippedPair):
            skipped.append(outcome)
        else:
            used.append((i, outcome))
    estimates = [e for _, e in used]
    summary = summarize(estimates)
    times = _pair_times(times_s, n)
    return SequenceEstimate(
        frames=n,
        pairs=len(starts),
        used=len(used),
        skipped=skipped,
        summary=summary,
        blocks=_blocks(used, times, blocks, block_s),
    )


def check_blocks(blocks: int, block_s: float | None) -> None:
    """Refuse block settings :func:`estimate_sequence` cannot use (one line, TemAcqError)."""
    if blocks < 1:
        raise TemAcqError(f"--blocks must be >= 1, got {blocks}")
    if block_s is not None and not (math.isfinite(block_s) and block_s > 0):
        raise TemAcqError(f"--block-s must be > 0 seconds, got {block_s}")


def _estimate_one_pair(
    den: Denoiser,
    frames: FrameSource,
    pair: tuple[int, int],
    cpe: float,
    stage_um: np.ndarray,
    tta: bool,
) -> PairEstimate | SkippedPair:
    """One pair's estimate, or why it was skipped."""
    i, j = pair
    moved = stage_motion(stage_um, i, j)
    if moved is not None:
        return SkippedPair(pair, STAGE_MOTION, moved)
    try:
        counts = np.stack([np.asarray(frames[i]), np.asarray(frames[j])])
    except StoreError as e:
        return SkippedPair(pair, UNREADABLE, str(e))
    out = denoise_outputs(den, counts, cpe, tta=tta)
    est = estimate_counts_pair(
        counts[0],
        counts[1],
        cpe,
        {k: o[0] for k, o in out.items()},
        {k: o[1] for k, o in out.items()},
    )
    if not est.trusted:
        return SkippedPair(pair, UNTRUSTED, "; ".join(est.problems))
    return est


def stage_motion(stage_um: np.ndarray, i: int, j: int) -> str | None:
    """Why frames ``i`` and ``j`` are not of one field (the stage moved), or ``None``.

    Unknown positions (NaN) count as not moved: the estimate's registration still refuses a
    field that moved too far.
    """
    delta = np.abs(np.asarray(stage_um[j], float) - np.asarray(stage_um[i], float))
    delta = np.where(np.isfinite(delta), delta, 0.0)
    if float(delta.max()) <= STAGE_TOLERANCE_UM:
        return None
    return (
        f"the stage moved {float(np.hypot(*delta)):.3g} um between frames {i} and {j} "
        f"(more than {STAGE_TOLERANCE_UM:g} um)"
    )


def _pair_times(times_s: np.ndarray, n: int) -> np.ndarray:
    """Each frame's time (s from the first frame), or its index when any time is unknown."""
    t = np.asarray(times_s, dtype=np.float64)
    if t.shape != (n,) or not np.all(np.isfinite(t)):
        return np.arange(n, dtype=np.float64)
    return t - t[0]


def _blocks(
    used: Sequence[tuple[int, PairEstimate]],
    times: np.ndarray,
    blocks: int,
    block_s: float | None,
) -> list[BlockEstimate]:
    """The used pairs summarised per time block (by the time of each pair's first frame)."""
    if not used:
        return []
    width = block_s if block_s is not None else max(float(times[-1]) / blocks, 0.0)
    groups: dict[int, list[PairEstimate]] = {}
    for i, est in used:
        k = 0 if width <= 0 else int(float(times[i]) // width)
        if block_s is None:
            k = min(k, blocks - 1)
        groups.setdefault(k, []).append(est)
    end = float(times[-1])
    return [
        BlockEstimate(
            block=k,
            start_s=k * width,
            end_s=end if block_s is None and k == blocks - 1 else (k + 1) * width,
            estimate=summarize(ests),
        )
        for k, ests in sorted(groups.items())
    ]


@dataclass
class DoseEstimate:
    """The estimate over the pairs of short exposures of one field, at one dose of a pairs set.

    Attributes
    ----------
    dose
        The dose group (e-/px, as :func:`tem_acq.evaluate.dose_groups` labels it).
    pairs
        Pairs of short exposures of one field measured (trusted or not; the estimate's own
        ``pairs`` counts the trusted ones).
    estimate
        :func:`tem_acq.quality.summarize` over them.
    """

    dose: float
    pairs: int
    estimate: PairEstimate

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        head = {"dose_group_e_per_px": self.dose, "pairs_of_shorts": self.pairs}
        return json_ready({**head, **self.estimate.to_dict()})

    def line(self) -> str:
        """One readable line: the PSNR of each row and the verdict (or why there is none)."""
        head = (
            f"ground-truth-free estimate at {self.dose:g} e-/px ({self.pairs} pair"
            f"{'' if self.pairs == 1 else 's'} of short exposures of one field): "
        )
        est = self.estimate
        if not est.trusted:
            return head + "no estimate: " + "; ".join(est.problems)
        verdicts = "; ".join(est.verdict(n) for n in est.gains)
        return head + ", ".join(_psnr_cells(est)) + "; " + verdicts


class ShortPairs:
    """Collects the short exposures of each field as an evaluation denoises them.

    Consecutive short exposures of one field at one dose are paired (the first with the
    second, the third with the fourth...), each pair measured with the model's outputs the
    evaluation already computed (:func:`estimate_counts_pair`), and summarised per dose.
    """

    def __init__(self) -> None:
        self._waiting: dict[tuple[int, float], tuple[np.ndarray, dict[str, np.ndarray]]] = {}
        self._done: dict[float, list[PairEstimate]] = {}

    def add(
        self, field_id: int, dose: float, counts: np.ndarray, cpe: float, denoised: np.ndarray
    ) -> None:
        """One short exposure (raw counts) of ``field_id`` and the model's output (electrons)."""
        key = (field_id, dose)
        first = self._waiting.pop(key, None)
        if first is None:
            self._waiting[key] = (np.asarray(counts), {"model": denoised})
            return
        est = estimate_counts_pair(first[0], counts, cpe, first[1], {"model": denoised})
        self._done.setdefault(dose, []).append(est)

    def results(self) -> list[DoseEstimate]:
        """The estimate per dose (doses without a pair of short exposures are left out)."""
        return [
            DoseEstimate(dose=dose, pairs=len(ests), estimate=summarize(ests))
            for dose, ests in sorted(self._done.items())
        ]
