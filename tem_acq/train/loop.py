"""The training loop: crops -> U-Net -> loss, validation by field, checkpoints, package out."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tem_acq.errors import ConfigError, TemAcqError
from tem_acq.outputs import check_not_an_input, claim_output
from tem_acq.pairs import PairArrays
from tem_acq.progress import Progress
from tem_acq.train.checkpoint import (
    load_checkpoint,
    prefixed,
    restore_optimizer,
    save_checkpoint,
)
from tem_acq.train.config import TrainConfig
from tem_acq.train.data import CropSampler, Prepared, prepare, split_by_field
from tem_acq.train.distributed import (
    Ranks,
    StopRequest,
    any_rank,
    barrier,
    device_for,
    per_rank_batch,
    process_group,
    rank_seed,
    ranks_from_env,
    shard,
)

if TYPE_CHECKING:
    import torch

    from tem_acq.denoise import ModelCard
    from tem_acq.denoise.normalization import DoseNormalization

log = logging.getLogger(__name__)

#: File written beside the package: the config, data provenance and the training history.
TRAINING_FILE = "training.json"
#: Config fields that may change when a run is resumed (they do not change what is learnt).
RESUMABLE_CHANGES = frozenset(
    {"max_steps", "epochs", "val_every", "checkpoint_every", "num_threads", "description"}
)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    package
        The package folder written.
    card
        Its model card.
    steps
        Optimiser steps done (in total, over resumed runs).
    total_steps
        Steps the run was set to do.
    best_val_psnr_db
        Best validation PSNR (dB), or NaN without validation fields.
    best_step
        Step of the kept weights.
    interrupted
        Stopped by Ctrl-C (the best weights so far were still written).
    wall_s
        Wall time of this run (seconds).
    history
        One dict per validation: step, lr, train loss, val loss, val PSNR.
    checkpoint_dir
        Where the resumable checkpoint lives.
    """

    package: Path
    card: ModelCard
    steps: int
    total_steps: int
    best_val_psnr_db: float
    best_step: int
    interrupted: bool
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoint_dir: Path | None = None


def default_checkpoint_dir(out: Path) -> Path:
    """``<out>.ckpt`` beside the package folder."""
    return out.with_name(out.name + ".ckpt")


def _use_bf16(precision: str, device: torch.device) -> bool:
    """Whether to train in bf16 autocast: ``auto`` where the device has it natively."""
    from tem_acq.denoise.engine import native_bf16

    if precision == "fp32":
        return False
    supported = native_bf16(device)
    if precision == "bf16" and not supported:
        raise TemAcqError(f"precision bf16 asked for but {device} has no native bf16; use fp32")
    return supported


#: Validation frames whose reference spans less than this (network units, mean ~1) are flat
#: (vacuum or bare film): their PSNR, relative to a near-zero data range, says nothing.
MIN_VAL_RANGE = 0.05


class _Validator:
    """Whole-frame validation: PSNR against the truth (when known) or the target.

    The PSNR is averaged over frames with structure (reference range >= ``MIN_VAL_RANGE``);
    the L1 loss against the target over all chosen frames.
    """

    def __init__(
        self,
        data: Prepared,
        index: np.ndarray,
        max_frames: int,
        multiple: int,
        normalization: DoseNormalization,
        aware: bool = False,
    ) -> None:
        ref = data.truth if data.truth is not None else data.targets
        spans = np.array([float(np.ptp(ref[i])) for i in index]) if len(index) else np.array([])
        structured = index[spans >= MIN_VAL_RANGE] if len(index) else index
        if len(structured):
            index = structured
        if len(index) > max_frames:
            index = index[np.linspace(0, len(index) - 1, max_frames).round().astype(int)]
        self.index = index
        self.data = data
        self.multiple = multiple
        self.normalization = normalization
        #: apply each pair's detector model (supervised targets are at the true dose)
        self.aware = aware

    def __call__(self, model: torch.nn.Module, device: torch.device) -> tuple[float, float]:
        import torch

        from tem_acq.denoise.engine import pad_to_multiple
        from tem_acq.metrics import psnr
        from tem_acq.train.losses import delivered

        if len(self.index) == 0:
            return math.nan, math.nan
        was_training = model.training
        model.eval()
        ps, ls = [], []
        try:
            with torch.inference_mode():
                for i in self.index:
                    x = torch.from_numpy(self.data.inputs[i]).to(device)[None, None]
                    h, w = x.shape[-2:]
                    y = model(pad_to_multiple(x, self.multiple))[..., :h, :w].float()
                    y = delivered(  # as the engine delivers it
                        y,
                        x,
                        self.normalization,
                        self.data.scale[[i]],
                        [self.data.camera(int(i)) if self.aware else (None, 1)],
                    )
                    out = y[0, 0].cpu().numpy()
                    ref = (
                        self.data.truth[i] if self.data.truth is not None else self.data.targets[i]
                    )
                    m = int(self.data.border[i])
                    sl = (slice(m, h - m), slice(m, w - m))
                    ps.append(psnr(out[sl], ref[sl]))
                    ls.append(float(np.abs(out[sl] - self.data.targets[i][sl]).mean()))
        finally:
            model.train(was_training)
        return float(np.mean(ps)), float(np.mean(ls))


def _state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _config_diff(saved: dict[str, Any], now: TrainConfig) -> list[str]:
    cur = now.model_dump(mode="json")
    return sorted(
        k
        for k in set(saved) | set(cur)
        if k not in RESUMABLE_CHANGES and saved.get(k) != cur.get(k)
    )


def train(
    pairs: PairArrays,
    config: TrainConfig,
    out: str | os.PathLike[str],
    *,
    init: str | os.PathLike[str] | None = None,
    resume: bool = False,
    device: str = "auto",
    checkpoint_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    overwrite: bool = False,
    progress: bool | None = None,
    on_validation: Callable[[dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a denoiser on pairs and write it as a model package.

    Parameters
    ----------
    pairs
        The training pairs (validation fields are split off them by ``config.val_fraction``).
    config
        The training configuration.
    out, checkpoint_dir
        Package folder to write, and where its checkpoints go (default ``<out>.ckpt``).
    init
        Start from this package's weights (name or folder) instead of fresh ones; its
        architecture is used.
    resume
        Continue the run whose checkpoint is in the checkpoint folder (same config, except
        the fields in :data:`RESUMABLE_CHANGES`, and the same data).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    name
        Package name (default: the folder's name).
    overwrite
        Replace an existing package folder at ``out``.
    progress
        Report progress (``None`` or ``True``: a bar on a terminal, a plain line every 10 s
        otherwise); ``False``: nothing.
    on_validation
        Called with each validation record (step, lr, loss, val_loss, val_psnr_db).
    should_stop
        Asked after every step; when it returns True the run ends there as if it had reached
        its last step (validated, checkpointed, the best weights written; not ``interrupted``),
        e.g. at a time limit or when a background run is told to stop.

    Returns
    -------
    The result; the package holds the best validated weights (the last ones without
    validation fields). Ctrl-C stops the run cleanly: a checkpoint is saved, the package is
    written from the best weights so far and the result says ``interrupted``.

    Notes
    -----
    Started by torchrun (``tem-acq train --nproc N``: :mod:`tem_acq.train.distributed`), each
    process trains its shard of the training pairs with DistributedDataParallel; rank 0 alone
    validates, checkpoints and writes the package, and every rank returns the result.
    """
    import torch

    from tem_acq.denoise import select_device

    t_start = time.perf_counter()
    out_path = Path(out)
    ranks = ranks_from_env()
    if ranks is None or ranks.is_main:
        ckpt = _check_outputs(
            out_path, checkpoint_dir, overwrite=overwrite, resume=resume, init=init
        )
    else:  # rank 0 checks; by the time this rank looks, it may have written the checkpoint
        ckpt = Path(checkpoint_dir) if checkpoint_dir else default_checkpoint_dir(out_path)
    if not pairs.detector:
        raise TemAcqError(
            "the pairs do not say which detector recorded them; set PairArrays.detector"
        )
    check_crop(config.crop, pairs.low.shape[-2:])
    dev = select_device(device) if ranks is None else device_for(ranks, device)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    bf16 = _use_bf16(config.precision, dev)

    data = prepare(pairs, config.mode, config.registration, measure=config.measure_missing_shifts)
    train_idx, val_idx = split_by_field(data.field, config.val_fraction, config.seed)
    with ExitStack() as distributed:
        if ranks is not None:
            distributed.enter_context(process_group(dev))
        run = _Run(
            config,
            dev,
            bf16=bf16,
            total=config.total_steps(len(train_idx)),
            data_sha=pairs.sha256(),
            ckpt=ckpt,
            t_start=t_start,
            init=init,
            ranks=ranks,
        )
        if resume:
            run.resume()
        stop = distributed.enter_context(StopRequest()) if ranks is not None else None
        return _optimise_and_write(
            run,
            data,
            train_idx,
            val_idx,
            pairs,
            out_path,
            name=name,
            overwrite=overwrite or resume,
            progress=progress,
            on_validation=on_validation,
            should_stop=run.stop_check(stop, should_stop),
        )


def _optimise_and_write(
    run: _Run,
    data: Prepared,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    pairs: PairArrays,
    out: Path,
    *,
    name: str | None,
    overwrite: bool,
    progress: bool | None,
    on_validation: Callable[[dict[str, float]], None] | None,
    should_stop: Callable[[], bool] | None,
) -> TrainResult:
    """Train ``run`` on this process's share of ``train_idx``; write (rank 0) the package."""
    config = run.config
    mine = train_idx if run.ranks is None else shard(train_idx, run.ranks)
    sampler = CropSampler(data, mine, config.crop, config.augment, run.rng)
    validator = _Validator(
        data,
        val_idx,
        config.val_max_frames,
        run.multiple,
        run.normalization,
        aware=config.mode == "supervised",
    )
    # a bar on a terminal, plain lines otherwise; nothing with progress=False or off rank 0
    show = (progress is not False) and run.is_main
    interrupted = run.optimise(
        sampler, validator, show_progress=show, on_validation=on_validation, stop=should_stop
    )
    interrupted = interrupted or run.signalled
    if run.is_main:
        card = run.write_package(
            pairs,
            out,
            name=name,
            overwrite=overwrite,
            interrupted=interrupted,
            split=_split_record(data.field, train_idx, val_idx),
        )
    if run.ranks is not None:
        barrier()  # the package is complete before any rank reports it
    if not run.is_main:
        from tem_acq.denoise.card import read_card
        from tem_acq.denoise.package import CARD_FILE

        card = read_card(out / CARD_FILE)
    return run.result(out, card, interrupted)


def check_crop(crop: int, frame_shape: tuple[int, ...]) -> None:
    """Refuse training crops larger than the frames (before any work), naming both.

    Raises
    ------
    ConfigError
        If ``crop`` exceeds the frames' height or width.
    """
    height, width = (int(n) for n in frame_shape)
    if crop > min(height, width):
        raise ConfigError(
            f"the training crop ({crop} px) is larger than the frames ({height}x{width} px): "
            f"set crop to at most {min(height, width) // 32 * 32} (a multiple of 32) in the "
            "training config"
        )


def _check_outputs(
    out: Path,
    checkpoint_dir: str | os.PathLike[str] | None,
    *,
    overwrite: bool,
    resume: bool,
    init: str | os.PathLike[str] | None = None,
) -> Path:
    """The checkpoint folder, once neither it nor ``out`` holds an earlier run by mistake.

    Neither may be the ``init`` package, inside it or hold it.
    """
    from tem_acq.denoise.package import package_folder

    inputs = [package_folder(init)] if init is not None else []
    claim_output(out, overwrite=overwrite or resume, kind="model package", inputs=inputs)
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else default_checkpoint_dir(out)
    check_not_an_input(ckpt, inputs, kind="model package")
    if not resume and (ckpt / "state.json").exists() and not overwrite:
        raise TemAcqError(
            f"a checkpoint of an earlier run is in {ckpt}; pass --resume to continue it, or "
            "remove the folder to start afresh"
        )
    return ckpt


@dataclass
class _Run:
    """One training run: the model, its optimiser and everything a checkpoint keeps.

    Built fresh (seeded weights, or those of the ``init`` package); :meth:`resume` then
    restores a saved run. :meth:`optimise` runs the steps, validating and checkpointing as
    the config says.

    Attributes
    ----------
    config, device, bf16
        How to train, where, and whether in bf16 autocast.
    total
        Steps the run is to reach.
    data_sha
        The pairs' hash (a resumed run must train on the same).
    ckpt
        The checkpoint folder.
    t_start
        When this run started (``time.perf_counter``).
    """

    config: TrainConfig
    device: torch.device
    bf16: bool
    total: int
    data_sha: str
    ckpt: Path
    t_start: float
    init: InitVar[str | os.PathLike[str] | None]
    #: This process's ranks in a distributed run (None: training alone).
    ranks: Ranks | None = None

    def __post_init__(self, init: str | os.PathLike[str] | None) -> None:
        import torch

        from tem_acq.denoise import DoseNormalization

        config, device = self.config, self.device
        #: Trained models run with the detector-aware normalization; the card records it.
        #: Supervised targets (long exposures at the nominal dose) are the true dose, so the
        #: loss sees each pair's detector-aware shift; noise2noise targets are observations of
        #: the same detector, so its loss keeps the observed mean (the linear rule).
        self.normalization = DoseNormalization(detector_aware=True)
        torch.manual_seed(config.seed)
        model, self.init_info, depth = _initial_model(config, init)
        self.multiple = 2**depth
        if config.crop % self.multiple:
            raise TemAcqError(
                f"crop {config.crop} must be a multiple of {self.multiple} for this model"
            )
        model = model.to(device).train()
        if device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)  # faster CPU convolutions
        self.model = model
        #: What the steps run: the model, or its DDP wrapper (which averages the gradients)
        self.stepped = model if self.ranks is None else _ddp(model, device)
        self.batch = (
            config.batch_size
            if self.ranks is None
            else per_rank_batch(config.batch_size, self.ranks)
        )
        #: a signal asked a distributed run to stop (it then ends as interrupted)
        self.signalled = False
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.rng = np.random.default_rng(rank_seed(config.seed, self.ranks))
        self.step = 0
        self.best_psnr, self.best_step = -math.inf, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self.wall_before = 0.0  # wall time of the earlier runs of a resumed training

    def resume(self) -> None:
        """Continue the run saved in the checkpoint folder (same config and data)."""
        import torch

        info, tensors = load_checkpoint(self.ckpt)
        diff = _config_diff(info.get("config", {}), self.config)
        if diff:
            raise TemAcqError(
                f"cannot resume {self.ckpt}: the config differs in {', '.join(diff)} (only "
                f"{', '.join(sorted(RESUMABLE_CHANGES))} may change); use the saved config"
            )
        if info.get("data_sha256") != self.data_sha:
            raise TemAcqError(
                f"cannot resume {self.ckpt}: the pairs differ from the run's "
                f"({info.get('data_sha256')} vs {self.data_sha}); pass the same --pairs"
            )
        self.model.load_state_dict(prefixed(tensors, "model"))
        restore_optimizer(self.optimizer, info, tensors)
        self.best_state = prefixed(tensors, "best") or None
        torch.set_rng_state(tensors["rng.torch"])
        self.rng.bit_generator.state = info["numpy_rng"]
        self.step = int(info["step"])
        saved_best = info["best_val_psnr_db"]
        self.best_psnr = float(saved_best) if saved_best is not None else -math.inf
        self.best_step = int(info["best_step"])
        self.history = list(info["history"])
        self.init_info = info.get("init")
        self.wall_before = float(info.get("wall_s_total", 0.0))
        if self.ranks is not None and not self.ranks.is_main:
            # the checkpoint holds rank 0's sampler state; the others start afresh, seeded
            self.rng.bit_generator.state = np.random.default_rng(
                rank_seed(self.config.seed, self.ranks, self.step)
            ).bit_generator.state

    @property
    def is_main(self) -> bool:
        """True when this process validates, checkpoints and writes (rank 0, or alone)."""
        return self.ranks is None or self.ranks.is_main

    def stop_check(
        self, request: StopRequest | None, should_stop: Callable[[], bool] | None
    ) -> Callable[[], bool] | None:
        """The per-step stop question; in a distributed run, asked of all ranks together.

        A signal to any rank, or ``should_stop`` on any rank, stops every rank after the same
        step (a signal also marks the run ``signalled``: it ends as interrupted).
        """
        if self.ranks is None:
            return should_stop

        def check() -> bool:
            asked = should_stop is not None and should_stop()
            signalled = request is not None and request.requested
            if any_rank(signalled, self.device):
                self.signalled = True
            return any_rank(asked, self.device) or self.signalled

        return check

    def optimise(
        self,
        sampler: CropSampler,
        validator: _Validator,
        *,
        show_progress: bool,
        on_validation: Callable[[dict[str, float]], None] | None,
        stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Run the remaining steps; returns whether Ctrl-C stopped them.

        Validates every ``val_every`` steps and checkpoints every ``checkpoint_every`` (and
        both at the end, when ``stop`` says so, or when interrupted).
        """
        config = self.config
        running = math.nan
        try:
            with Progress(
                "training", self.total, unit="steps", show=show_progress, start=self.step
            ) as bar:
                while self.step < self.total:
                    lv = self.train_step(sampler)
                    running = lv if math.isnan(running) else 0.95 * running + 0.05 * lv
                    last = self.step == self.total or (stop is not None and stop())
                    if (self.step % config.val_every == 0 or last) and self.is_main:
                        self.validate(validator, running, on_validation)
                    if (self.step % config.checkpoint_every == 0 or last) and self.is_main:
                        self.save_checkpoint()
                    best = self.best_psnr
                    bar.update(
                        self.step,
                        loss=running,
                        best_val_psnr=f"{best:.2f} dB" if math.isfinite(best) else "-",
                    )
                    if last:
                        break
        except KeyboardInterrupt:
            if not self.history or self.history[-1]["step"] != self.step:
                self.validate(validator, running, on_validation)
            self.save_checkpoint()
            return True
        return False

    def train_step(self, sampler: CropSampler) -> float:
        """One optimiser step on a batch of crops; returns its loss."""
        import torch

        from tem_acq.train.losses import compute_loss, delivered

        config, dev = self.config, self.device
        lr = config.lr_at(self.step, self.total)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        xs, ts, picks = sampler.batch_with_pairs(self.batch)
        x = torch.from_numpy(xs).unsqueeze(1).to(dev)
        t = torch.from_numpy(ts).unsqueeze(1).to(dev)
        if dev.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=self.bf16):
            y = self.stepped(x)
        # Train as the engine runs: its output is shifted by the card's mean rule.
        aware = config.mode == "supervised"
        cameras = [sampler.data.camera(int(i)) if aware else (None, 1) for i in picks]
        y = delivered(y.float(), x, self.normalization, sampler.data.scale[picks], cameras)
        loss = compute_loss(config.effective_loss, y, t, config.ssim_weight)
        if not torch.isfinite(loss):
            raise TemAcqError(
                f"the loss became {float(loss)} at step {self.step}; lower lr (now {lr:g}) "
                "or check the pairs for empty or saturated frames"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def validate(
        self,
        validator: _Validator,
        loss_value: float,
        on_validation: Callable[[dict[str, float]], None] | None,
    ) -> None:
        """Validate now; record it, and keep the weights when they are the best so far."""
        vp, vl = validator(self.model, self.device)
        rec = {
            "step": float(self.step),
            "lr": float(self.optimizer.param_groups[0]["lr"]),
            "loss": loss_value,
            "val_loss": vl,
            "val_psnr_db": vp,
        }
        self.history.append(rec)
        if math.isnan(vp) or vp > self.best_psnr:
            self.best_psnr = vp if not math.isnan(vp) else -math.inf
            self.best_step = self.step
            self.best_state = _state_copy(self.model)
        log.info("step %d: loss %.4f val loss %.4f val PSNR %.2f dB", self.step, loss_value, vl, vp)
        if on_validation is not None:
            on_validation(rec)

    def save_checkpoint(self) -> None:
        """Write the resumable state to the checkpoint folder."""
        save_checkpoint(
            self.ckpt,
            model=self.model,
            best=self.best_state,
            optimizer=self.optimizer,
            info={
                "step": self.step,
                "total_steps": self.total,
                "config": self.config.model_dump(mode="json"),
                "data_sha256": self.data_sha,
                "numpy_rng": self.rng.bit_generator.state,
                "best_val_psnr_db": None if self.best_psnr == -math.inf else self.best_psnr,
                "best_step": self.best_step,
                "history": self.history,
                "init": self.init_info,
                "wall_s_total": self.wall_total(),
            },
        )

    def write_package(
        self,
        pairs: PairArrays,
        out: Path,
        *,
        name: str | None,
        overwrite: bool,
        interrupted: bool,
        split: dict[str, int],
    ) -> ModelCard:
        """Write the package from the best validated weights (the last ones if none were).

        ``split`` says how many pairs and fields trained and validated (``training.json``).
        """
        import torch

        if self.best_state is None:  # interrupted before the first validation
            self.best_state = _state_copy(self.model)
            self.best_step = self.step
        self.model.load_state_dict(self.best_state)
        return _write_package(
            self.model.cpu().float().to(memory_format=torch.contiguous_format),
            pairs,
            self.config,
            out,
            name=name,
            overwrite=overwrite,
            data_sha=self.data_sha,
            normalization=self.normalization,
            extra={
                **self.record(interrupted),
                **split,
                "init": self.init_info,
                "history": self.history,
            },
        )

    def wall_total(self) -> float:
        """Wall time of this run and the earlier runs it resumed (seconds)."""
        return self.wall_before + time.perf_counter() - self.t_start

    def record(self, interrupted: bool) -> dict[str, Any]:
        """How the run went, for ``training.json``."""
        return {
            "steps": self.step,
            "total_steps": self.total,
            "best_step": self.best_step,
            "best_val_psnr_db": None if self.best_psnr == -math.inf else self.best_psnr,
            "interrupted": interrupted,
            "wall_s": time.perf_counter() - self.t_start,
            "wall_s_total": self.wall_total(),
            "device": str(self.device),
            "precision": "bf16" if self.bf16 else "fp32",
            "processes": 1 if self.ranks is None else self.ranks.world,
        }

    def result(self, package: Path, card: ModelCard, interrupted: bool) -> TrainResult:
        """What the run produced, once its package is written."""
        return TrainResult(
            package=package,
            card=card,
            steps=self.step,
            total_steps=self.total,
            best_val_psnr_db=self.best_psnr if self.best_psnr != -math.inf else math.nan,
            best_step=self.best_step,
            interrupted=interrupted,
            wall_s=time.perf_counter() - self.t_start,
            history=self.history,
            checkpoint_dir=self.ckpt,
        )


def _ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` wrapped for DistributedDataParallel (rank 0's weights broadcast to all)."""
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    # smp encoders keep layers a shallow U-Net never calls (the fast model's deepest stages)
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True)


def _split_record(field: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> dict[str, int]:
    """How many pairs and fields trained and validated, for ``training.json``."""
    return {
        "n_train_pairs": len(train_idx),
        "n_val_pairs": len(val_idx),
        "train_fields": len(np.unique(field[train_idx])),
        "val_fields": len(np.unique(field[val_idx])) if len(val_idx) else 0,
    }


def _initial_model(
    config: TrainConfig, init: str | os.PathLike[str] | None
) -> tuple[torch.nn.Module, dict[str, Any] | None, int]:
    """The starting weights: ``init``'s (its architecture) or fresh ones of the config's.

    Returns the model, where it came from (``None``: fresh) and its U-Net depth.
    """
    from tem_acq.denoise import build_model, load_package, resolve_package

    if init is None:
        model = build_model({**config.model_kwargs, "in_channels": 1, "classes": 1})
        return model, None, config.encoder_depth
    pkg = load_package(resolve_package(init))
    info = {"package": str(pkg.path), "package_hash": pkg.package_hash}
    return pkg.model, info, int(pkg.card.architecture_kwargs.get("encoder_depth", 5))


def _write_package(
    model: torch.nn.Module,
    pairs: PairArrays,
    config: TrainConfig,
    out: Path,
    *,
    name: str | None,
    overwrite: bool,
    data_sha: str,
    normalization: DoseNormalization,
    extra: dict[str, Any],
) -> ModelCard:
    from tem_acq import __version__
    from tem_acq.denoise import TrainingData, save_package
    from tem_acq.detector import DEFAULT_MODELS

    doses = pairs.low_dose
    dose_range = config.dose_range_e_per_px or (
        float(f"{doses.min():.3g}"),
        float(f"{doses.max():.3g}"),
    )
    detectors = sorted(set(pairs.detector))
    px = None
    if pairs.pixel_size_A is not None and np.isfinite(pairs.pixel_size_A).all():
        px = (float(pairs.pixel_size_A.min()), float(pairs.pixel_size_A.max()))
    specimens = sorted(set(pairs.specimen))
    kind = "short -> long exposure" if config.mode == "supervised" else "short -> short"
    what = (
        f"{config.mode} pairs ({kind})"
        + (f" of {', '.join(specimens)}" if specimens else "")
        + f", {'/'.join(detectors)} detector(s), "
        + f"short doses {dose_range[0]:g}-{dose_range[1]:g} e-/px"
    )
    description = config.description or (
        f"U-Net trained by tem-acq on {what}; {extra['steps']} steps"
        + (" (interrupted)" if extra["interrupted"] else "")
    )
    card = save_package(
        model,
        out,
        name=name,
        weights_dtype=config.weights_dtype,
        overwrite=overwrite,
        trained=True,
        description=description,
        dose_range_e_per_px=dose_range,
        detectors=detectors,
        detector_models=(
            {kind: DEFAULT_MODELS[kind] for kind in detectors}
            if normalization.detector_aware
            else None
        ),
        pixel_size_A_range=px,
        normalization=normalization,
        training_data=TrainingData(
            description=what, sha256=data_sha, source=pairs.source, n_pairs=len(pairs)
        ),
    )
    record = {
        "config": config.model_dump(mode="json"),
        "data": {"sha256": data_sha, "source": pairs.source, "n_pairs": len(pairs)},
        "tem_acq_version": __version__,
        **extra,
    }
    (out / TRAINING_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return card
