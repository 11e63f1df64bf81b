"""The training loop: crops -> U-Net -> loss, validation by field, checkpoints, package out."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tem_acq.errors import TemAcqError
from tem_acq.pairs import PairArrays
from tem_acq.train.checkpoint import (
    load_checkpoint,
    prefixed,
    restore_optimizer,
    save_checkpoint,
)
from tem_acq.train.config import TrainConfig
from tem_acq.train.data import CropSampler, Prepared, prepare, split_by_field

if TYPE_CHECKING:
    import torch

    from tem_acq.denoise import ModelCard

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
    import torch

    if precision == "fp32":
        return False
    if device.type == "cuda":
        supported = bool(torch.cuda.is_bf16_supported())
    else:
        supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if precision == "bf16" and not supported:
        raise TemAcqError(f"precision bf16 asked for but {device} has no native bf16; use fp32")
    return supported


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


#: Validation frames whose reference spans less than this (network units, mean ~1) are flat
#: (vacuum or bare film): their PSNR, relative to a near-zero data range, says nothing.
MIN_VAL_RANGE = 0.05


class _Validator:
    """Whole-frame validation: PSNR against the truth (when known) or the target.

    The PSNR is averaged over frames with structure (reference range >= ``MIN_VAL_RANGE``);
    the L1 loss against the target over all chosen frames.
    """

    def __init__(self, data: Prepared, index: np.ndarray, max_frames: int, multiple: int) -> None:
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

    def __call__(self, model: torch.nn.Module, device: torch.device) -> tuple[float, float]:
        import torch

        from tem_acq.metrics import psnr

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
                    y = model(_pad_to(x, self.multiple))[..., :h, :w].float()
                    y = y + (x.mean() - y.mean())  # the engine's preserve_mean
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
) -> TrainResult:
    """Train a denoiser on pairs and write it as a model package.

    Parameters
    ----------
    pairs
        The training pairs (validation fields are split off them by ``config.val_fraction``).
    config
        The training configuration.
    out
        Package folder to write (its checkpoint goes to ``<out>.ckpt`` unless
        ``checkpoint_dir`` is given).
    init
        Start from this package's weights (name or folder) instead of fresh ones; its
        architecture is used.
    resume
        Continue the run whose checkpoint is in the checkpoint folder (same config, except
        the fields in :data:`RESUMABLE_CHANGES`, and the same data).
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    checkpoint_dir
        Where checkpoints go.
    name
        Package name (default: the folder's name).
    overwrite
        Replace an existing package folder at ``out``.
    progress
        Show a progress bar; ``None``: only when stderr is a terminal.
    on_validation
        Called with each validation record (step, lr, loss, val_loss, val_psnr_db).

    Returns
    -------
    The result; the package holds the best validated weights (the last ones without
    validation fields). Ctrl-C stops the run cleanly: a checkpoint is saved, the package is
    written from the best weights so far and the result says ``interrupted``.
    """
    import torch

    from tem_acq.denoise import build_model, load_package, resolve_package, select_device

    t_start = time.perf_counter()
    out_path = Path(out)
    if out_path.exists() and not overwrite and not resume:
        raise TemAcqError(f"{out_path} already exists; choose another --out or remove it")
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else default_checkpoint_dir(out_path)
    if not resume and (ckpt / "state.json").exists() and not overwrite:
        raise TemAcqError(
            f"a checkpoint of an earlier run is in {ckpt}; pass --resume to continue it, or "
            "remove the folder to start afresh"
        )
    if not pairs.detector:
        raise TemAcqError(
            "the pairs do not say which detector recorded them; set PairArrays.detector"
        )
    dev = select_device(device)
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    bf16 = _use_bf16(config.precision, dev)

    data = prepare(pairs, config.mode, config.registration, measure=config.measure_missing_shifts)
    train_idx, val_idx = split_by_field(data.field, config.val_fraction, config.seed)
    total = config.total_steps(len(train_idx))
    data_sha = pairs.sha256()

    init_info: dict[str, Any] | None = None
    torch.manual_seed(config.seed)
    if init is not None:
        pkg = load_package(resolve_package(init))
        model = pkg.model
        init_info = {"package": str(pkg.path), "package_hash": pkg.package_hash}
        depth = int(pkg.card.architecture_kwargs.get("encoder_depth", 5))
    else:
        model = build_model({**config.model_kwargs, "in_channels": 1, "classes": 1})
        depth = config.encoder_depth
    multiple = 2**depth
    if config.crop % multiple:
        raise TemAcqError(f"crop {config.crop} must be a multiple of {multiple} for this model")
    model = model.to(dev).train()
    if dev.type == "cpu":
        model = model.to(memory_format=torch.channels_last)  # faster CPU convolutions
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC209]))
    step = 0
    best_psnr, best_step = -math.inf, 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = []
    wall_before = 0.0  # wall time of the earlier runs of a resumed training
    if resume:
        info, tensors = load_checkpoint(ckpt)
        diff = _config_diff(info.get("config", {}), config)
        if diff:
            raise TemAcqError(
                f"cannot resume {ckpt}: the config differs in {', '.join(diff)} (only "
                f"{', '.join(sorted(RESUMABLE_CHANGES))} may change); use the saved config"
            )
        if info.get("data_sha256") != data_sha:
            raise TemAcqError(
                f"cannot resume {ckpt}: the pairs differ from the run's ({info.get('data_sha256')}"
                f" vs {data_sha}); pass the same --pairs"
            )
        model.load_state_dict(prefixed(tensors, "model"))
        restore_optimizer(optimizer, info, tensors)
        best = prefixed(tensors, "best")
        best_state = best or None
        torch.set_rng_state(tensors["rng.torch"])
        rng.bit_generator.state = info["numpy_rng"]
        step = int(info["step"])
        best_psnr = (
            float(info["best_val_psnr_db"]) if info["best_val_psnr_db"] is not None else -math.inf
        )
        best_step = int(info["best_step"])
        history = list(info["history"])
        init_info = info.get("init")
        wall_before = float(info.get("wall_s_total", 0.0))

    sampler = CropSampler(data, train_idx, config.crop, config.augment, rng)
    validator = _Validator(data, val_idx, config.val_max_frames, multiple)
    loss_name = config.effective_loss
    from tem_acq.denoise import DoseNormalization

    preserve_mean = DoseNormalization().preserve_mean
    from tem_acq.train.losses import compute_loss

    def checkpoint() -> None:
        save_checkpoint(
            ckpt,
            model=model,
            best=best_state,
            optimizer=optimizer,
            info={
                "step": step,
                "total_steps": total,
                "config": config.model_dump(mode="json"),
                "data_sha256": data_sha,
                "numpy_rng": rng.bit_generator.state,
                "best_val_psnr_db": None if best_psnr == -math.inf else best_psnr,
                "best_step": best_step,
                "history": history,
                "init": init_info,
                "wall_s_total": wall_before + time.perf_counter() - t_start,
            },
        )

    def validate(loss_value: float) -> None:
        nonlocal best_psnr, best_step, best_state
        vp, vl = validator(model, dev)
        rec = {
            "step": float(step),
            "lr": float(optimizer.param_groups[0]["lr"]),
            "loss": loss_value,
            "val_loss": vl,
            "val_psnr_db": vp,
        }
        history.append(rec)
        if math.isnan(vp) or vp > best_psnr:
            best_psnr = vp if not math.isnan(vp) else -math.inf
            best_step = step
            best_state = _state_copy(model)
        log.info("step %d: loss %.4f val loss %.4f val PSNR %.2f dB", step, loss_value, vl, vp)
        if on_validation is not None:
            on_validation(rec)

    show = progress if progress is not None else _stderr_is_terminal()
    bar = _Progress(show, total, step)
    interrupted = False
    running = math.nan
    try:
        with bar:
            while step < total:
                lr = config.lr_at(step, total)
                for g in optimizer.param_groups:
                    g["lr"] = lr
                xs, ts = sampler.batch(config.batch_size)
                x = torch.from_numpy(xs).unsqueeze(1).to(dev)
                t = torch.from_numpy(ts).unsqueeze(1).to(dev)
                if dev.type == "cpu":
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                    y = model(x)
                y = y.float()
                if preserve_mean:
                    # Train as the engine runs: its output is shifted to the input's mean.
                    y = y + (
                        x.mean(dim=(-2, -1), keepdim=True) - y.mean(dim=(-2, -1), keepdim=True)
                    )
                loss = compute_loss(loss_name, y, t, config.ssim_weight)
                if not torch.isfinite(loss):
                    raise TemAcqError(
                        f"the loss became {float(loss)} at step {step}; lower lr (now {lr:g}) "
                        "or check the pairs for empty or saturated frames"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                lv = float(loss.detach())
                running = lv if math.isnan(running) else 0.95 * running + 0.05 * lv
                if step % config.val_every == 0 or step == total:
                    validate(running)
                if step % config.checkpoint_every == 0 or step == total:
                    checkpoint()
                bar.update(step, running, best_psnr)
    except KeyboardInterrupt:
        interrupted = True
        if not history or history[-1]["step"] != step:
            validate(running)
        checkpoint()
    if best_state is None:  # interrupted before the first validation
        best_state = _state_copy(model)
        best_step = step
    model.load_state_dict(best_state)
    card = _write_package(
        model.cpu().float().to(memory_format=torch.contiguous_format),
        pairs,
        config,
        out_path,
        name=name,
        overwrite=overwrite or resume,
        data_sha=data_sha,
        extra={
            "steps": step,
            "total_steps": total,
            "best_step": best_step,
            "best_val_psnr_db": None if best_psnr == -math.inf else best_psnr,
            "interrupted": interrupted,
            "wall_s": time.perf_counter() - t_start,
            "wall_s_total": wall_before + time.perf_counter() - t_start,
            "device": str(dev),
            "precision": "bf16" if bf16 else "fp32",
            "n_train_pairs": len(train_idx),
            "n_val_pairs": len(val_idx),
            "train_fields": len(np.unique(data.field[train_idx])),
            "val_fields": len(np.unique(data.field[val_idx])) if len(val_idx) else 0,
            "init": init_info,
            "history": history,
        },
    )
    return TrainResult(
        package=out_path,
        card=card,
        steps=step,
        total_steps=total,
        best_val_psnr_db=best_psnr if best_psnr != -math.inf else math.nan,
        best_step=best_step,
        interrupted=interrupted,
        wall_s=time.perf_counter() - t_start,
        history=history,
        checkpoint_dir=ckpt,
    )


def _write_package(
    model: torch.nn.Module,
    pairs: PairArrays,
    config: TrainConfig,
    out: Path,
    *,
    name: str | None,
    overwrite: bool,
    data_sha: str,
    extra: dict[str, Any],
) -> ModelCard:
    from tem_acq import __version__
    from tem_acq.denoise import TrainingData, save_package

    doses = pairs.low_dose
    dose_range = config.dose_range_e_per_px or (
        float(f"{doses.min():.3g}"),
        float(f"{doses.max():.3g}"),
    )
    detectors = sorted(set(pairs.detector))
    px = None
    if pairs.pixel_size_nm is not None and np.isfinite(pairs.pixel_size_nm).all():
        px = (float(pairs.pixel_size_nm.min()), float(pairs.pixel_size_nm.max()))
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
        pixel_size_nm_range=px,
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


def _stderr_is_terminal() -> bool:
    import sys

    return bool(getattr(sys.stderr, "isatty", lambda: False)())


class _Progress:
    """A rich progress bar with loss and best validation PSNR (or nothing when hidden)."""

    def __init__(self, show: bool, total: int, start: int) -> None:
        self.show = show
        self.total = total
        self.start = start
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Progress:
        if self.show:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("training"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}  val PSNR {task.fields[psnr]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "train", total=self.total, completed=self.start, loss="-", psnr="-"
            )
        return self

    def update(self, step: int, loss: float, best_psnr: float) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=step,
                loss=f"{loss:.4f}",
                psnr="-" if not math.isfinite(best_psnr) else f"{best_psnr:.2f} dB",
            )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
