"""Consecutive frame pairs, time blocks held back for judging, and the Noise2Noise pairs.

Frames ``(0, 1), (2, 3), ...`` of each input form pairs (never across a stage move: the
store's per-frame table says where the stage moved, and a run of frames restarts there). The
pairs are grouped into time blocks of consecutive pairs; a fifth of the blocks, spread evenly
over the recording (:func:`held_out_positions`), are held back and only ever judged, the rest
are trained on. In a training pair each frame is the other's target: frame ``b`` is moved onto
frame ``a`` by the measured shift (:mod:`tem_acq.registration`), and back.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tem_acq.adapt.inputs import FrameSeries
from tem_acq.errors import ConfigError
from tem_acq.pairs import PairArrays
from tem_acq.registration import register

#: Fraction of the time blocks held back for judging.
HELD_OUT_FRACTION = 0.2
#: About this many time blocks per adaptation (fewer when there are fewer pairs).
TARGET_BLOCKS = 10
#: A pair whose frames moved more than this (px) is not trained on (the field drifted away).
MAX_TRAIN_SHIFT_PX = 16.0


@dataclass(frozen=True)
class Block:
    """A time block: consecutive frame pairs of one input.

    Attributes
    ----------
    series
        Which input (index into the inputs).
    frames
        The frame indices, ``2 * pairs`` of them: pairs ``(frames[0], frames[1]), ...``.
    """

    series: int
    frames: np.ndarray


@dataclass
class Split:
    """Which blocks train and which are held back.

    Attributes
    ----------
    train, held_out
        The blocks of each side (never sharing a frame).
    skipped_frames
        Frames left unpaired because the stage moved (or a run had an odd length).
    """

    train: list[Block]
    held_out: list[Block]
    skipped_frames: int = 0


def frame_pairs(series: FrameSeries) -> tuple[list[tuple[int, int]], int]:
    """Consecutive, non-overlapping frame pairs of one input, restarting at stage moves.

    Returns the pairs and how many frames were left without a partner.
    """
    starts = [0, *np.flatnonzero(series.moved).tolist(), len(series)]
    pairs: list[tuple[int, int]] = []
    for lo, hi in itertools.pairwise(starts):
        pairs += [(i, i + 1) for i in range(lo, hi - 1, 2)]
    return pairs, len(series) - 2 * len(pairs)


def held_out_positions(n_blocks: int, fraction: float = HELD_OUT_FRACTION) -> list[int]:
    """The blocks held back: ``round(fraction * n)`` (at least one), spread evenly in time."""
    k = min(max(1, round(fraction * n_blocks)), n_blocks - 1)
    return sorted({int((j + 0.5) * n_blocks / k) for j in range(k)})


def split_blocks(inputs: Sequence[FrameSeries]) -> Split:
    """Time blocks of every input, a fifth of them held back (see the module's doc).

    Raises
    ------
    ConfigError
        Fewer than two pairs in all (one to train on, one to judge).
    """
    per_input = [frame_pairs(s) for s in inputs]
    n_pairs = sum(len(p) for p, _ in per_input)
    if n_pairs < 2:
        raise ConfigError(
            f"the inputs give {n_pairs} pair(s) of consecutive frames of a static field; "
            "adaptation needs at least 2 (4 frames: one pair to train on, one to judge)"
        )
    per_block = max(1, n_pairs // TARGET_BLOCKS)
    blocks = []
    for index, (pairs, _) in enumerate(per_input):
        for lo in range(0, len(pairs), per_block):
            chunk = pairs[lo : lo + per_block]
            blocks.append(Block(index, np.array([f for pair in chunk for f in pair])))
    held = set(held_out_positions(len(blocks)))
    return Split(
        train=[b for i, b in enumerate(blocks) if i not in held],
        held_out=[b for i, b in enumerate(blocks) if i in held],
        skipped_frames=sum(s for _, s in per_input),
    )


def training_pairs(
    inputs: Sequence[FrameSeries], blocks: Sequence[Block], detector: str
) -> tuple[PairArrays, int]:
    """Noise2Noise pairs of the training blocks: each frame pair is one field.

    Each pair's shift is measured (frame ``b`` against frame ``a``); a pair that moved more
    than :data:`MAX_TRAIN_SHIFT_PX` or has a blank frame is left out. ``detector`` is used
    where an input does not say. Returns the pairs and how many were left out.
    """
    low, cpe, dose, shift, det, px = [], [], [], [], [], []
    dropped = 0
    for block in blocks:
        s = inputs[block.series]
        electrons = s.electrons[block.frames]
        for k in range(0, len(block.frames), 2):
            a, b = electrons[k], electrons[k + 1]
            doses = (float(a.mean()), float(b.mean()))
            moved = register(b, a).shift  # a(y) ~ b(y - moved)
            if min(doses) <= 0 or np.hypot(*moved) > MAX_TRAIN_SHIFT_PX:
                dropped += 1
                continue
            low += [s.counts[block.frames[k]], s.counts[block.frames[k + 1]]]
            cpe += [s.counts_per_electron] * 2
            dose += list(doses)
            shift += [(0.0, 0.0), moved]
            det += [s.detector or detector] * 2
            px += [s.pixel_size_A if s.pixel_size_A is not None else np.nan] * 2
    if not low:
        raise ConfigError(
            "no training pair is left: every pair of consecutive frames drifted more than "
            f"{MAX_TRAIN_SHIFT_PX:g} px or was blank; record frames of a static field"
        )
    n = len(low)
    pairs = PairArrays(
        low=np.stack(low),
        high=None,
        counts_per_electron=np.array(cpe),
        low_dose=np.array(dose),
        high_dose=np.array(dose),
        field=np.arange(n) // 2,
        shift=np.array(shift),
        detector=det,
        pixel_size_A=np.array(px),
        source="; ".join(s.source for s in inputs),
    )
    return pairs, dropped
