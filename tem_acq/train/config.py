"""Training configuration: the one object that says how a model is trained.

A :class:`TrainConfig` is a strict pydantic model (unknown keys are errors, so a typo in a YAML
file is reported, not ignored). It is written beside the package as ``training.json`` so that a
model always says how it was made.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from tem_acq.errors import ConfigError
from tem_acq.schema import StrictModel, as_model

Loss = Literal["l1", "l2", "l1+ssim"]
Mode = Literal["supervised", "noise2noise"]
Registration = Literal["none", "integer", "fourier"]
Precision = Literal["auto", "fp32", "bf16"]


class TrainConfig(StrictModel):
    """How to train a denoiser on (short, long) or (short, short) pairs.

    Attributes
    ----------
    encoder
        smp encoder name; ``None`` is the paper's resnet18 (or, with ``fast``, the fast preset).
    fast
        Use :data:`~tem_acq.denoise.FAST_CONFIG` (MobileNetV3-small, depth 4, narrow decoder).
    depth
        U-Net depth (number of encoder stages used, stride ``2 ** depth``); ``None`` keeps
        the preset's (5 for the paper's model, 4 for ``fast``).
    decoder_channels
        Width of each decoder stage, one per level (``depth`` of them); ``None`` keeps the
        preset's widths of the finest ``depth`` levels.
    mode
        ``"supervised"``: short exposure -> long exposure rescaled to the short's dose.
        ``"noise2noise"``: short -> another short of the same field (beam-sensitive specimens,
        no long exposure needed).
    loss
        ``"l1"`` (the paper's), ``"l2"``, or ``"l1+ssim"`` (``l1 + ssim_weight * (1 - SSIM)``).
        ``None``: ``l1`` for supervised; ``l2`` for noise2noise, because only the squared error
        makes a noisy target's expectation the optimum (L1 would learn the Poisson median,
        biased at a few electrons per pixel).
    ssim_weight
        Weight of ``1 - SSIM`` in ``l1+ssim``.
    crop
        Side of the square training crops (pixels; a multiple of the U-Net's stride 2**depth).
    batch_size
        Crops per step (the paper: 4).
    max_steps
        Optimiser steps; when ``epochs`` is also given, the smaller number wins.
    epochs
        Passes over the training pairs, counted as ``steps * batch_size / n_train_pairs``.
    lr
        Peak learning rate of Adam (the paper: 1e-4).
    weight_decay
        Adam's L2 weight decay.
    schedule
        ``"cosine"``: linear warmup for ``warmup_steps`` then cosine decay to
        ``lr * min_lr_fraction``; ``"constant"``: the paper's fixed rate (after warmup).
    warmup_steps
        Linear warmup length.
    min_lr_fraction
        Final learning rate as a fraction of ``lr`` (cosine only).
    augment
        Draw one of the 8 flips/90-degree rotations per crop (the paper used horizontal flips
        only; the full dihedral group makes the model's output nearly equivariant).
    registration
        How the target is aligned to the input using the pair's shift: ``"integer"`` rolls by
        the rounded shift, ``"fourier"`` applies the sub-pixel shift in Fourier space, ``"none"``
        ignores shifts. The border that wrapped around (``ceil(|shift|) + 1`` px) is never
        cropped.
    measure_missing_shifts
        Pairs without a recorded shift get one from
        :func:`~tem_acq.registration.phase_correlation_shift` (else they count as unshifted).
    val_fraction
        Fraction of *fields* held out for validation (at least one field when there are two or
        more); frames of one field are never on both sides.
    val_every
        Validate every this many steps (and at the end); the best validation PSNR is kept.
    val_max_frames
        At most this many validation frames (whole frames, evenly chosen) per validation.
    checkpoint_every
        Save a resumable checkpoint every this many steps (and at the end, and on Ctrl-C).
    seed
        Seeds the split, the crops, the augmentations and the initial weights.
    precision
        ``"bf16"``: autocast to bfloat16 (weights and optimiser stay float32; about 3x faster
        on CPUs with native bf16); ``"fp32"``; ``"auto"``: bf16 where the device has native
        support (CUDA with bf16, CPUs with AVX512-BF16/AMX), else fp32.
    num_threads
        CPU threads for torch (``None``: leave torch's default).
    weights_dtype
        dtype of the weights in the written package (float16 halves its size).
    dose_range_e_per_px
        Dose range written in the card; ``None`` takes the training inputs' range.
    description
        Free text for the card.
    """

    encoder: str | None = None
    fast: bool = False
    depth: int | None = Field(default=None, ge=1, le=5)
    decoder_channels: tuple[int, ...] | None = None
    mode: Mode = "supervised"
    loss: Loss | None = None
    ssim_weight: float = Field(default=0.2, ge=0.0)
    crop: int = Field(default=256, ge=32, le=4096)
    batch_size: int = Field(default=4, ge=1, le=1024)
    max_steps: int | None = Field(default=2000, ge=1)
    epochs: float | None = Field(default=None, gt=0)
    lr: float = Field(default=1e-4, gt=0, le=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(default=100, ge=0)
    min_lr_fraction: float = Field(default=0.02, ge=0.0, le=1.0)
    augment: bool = True
    registration: Registration = "fourier"
    measure_missing_shifts: bool = True
    val_fraction: float = Field(default=0.1, ge=0.0, lt=1.0)
    val_every: int = Field(default=200, ge=1)
    val_max_frames: int = Field(default=16, ge=1)
    checkpoint_every: int = Field(default=200, ge=1)
    seed: int = Field(default=0, ge=0, lt=2**63)
    precision: Precision = "auto"
    num_threads: int | None = Field(default=None, ge=1)
    weights_dtype: Literal["float32", "float16"] = "float16"
    dose_range_e_per_px: tuple[float, float] | None = None
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.max_steps is None and self.epochs is None:
            raise ValueError("give max_steps or epochs (or both: the smaller wins)")
        channels = self.model_kwargs.get("decoder_channels")
        if channels is not None and len(channels) != self.encoder_depth:
            raise ValueError(
                f"decoder_channels has {len(channels)} stages but the depth is "
                f"{self.encoder_depth}: give one width per level"
            )
        if self.decoder_channels is not None and min(self.decoder_channels) < 1:
            raise ValueError("decoder_channels must be positive")
        multiple = 2**self.encoder_depth
        if self.crop % multiple:
            raise ValueError(
                f"crop ({self.crop}) must be a multiple of {multiple}, the U-Net's stride"
            )
        if self.dose_range_e_per_px is not None:
            lo, hi = self.dose_range_e_per_px
            if not 0 < lo <= hi:
                raise ValueError("dose_range_e_per_px must satisfy 0 < min <= max")
        return self

    @property
    def model_kwargs(self) -> dict[str, Any]:
        """Smp ``Unet`` keyword arguments of this configuration."""
        from tem_acq.denoise import architecture_config

        kwargs = architecture_config(self.encoder, fast=self.fast)
        if self.depth is not None:
            kwargs["encoder_depth"] = self.depth
            # the preset's widths of the finest levels (smp's own default when it has none)
            preset = kwargs.get("decoder_channels", [256, 128, 64, 32, 16])
            kwargs["decoder_channels"] = list(preset)[-self.depth :]
        if self.decoder_channels is not None:
            kwargs["decoder_channels"] = list(self.decoder_channels)
        return kwargs

    @property
    def encoder_depth(self) -> int:
        """The U-Net's depth (its stride is ``2 ** depth``)."""
        return int(self.model_kwargs.get("encoder_depth", 5))

    @property
    def effective_loss(self) -> Loss:
        """The loss actually used (``loss`` or the mode's default)."""
        if self.loss is not None:
            return self.loss
        return "l2" if self.mode == "noise2noise" else "l1"

    def total_steps(self, n_train_pairs: int) -> int:
        """Number of optimiser steps for ``n_train_pairs`` training pairs."""
        steps: list[int] = []
        if self.max_steps is not None:
            steps.append(self.max_steps)
        if self.epochs is not None:
            steps.append(max(1, round(self.epochs * n_train_pairs / self.batch_size)))
        return min(steps)

    def lr_at(self, step: int, total: int) -> float:
        """Learning rate for optimiser step ``step`` (0-based) of ``total``."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        import math

        span = max(total - self.warmup_steps, 1)
        progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
        floor = self.lr * self.min_lr_fraction
        return floor + (self.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    # --- files -----------------------------------------------------------------------------

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> TrainConfig:
        """Load a config from a YAML (or JSON) file.

        Raises
        ------
        ConfigError
            Missing or unreadable file, or invalid/unknown fields (each one named).
        """
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"training config {p} does not exist; pass an existing YAML file")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read training config {p}: {exc}") from exc
        return cls.from_mapping(raw or {}, source=str(p))

    @classmethod
    def from_mapping(cls, raw: Any, *, source: str = "the training config") -> TrainConfig:
        """Validate a mapping (e.g. parsed YAML), reporting every bad field by name."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source} must be a mapping of field: value")
        return as_model(
            cls,
            raw,
            f"{source} is not a valid training config",
            ConfigError,
            whole="(config)",
            fix=f"valid fields: {', '.join(cls.model_fields)}",
        )

    def to_yaml(self) -> str:
        """The config as YAML text (every field, defaults included)."""
        import yaml

        return str(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))
