"""``adapt``: fine-tune a model on a user's own frames, judge it, write it only when better.

1. Read the inputs (:mod:`tem_acq.adapt.inputs`) and claim the output, before any work.
2. Split consecutive frame pairs into time blocks; hold a fifth back (:mod:`tem_acq.adapt.split`).
3. Judge the base model on the held-out blocks with the ground-truth-free estimate
   (:mod:`tem_acq.adapt.judge`); refuse when those frames cannot judge a model.
4. Train with Noise2Noise on the other blocks (:func:`tem_acq.train.train`, from the base
   model's weights, in a private folder beside the output), until ``max_steps``, ``minutes``
   or Ctrl-C (the best validated weights so far are kept).
5. Judge the adapted model on the same held-out blocks; write the package to ``out`` only when
   it improved by :data:`~tem_acq.adapt.judge.IMPROVEMENT_RULE` (or ``force``), with the
   adaptation (base model's hash, inputs' hashes, steps, time, both estimates) in its card.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tem_acq.adapt.inputs import FrameSeries, read_inputs
from tem_acq.adapt.judge import (
    IMPROVEMENT_RULE,
    denoised,
    improved,
    judge,
    model_view,
    require_trusted,
)
from tem_acq.adapt.split import Split, split_blocks, training_pairs
from tem_acq.errors import ConfigError
from tem_acq.outputs import claim_output
from tem_acq.quality import gain

if TYPE_CHECKING:
    from tem_acq.denoise import Denoiser, ModelCard
    from tem_acq.quality import Gain, PairEstimate
    from tem_acq.train import TrainConfig, TrainResult

#: Default optimiser steps (a few minutes of ``default`` at 128 px crops on 2 CPU cores).
DEFAULT_STEPS = 300
#: Side of the training crops (px), smaller for smaller frames.
CROP_PX = 128
#: Peak learning rate (half the training default: fine-tuning starts from a trained model).
LEARNING_RATE = 5e-5
#: Steps of linear warmup: the first steps barely move the base model's weights.
WARMUP_STEPS = 50


@dataclass
class AdaptResult:
    """What an adaptation found and did.

    Attributes
    ----------
    before, after
        The estimates of the base and the adapted model on the held-out frames.
    gain
        The adapted model's gain over the base model (dB, paired 95 % interval).
    improved
        Whether the adapted model improved by :data:`~tem_acq.adapt.judge.IMPROVEMENT_RULE`.
    package
        The package written, or ``None`` (not improved and not forced).
    steps
        Optimiser steps done.
    wall_s
        Wall time of the whole adaptation (seconds).
    interrupted
        Ctrl-C stopped the training (the best weights so far were judged).
    device
        Where it trained.
    counts
        How many frames and pairs went where (``train_pairs``, ``held_out_pairs``, ...).
    """

    before: PairEstimate
    after: PairEstimate
    gain: Gain
    improved: bool
    package: Path | None
    steps: int
    wall_s: float
    interrupted: bool
    device: str
    counts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``before``, ``after`` (estimate dicts), ``improved``, ``package``..."""
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "gain_over_base_db": self.gain.to_dict(),
            "improved": self.improved,
            "rule": IMPROVEMENT_RULE,
            "package": None if self.package is None else str(self.package),
            "steps": self.steps,
            "wall_s": round(self.wall_s, 2),
            "interrupted": self.interrupted,
            "device": self.device,
            **self.counts,
        }


def adapt(
    inputs: Sequence[str | os.PathLike[str]],
    init: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    counts_per_electron: float | None = None,
    max_steps: int = DEFAULT_STEPS,
    minutes: float | None = None,
    force: bool = False,
    overwrite: bool = False,
    device: str = "auto",
    seed: int = 0,
    progress: bool | None = None,
    say: Callable[[str], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> AdaptResult:
    """Adapt ``init`` to the frames of ``inputs``; write it to ``out`` only when it improved.

    Parameters
    ----------
    inputs
        Acquisition stores and frame stacks (TIFF, NPY, MRC) of static fields.
    init
        The model to start from (a package name or folder).
    out
        The package folder to write.
    counts_per_electron
        The camera's conversion factor (overrides what the inputs say).
    max_steps, minutes
        Stop training after this many steps, or after this many minutes of training.
    force
        Write the package even when it did not improve.
    overwrite
        Replace an existing package at ``out``.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (training and judging).
    seed
        Seeds the training and the estimate's bootstrap.
    progress
        Show the training's progress bar; ``None``: when stderr is a terminal.
    say
        Called with a line at each stage (judging, training...).
    stop
        Asked after every training step: True ends the training there (as ``minutes`` does).

    Returns
    -------
    What was found; ``package`` is ``None`` when nothing was written.

    Raises
    ------
    ConfigError
        Bad settings or inputs (see :func:`~tem_acq.adapt.inputs.read_inputs`), or held-out
        frames that cannot judge a model; all before any training.
    """
    from tem_acq.denoise import load_model
    from tem_acq.denoise.package import package_folder

    t_start = time.perf_counter()
    tell = say or (lambda _line: None)
    _check_settings(max_steps, minutes)
    series = read_inputs(inputs, counts_per_electron)
    out_path = Path(out)
    claim_output(
        out_path,
        overwrite=overwrite,
        kind="model package",
        inputs=[*inputs, package_folder(init)],
    )
    split = split_blocks(series)
    base = load_model(init, device=device)
    held = sum(len(b.frames) // 2 for b in split.held_out)
    tell(f"judging {base.card.name} on {held} held-out frame pairs")
    base_out = denoised(series, split.held_out, _electrons(base))
    require_trusted(judge(series, split.held_out, {"model": base_out}, seed=seed))
    pairs, dropped = training_pairs(series, split.train, detector=base.card.detectors[0])
    config = _config(max_steps, min(series[0].counts.shape[1:]), seed)
    deadline = None if minutes is None else time.perf_counter() + 60.0 * minutes

    def should_stop() -> bool:
        timed_out = deadline is not None and time.perf_counter() >= deadline
        return timed_out or (stop is not None and stop())

    work = Path(tempfile.mkdtemp(prefix=f".{out_path.name}.adapt-", dir=_parent(out_path)))
    try:
        tell(f"training on {len(pairs) // 2} frame pairs ({dropped} drifted or blank left out)")
        trained = _train(pairs, config, init, work, out_path.name, device, progress, should_stop)
        tell("judging the adapted model on the same held-out frames")
        adapted = load_model(trained.package, device=device)
        new_out = denoised(series, split.held_out, _electrons(adapted))
        both = judge(series, split.held_out, {"base": base_out, "adapted": new_out}, seed=seed)
        adapted_gain = gain(both, "adapted", over="base")
        better = improved(adapted_gain)
        result = AdaptResult(
            before=model_view(both, "base"),
            after=model_view(both, "adapted"),
            gain=adapted_gain,
            improved=better,
            package=None,
            steps=trained.steps,
            wall_s=time.perf_counter() - t_start,
            interrupted=trained.interrupted,
            device=str(base.device),
            counts=_counts(split, len(pairs) // 2, dropped),
        )
        if better or force:
            _record(trained.package, base, series, result, init=init, forced=not better)
            _move_into_place(trained.package, out_path)
            result.package = out_path
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_settings(max_steps: int, minutes: float | None) -> None:
    if max_steps < 1:
        raise ConfigError(f"--max-steps must be >= 1, got {max_steps}")
    if minutes is not None and not (minutes > 0 and minutes < float("inf")):
        raise ConfigError(f"--minutes must be a finite number > 0, got {minutes}")


def _electrons(denoiser: Denoiser) -> Callable[[Any], Any]:
    """The denoiser as a function of electrons (what the estimate calls)."""
    return lambda frame: denoiser.denoise(frame, counts_per_electron=1.0)


def _parent(out: Path) -> Path:
    """The output's folder, created (``claim_output`` checked it may be)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return out.parent


def _config(max_steps: int, frame_side: int, seed: int) -> TrainConfig:
    """The fine-tuning's :class:`~tem_acq.train.TrainConfig` (Noise2Noise, L2, small crops)."""
    from tem_acq.train import TrainConfig

    crop = min(CROP_PX, frame_side // 32 * 32)
    if crop < 32:
        raise ConfigError(
            f"frames of {frame_side} px are too small to adapt on (at least 32 px a side)"
        )
    return TrainConfig(
        mode="noise2noise",
        crop=crop,
        max_steps=max_steps,
        lr=LEARNING_RATE,
        warmup_steps=WARMUP_STEPS,
        val_fraction=0.1,
        val_every=max(1, min(50, max_steps // 4)),
        checkpoint_every=max(1, min(100, max_steps)),
        seed=seed,
        description="",
    )


def _train(
    pairs: Any,
    config: TrainConfig,
    init: str | os.PathLike[str],
    work: Path,
    name: str,
    device: str,
    progress: bool | None,
    should_stop: Callable[[], bool],
) -> TrainResult:
    """Train into ``work/package`` (checkpoints in ``work/checkpoint``)."""
    from tem_acq.train import train

    return train(
        pairs,
        config,
        work / "package",
        init=init,
        device=device,
        checkpoint_dir=work / "checkpoint",
        name=name,
        progress=progress,
        should_stop=should_stop,
    )


def _counts(split: Split, train_pairs: int, dropped: int) -> dict[str, int]:
    return {
        "train_pairs": train_pairs,
        "train_pairs_left_out": dropped,
        "held_out_pairs": sum(len(b.frames) // 2 for b in split.held_out),
        "held_out_blocks": len(split.held_out),
        "unpaired_frames": split.skipped_frames,
    }


def _record(
    package: Path,
    base: Denoiser,
    series: Sequence[FrameSeries],
    result: AdaptResult,
    *,
    init: str | os.PathLike[str],
    forced: bool,
) -> ModelCard:
    """Write the adaptation into the new package's card (the package hash stays valid)."""
    from tem_acq.denoise.card import Adaptation, AdaptedInput, read_card, write_card

    card = read_card(package / "card.json")
    adaptation = Adaptation(
        base_model=str(init),
        base_package_hash=base.package_hash,
        inputs=[AdaptedInput(source=s.source, sha256=s.sha256, frames=len(s)) for s in series],
        steps=result.steps,
        wall_s=round(result.wall_s, 2),
        device=result.device,
        before=result.before.to_dict(),
        after=result.after.to_dict(),
        gain_over_base_db=result.gain.to_dict(),
        improved=result.improved,
        rule=IMPROVEMENT_RULE,
        forced=forced,
        interrupted=result.interrupted,
    )
    detectors = sorted({s.detector for s in series if s.detector}) or base.card.detectors
    description = (
        f"{base.card.name} adapted by tem-acq to {sum(len(s) for s in series)} frames of "
        f"{len(series)} input(s) (Noise2Noise on consecutive frames, {result.steps} steps); "
        + ("improved" if result.improved else "NOT improved (written with --force)")
        + " on held-out frames by the ground-truth-free estimate"
    )
    new = card.model_validate(
        {
            **card.model_dump(),
            "adaptation": adaptation.model_dump(),
            "detectors": detectors,
            "description": description,
        }
    )
    write_card(new, package / "card.json")
    return new


def _move_into_place(package: Path, out: Path) -> None:
    """Rename the finished package to ``out`` (replacing it: ``claim_output`` allowed that)."""
    if out.exists():
        shutil.rmtree(out)
    package.rename(out)
