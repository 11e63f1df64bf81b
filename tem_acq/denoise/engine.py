"""The inference engine: raw counts in, electrons per pixel out, as fast as the device allows.

One :class:`Denoiser` wraps a loaded model package. Per batch it converts counts to electrons,
divides each frame by its dose scale (:mod:`tem_acq.denoise.normalization`), pads to the
U-Net's multiple (reflect), runs the network (tiled with blended overlaps for large frames),
crops back and multiplies by the scale again.

Execution paths (``path=``): ``eager`` (float32, the reference), ``channels_last`` (float32),
``bf16`` (CPU bfloat16 autocast + channels_last; only on CPUs with native bf16), ``fp16``
(CUDA half precision + channels_last); ``compile=True`` adds ``torch.compile`` on top of the
chosen one for the warmed-up shape. Every path other than ``eager`` is used only after its
output matched eager float32 **on the loaded weights** within :data:`FAST_PATH_TOLERANCE`, and
``auto`` keeps the fastest path that passed, measured at the warm-up shape; otherwise the engine
falls back to eager and says why (:attr:`Denoiser.selection`).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tem_acq.denoise.card import ModelCard
from tem_acq.denoise.dihedral import dihedral, inverse_dihedral
from tem_acq.denoise.normalization import (
    DoseNormalization,
    dose_scale,
    from_network,
    to_network,
)
from tem_acq.denoise.options import PATHS, DenoiseOptions
from tem_acq.denoise.tiling import axis_plan, ramp, receptive_radius
from tem_acq.detector import DEFAULT_MODELS, DetectorModel
from tem_acq.errors import ConfigError, NegativeCountsWarning, TemAcqError

if TYPE_CHECKING:
    import torch

    from tem_acq.denoise.package import LoadedPackage

log = logging.getLogger(__name__)


#: A fast path is accepted when, on a synthetic 5 e-/px Poisson frame and the loaded weights,
#: its output differs from eager float32 by at most these fractions: RMS difference / RMS of
#: the reference, and max |difference| / max |reference|. The outputs compared are what the
#: user gets (after the card's mean preservation, which removes a constant offset). In
#: network units the reference is about 1 (the frame mean), so 1 % RMS is 0.05 e-/px at
#: 5 e-/px, 2 % of the shot noise (2.2 e-); 10 % of the maximum (about 1.5) is at most a third
#: of one pixel's shot noise. (A briefly trained fast model gave bf16 0.8 % RMS and 8 % max;
#: random weights 1-4 % RMS.)
FAST_PATH_TOLERANCE = {"rel_rms": 1e-2, "rel_max": 1e-1}

#: A fast path must beat eager by this factor at warm-up to be kept (timings are noisy).
MIN_SPEEDUP = 1.05

#: Timed rounds per path at warm-up (after one untimed round), round-robin over the paths.
TIMING_ROUNDS = 3


@dataclass
class PathTrial:
    """One execution path as tried at warm-up.

    Attributes
    ----------
    name
        The path (``"bf16+channels_last"``, ...).
    ok
        Whether it passed the tolerance check (eager always does).
    rel_rms, rel_max
        Its difference from eager float32 (see :data:`FAST_PATH_TOLERANCE`).
    ms
        Median milliseconds per network call at the warm-up shape (``nan`` if not timed).
    note
        Why it was rejected, if it was.
    """

    name: str
    ok: bool
    rel_rms: float = 0.0
    rel_max: float = 0.0
    ms: float = math.nan
    note: str = ""


@dataclass
class _Runner:
    name: str
    module: Any
    dtype: Any  # torch dtype of the network input
    channels_last: bool
    autocast: Callable[[], AbstractContextManager[Any]]
    shape: tuple[int, ...] | None = None  # compiled for this input shape only

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        x = x.to(self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            y = self.module(x)
        return y.float().contiguous()


def torch_ones_like_scale(x: torch.Tensor) -> torch.Tensor:
    """A unit dose scale ``(..., 1, 1)`` for ``x``: comparisons stay in network units."""
    return x.new_ones((*x.shape[:-2], 1, 1))


def select_device(device: str | Any = "auto") -> torch.device:
    """Resolve ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.

    Raises
    ------
    ConfigError
        Unknown device string, or CUDA asked for but not available.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ConfigError(f"device {device!r} is not supported; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for but CUDA is not available; use cpu")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s); "
            f"use cuda:0..cuda:{torch.cuda.device_count() - 1}"
        )
    return dev


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CUDA, or a CPU with oneDNN bf16).

    The one check of it: the engine offers its bf16 path only then, and training's
    ``precision: auto`` uses bf16 autocast only then.
    """
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``(..., y, x)`` at the bottom and right to sizes the network takes (multiples).

    Reflect keeps the noise statistics at the border; frames too small to reflect are padded
    by replication. The network's output is cropped back to ``(y, x)`` by the caller.
    """
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


#: The largest magnitude of a raw value the engine takes (counts). It computes in float32
#: (largest value 3.4e38): below this a frame's sum stays finite even for 4096x4096 frames
#: (1.7e7 x 1e30 = 1.7e37), and so do its dose scale and the output (the network's output,
#: about 1, times that scale). Larger values are a scaling mistake, not counts.
MAX_ABS_COUNTS = 1e30


def check_frames(frames: Any) -> np.ndarray:
    """Validate raw frames: numeric, (y, x) or (n, y, x), non-empty, finite, in range.

    Negative values pass (dark-subtracted frames dip below zero; see
    :func:`negative_counts_note`).

    Parameters
    ----------
    frames
        Anything ``np.asarray`` takes.

    Returns
    -------
    The frames as an array (not copied when already one).

    Raises
    ------
    TemAcqError
        Naming the problem (dtype, shape, emptiness, the first NaN/inf value or value beyond
        :data:`MAX_ABS_COUNTS`, and which frame and pixel it is in).
    """
    arr = np.asarray(frames)
    if arr.dtype.kind not in "iuf":
        raise TemAcqError(f"frames must be integer or floating-point counts, got dtype {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise TemAcqError(
            f"expected one frame (y, x) or a stack (n, y, x), got an array of shape {arr.shape}"
        )
    if arr.size == 0:
        raise TemAcqError(f"frames are empty (shape {arr.shape})")
    if arr.dtype.kind == "f":
        _check_float_values(arr)
    return arr


def _where(arr: np.ndarray, bad: np.ndarray) -> str:
    """Which frame and pixel the first true value of ``bad`` (shaped like ``arr``) is at."""
    first = np.argwhere(bad)[0]
    frame = f"frame {int(first[0])}" if arr.ndim == 3 else "the frame"
    return f"{frame} at pixel {tuple(int(i) for i in first[-2:])}"


def _check_float_values(arr: np.ndarray) -> None:
    """Refuse NaN/inf values and values beyond :data:`MAX_ABS_COUNTS` (two passes when clean)."""
    low, high = float(arr.min()), float(arr.max())  # NaN propagates into both
    if not (math.isfinite(low) and math.isfinite(high)):
        finite = np.isfinite(arr)
        raise TemAcqError(
            f"frames contain {int(finite.size - np.count_nonzero(finite))} NaN/inf value(s), "
            f"first in {_where(arr, ~finite)}; replace them (e.g. with the frame's median) "
            "before denoising"
        )
    if max(-low, high) > MAX_ABS_COUNTS:
        too_large = np.abs(arr) > MAX_ABS_COUNTS
        raise TemAcqError(
            f"frames contain {int(np.count_nonzero(too_large))} value(s) beyond "
            f"+-{MAX_ABS_COUNTS:.0e} counts (largest {max(-low, high):.3g}), first in "
            f"{_where(arr, too_large)}: more than the engine's float32 arithmetic can denoise; "
            "give raw counts (check the file's scaling)"
        )


def negative_counts_note(frames: np.ndarray) -> str | None:
    """What the denoiser does with the negative values of ``frames``, or None if it has none.

    Negative values are legitimate after dark subtraction, so they are denoised as they are:
    the dose scale of a frame is its mean, floored at the normalization's ``min_scale``, and
    the output keeps each frame's mean, so a frame whose mean is negative comes out negative.

    Parameters
    ----------
    frames
        Frames that passed :func:`check_frames`.
    """
    if frames.dtype.kind == "u":
        return None
    negative = int(np.count_nonzero(frames < 0))
    if negative == 0:
        return None
    stack = frames if frames.ndim == 3 else frames[None]
    dark = np.flatnonzero(stack.mean(axis=(1, 2), dtype=np.float64) <= 0)
    frames_note = (
        f"; {len(dark)} frame(s) (first: frame {int(dark[0])}) have a mean <= 0, so they are "
        "scaled by the dose floor and come out negative"
        if len(dark)
        else ""
    )
    return (
        f"{negative} of {frames.size} pixels are negative (dark-subtracted counts?): they are "
        f"denoised as they are and each frame keeps its mean electrons per pixel{frames_note}; "
        "check the dark reference if negative counts are not expected"
    )


def _check_cpe(counts_per_electron: Any, n: int) -> np.ndarray:
    """Counts per electron as a float32 array of shape (n,): scalar or one per frame."""
    cpe = np.asarray(counts_per_electron, dtype=np.float64)
    if cpe.ndim == 0:
        cpe = np.full(n, float(cpe))
    if cpe.shape != (n,):
        raise TemAcqError(
            f"counts_per_electron must be one number or one per frame ({n}), got shape {cpe.shape}"
        )
    if not (np.isfinite(cpe).all() and (cpe > 0).all()):
        raise TemAcqError(
            f"counts_per_electron must be a finite number > 0 (the camera's counts per "
            f"electron), got {counts_per_electron!r}"
        )
    return cpe.astype(np.float32)


def _tune_for(device: torch.device) -> None:
    """Let cuDNN pick its kernels on CUDA; on a CPU, warn when OpenMP threads spin."""
    import torch

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels
    elif os.environ.get("OMP_WAIT_POLICY", "").upper() != "PASSIVE":
        log.warning(
            "OpenMP threads spin while waiting (OMP_WAIT_POLICY=%s): on a busy CPU this "
            "makes denoising several times slower; set OMP_WAIT_POLICY=PASSIVE before "
            "torch is imported (import tem_acq first, or set it in the environment)",
            os.environ.get("OMP_WAIT_POLICY", "unset"),
        )


def _synthetic_check_input(shape: tuple[int, ...], seed: int = 1234) -> np.ndarray:
    """A deterministic 5 e-/px Poisson frame with smooth structure, in network units."""
    n, h, w = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    clean = 1.0 + 0.3 * np.sin(2 * np.pi * xx / 37.0) * np.cos(2 * np.pi * yy / 53.0)
    clean += 0.5 * np.exp(-(((yy - h / 3) ** 2 + (xx - w / 2) ** 2) / (2 * (min(h, w) / 8) ** 2)))
    electrons = rng.poisson(5.0 * clean, size=(n, h, w)).astype(np.float32)
    return np.asarray(to_network(electrons, dose_scale(electrons)), dtype=np.float32)


class Denoiser:
    """A model package ready to denoise raw TEM frames.

    Create one with :func:`tem_acq.load_model`. Not thread-safe: call it from one thread.

    Parameters
    ----------
    package
        The package (:func:`~tem_acq.denoise.package.load_package`).
    device
        Where the network runs (``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``); given, it
        overrides ``options.device``.
    options
        How it runs (:class:`~tem_acq.denoise.options.DenoiseOptions`; default: its defaults).
    **settings
        :class:`~tem_acq.denoise.options.DenoiseOptions` fields to change (``path="eager"``,
        ``batch_size=4``, ``tta=True``...).

    Raises
    ------
    ConfigError
        An unknown device or path, a batch size below 1, an overlap too large for the tiles,
        a setting that is not an option.

    Attributes
    ----------
    options
        The options it runs with.
    card
        The package's :class:`~tem_acq.denoise.card.ModelCard`.
    package_hash
        ``sha256:<hex>`` of the package (record it as provenance).
    device
        The torch device the network runs on.
    source
        The package folder.
    batch_size
        Frames (or tiles) per network call.
    tile_size
        Frames larger than this (after padding) are processed in tiles of at most this size,
        overlapping by :attr:`tile_overlap` and blended (see :mod:`tem_acq.denoise.tiling`).
    selection
        The paths tried at warm-up, with their errors and timings.
    tta
        Test-time augmentation: the network runs on each of the 8 flips/90-degree rotations
        of a square frame (the 4 flips/180-degree rotations of other frames) and the results,
        turned back, are averaged. The output then does not depend on the frame's
        orientation, and is usually a little better, at 8x (4x) the cost: for offline
        denoising and evaluation rather than live use.
    """

    def __init__(
        self,
        package: LoadedPackage,
        device: str | Any | None = None,
        *,
        options: DenoiseOptions | None = None,
        **settings: Any,
    ) -> None:
        import torch

        if device is not None:
            settings["device"] = device
        opts = DenoiseOptions.from_settings(options, **settings)
        if opts.path not in PATHS:
            raise ConfigError(f"unknown path {opts.path!r}; use one of {', '.join(PATHS)}")
        self.options = opts
        self.card: ModelCard = package.card
        self.package_hash: str = package.package_hash
        self.source = package.path
        self.device = select_device(opts.device)
        self.normalization: DoseNormalization = package.card.normalization
        depth = int(package.card.architecture_kwargs.get("encoder_depth", 5))
        #: Input sizes must be multiples of this (the U-Net's total stride).
        self.multiple = 2**depth
        self.batch_size = self._batch_size_for(opts.batch_size)
        self.tile_size = self._tile_size_for(opts.tile_size)
        self._overlap_arg = self._checked_overlap(opts.tile_overlap)
        self.tta = opts.tta
        self._overlap: int | None = None
        self._rf: int | None = None
        self._requested_path: str = opts.path
        self._compile = opts.compile
        _tune_for(self.device)
        self._eager = _Runner(
            "eager", package.model.to(self.device).eval(), torch.float32, False, nullcontext
        )
        self._runner: _Runner = self._eager
        self._fallback: _Runner = self._eager  # same path, uncompiled: for other shapes
        self._selected = opts.path == "eager" and not opts.compile
        self.selection: list[PathTrial] = []
        self._unavailable: list[PathTrial] = []  # paths this device does not have
        self._warm_shapes: set[tuple[int, ...]] = set()

    def _batch_size_for(self, batch_size: int | None) -> int:
        """Frames per network call: as asked, else 8 on CUDA and 1 on a CPU."""
        size = int(batch_size or (8 if self.device.type == "cuda" else 1))
        if size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        return size

    def _tile_size_for(self, tile_size: int | None) -> int:
        """The largest tile: as asked (default 2560), a multiple of the stride, >= 4 strides."""
        # 2560 splits a 4096 frame into 2 x 2 tiles even with the paper model's overlap.
        tile = int(tile_size or 2560)
        return max(4 * self.multiple, tile // self.multiple * self.multiple)

    def _checked_overlap(self, tile_overlap: int | None) -> int | None:
        """The asked tile overlap (``None``: planned from the receptive field), if it fits."""
        max_overlap = self.tile_size // 2 - self.multiple
        if tile_overlap is not None and not 0 <= tile_overlap <= max_overlap:
            raise ConfigError(
                f"tile_overlap ({tile_overlap}) must be between 0 and half the tile size minus "
                f"{self.multiple} ({max_overlap}); raise tile_size"
            )
        return tile_overlap

    # --- paths ---------------------------------------------------------------------------

    @property
    def path_name(self) -> str:
        """The active execution path, e.g. ``"cpu bf16+channels_last"`` (``+tta`` with tta)."""
        if not self._selected:
            return f"{self.device} pending (selected at warmup / first frame)"
        return f"{self.device} {self._runner.name}{'+tta' if self.tta else ''}"

    def _candidates(self) -> list[_Runner]:
        import torch

        cands: list[_Runner] = []
        req = self._requested_path
        model = self._eager.module

        def cl_copy(dtype: Any = torch.float32) -> Any:
            return copy.deepcopy(model).to(dtype=dtype, memory_format=torch.channels_last)

        if req == "onnxruntime" and self.device.type == "cpu":
            from tem_acq.denoise.onnx import OnnxNetwork

            onnx = OnnxNetwork(model, self.multiple)
            cands.append(_Runner("onnxruntime", onnx, torch.float32, False, nullcontext))
        if self.device.type == "cpu":
            if req in ("auto", "channels_last"):
                cands.append(_Runner("channels_last", cl_copy(), torch.float32, True, nullcontext))
            if req in ("auto", "bf16"):
                if native_bf16(self.device):
                    cands.append(
                        _Runner(
                            "bf16+channels_last",
                            cl_copy(),
                            torch.float32,
                            True,
                            lambda: torch.autocast("cpu", dtype=torch.bfloat16),
                        )
                    )
                else:
                    self._unavailable.append(
                        PathTrial("bf16+channels_last", False, note="no native bf16 on this CPU")
                    )
        else:
            if req in ("auto", "channels_last"):
                cands.append(_Runner("channels_last", cl_copy(), torch.float32, True, nullcontext))
            if req in ("auto", "fp16"):
                cands.append(
                    _Runner(
                        "fp16+channels_last",
                        cl_copy(torch.float16),
                        torch.float16,
                        True,
                        nullcontext,
                    )
                )
        if req not in ("auto", "eager") and not cands:
            self._unavailable.append(
                PathTrial(req, False, note=f"path {req!r} does not exist on {self.device.type}")
            )
        return cands

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _time(self, runners: Sequence[Callable[[Any], Any]], x: torch.Tensor) -> list[float]:
        """Median ms per call of each runner, timed round-robin.

        Interleaving the calls makes load from other processes (a shared machine) fall on
        every path alike, so the comparison stays fair even when the absolute times drift.
        """
        times: list[list[float]] = [[] for _ in runners]
        for r in range(TIMING_ROUNDS + 1):
            for i, runner in enumerate(runners):
                self._sync()
                t0 = time.perf_counter()
                runner(x)
                self._sync()
                if r:  # the first round warms caches and allocators
                    times[i].append(time.perf_counter() - t0)
        return [statistics.median(t) * 1e3 for t in times]

    @staticmethod
    def _compare(y: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
        d = (y - ref).double()
        r = ref.double()
        rms = float(d.square().mean().sqrt() / r.square().mean().sqrt().clamp_min(1e-12))
        mx = float(d.abs().max() / r.abs().max().clamp_min(1e-12))
        return rms, mx

    def _delivered(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """What a user gets from network output ``y``, in network units.

        With the card's mean preservation a constant offset between paths is removed, so it
        is not counted as a difference.
        """
        return from_network(y, torch_ones_like_scale(x), self.normalization, network_input=x)

    def _check(self, runner: _Runner, x: torch.Tensor, ref: torch.Tensor) -> PathTrial:
        """Run a path once and compare it with eager float32."""
        try:
            y = runner(x)
        except Exception as exc:  # a path that cannot run here is simply not used
            return PathTrial(runner.name, False, note=f"failed: {type(exc).__name__}: {exc}")
        rms, mx = self._compare(self._delivered(y, x), self._delivered(ref, x))
        ok = rms <= FAST_PATH_TOLERANCE["rel_rms"] and mx <= FAST_PATH_TOLERANCE["rel_max"]
        trial = PathTrial(runner.name, ok, rms, mx)
        if not ok:
            trial.note = (
                f"differs from eager fp32 by rel RMS {rms:.2g}, rel max {mx:.2g} "
                f"(tolerance {FAST_PATH_TOLERANCE['rel_rms']:g}, "
                f"{FAST_PATH_TOLERANCE['rel_max']:g})"
            )
        return trial

    def _select(self, net_shape: tuple[int, ...]) -> None:
        """Pick the execution path at this network input shape (n, 1, y, x)."""
        import torch

        n, _, h, w = net_shape
        x = torch.from_numpy(_synthetic_check_input((n, h, w))).unsqueeze(1).to(self.device)
        auto = self._requested_path == "auto"
        with torch.inference_mode():
            ref = self._eager(x)
            runners = [self._eager, *self._candidates()]
            trials = [PathTrial("eager", True)] + [self._check(r, x, ref) for r in runners[1:]]
            ran = [i for i, t in enumerate(trials) if not t.note.startswith("failed")]
            if auto:
                # Rejected paths are timed too, so reports show what they would have given.
                for i, ms in zip(ran, self._time([runners[i] for i in ran], x), strict=True):
                    trials[i].ms = ms
            ok = [i for i in ran if trials[i].ok]
            if auto:
                pick = min(ok, key=lambda i: trials[i].ms)
                if trials[pick].ms * MIN_SPEEDUP >= trials[0].ms:
                    pick = 0  # not clearly faster than eager: keep the reference
            else:
                pick = ok[-1]  # the requested path if it passed, else eager
            best = runners[pick]
            self.selection.extend(trials + self._unavailable)
            if self._compile:
                self._try_compile(best, trials[pick], x, ref, net_shape, auto)
                best = self._runner
        self._runner = best
        if best.shape is None:
            self._fallback = best
        self._selected = True
        log.info("denoiser path: %s", self.path_name)
        for t in self.selection:
            if not t.ok:
                log.info("path %s not used: %s", t.name, t.note)

    def _try_compile(
        self,
        base: _Runner,
        base_trial: PathTrial,
        x: torch.Tensor,
        ref: torch.Tensor,
        net_shape: tuple[int, ...],
        auto: bool,
    ) -> None:
        """Compile the chosen path; keep it if it matches eager (and, for auto, is faster)."""
        self._runner = self._fallback = base
        try:
            compiled = self._compiled(base, net_shape)
        except Exception as exc:  # no compiler, unsupported op...: stay uncompiled
            self.selection.append(PathTrial(base.name + "+compile", False, note=f"failed: {exc}"))
            return
        trial = self._check(compiled, x, ref)
        self.selection.append(trial)
        if not trial.ok:
            return
        if auto:
            base_trial.ms, trial.ms = self._time([base, compiled], x)
            if trial.ms * MIN_SPEEDUP >= base_trial.ms:
                return
        self._runner = compiled

    def _compiled(self, base: _Runner, shape: tuple[int, ...]) -> _Runner:
        """``torch.compile`` of a path, compiled now for one input shape."""
        import torch

        module = torch.compile(base.module, dynamic=False)
        runner = _Runner(
            base.name + "+compile", module, base.dtype, base.channels_last, base.autocast, shape
        )
        import torch._dynamo.config as dynamo_config

        # smp models share one forward() code object, so dynamo's per-code recompile limit
        # (8) counts every model compiled in this process: past it, it silently runs eager.
        ctx: AbstractContextManager[Any] = dynamo_config.patch(
            recompile_limit=max(64, dynamo_config.recompile_limit)
        )
        with ctx, torch.inference_mode():
            if self.device.type == "cpu":
                import torch._inductor.config as inductor_config

                # Freezing folds the weights into the graph (the big win on a CPU).
                with inductor_config.patch(freezing=True):
                    runner(torch.zeros(shape, device=self.device))
                return runner
            runner(torch.zeros(shape, device=self.device))  # compiles here, not on a frame
        return runner

    # --- frames -> network ---------------------------------------------------------------

    def _net_shape(self, h: int, w: int, n: int) -> tuple[int, int, int, int]:
        m = self.multiple
        hp, wp = -(-h // m) * m, -(-w // m) * m
        if max(hp, wp) > self.tile_size:
            th, _ = axis_plan(hp, self.tile_size, self.tile_overlap, m)
            tw, _ = axis_plan(wp, self.tile_size, self.tile_overlap, m)
            return (self.batch_size, 1, th, tw)
        return (min(n, self.batch_size), 1, hp, wp)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on (b, 1, y, x), using the compiled graph where it applies."""
        import torch

        runner = self._runner
        if runner.shape is None:
            return runner(x)
        b = x.shape[0]
        if tuple(x.shape[1:]) != runner.shape[1:] or b > runner.shape[0]:
            return self._fallback(x)
        if b < runner.shape[0]:  # pad the batch rather than trigger a recompile
            pad = x[-1:].expand(runner.shape[0] - b, *x.shape[1:])
            return runner(torch.cat([x, pad]))[:b]
        return runner(x)

    @property
    def receptive_radius(self) -> int | None:
        """The network's receptive-field radius in pixels (``None``: global), probed once."""
        if self._overlap is None:
            self._plan_overlap()
        return self._rf

    @property
    def tile_overlap(self) -> int:
        """Minimum overlap of neighbouring tiles.

        By default twice the receptive-field radius plus a blend zone, so that the tiled
        output equals the untiled one up to float rounding.
        """
        if self._overlap is None:
            self._plan_overlap()
        assert self._overlap is not None
        return self._overlap

    def _plan_overlap(self) -> None:
        m = self.multiple
        self._rf = receptive_radius(self._eager.module, m)
        if self._rf is not None:
            self._rf = -(-self._rf // m) * m
        limit = (self.tile_size // 2 - m) // m * m
        if self._overlap_arg is not None:
            self._overlap = -(-self._overlap_arg // m) * m
        elif self._rf is None:
            self._overlap = min(256, limit)
            log.warning(
                "model %s has a global receptive field (e.g. squeeze-excitation): tiled frames "
                "only approximate untiled ones",
                self.card.name,
            )
        else:
            self._overlap = min(2 * self._rf + 2 * m, limit)
            if self._overlap < 2 * self._rf:
                log.warning(
                    "tile_size %d is too small for exact tiling (receptive radius %d px); "
                    "tiles are blended but may differ slightly from untiled output",
                    self.tile_size,
                    self._rf,
                )
        self._overlap = min(self._overlap, limit)

    def _run_tiled(self, x: torch.Tensor) -> torch.Tensor:
        """Network over (b, 1, y, x) padded frames in blended overlapping tiles."""
        import torch

        b, _, h, w = x.shape
        v, m = self.tile_overlap, self.multiple
        th, ys = axis_plan(h, self.tile_size, v, m)
        tw, xs = axis_plan(w, self.tile_size, v, m)
        out = torch.zeros_like(x)
        weight = torch.zeros((1, 1, h, w), device=x.device)
        wy = {y0: ramp(th, y0 > 0, y0 + th < h, v, self._rf, x.device) for y0 in ys}
        wx = {x0: ramp(tw, x0 > 0, x0 + tw < w, v, self._rf, x.device) for x0 in xs}
        for y0 in ys:
            for x0 in xs:
                weight[0, 0, y0 : y0 + th, x0 : x0 + tw] += wy[y0][:, None] * wx[x0][None, :]
        jobs = [(i, y0, x0) for i in range(b) for y0 in ys for x0 in xs]
        for k in range(0, len(jobs), self.batch_size):
            chunk = jobs[k : k + self.batch_size]
            tiles = torch.stack([x[i, :, y0 : y0 + th, x0 : x0 + tw] for i, y0, x0 in chunk])
            y = self._forward(tiles)
            for (i, y0, x0), t in zip(chunk, y, strict=True):
                out[i, :, y0 : y0 + th, x0 : x0 + tw] += t * (wy[y0][:, None] * wx[x0][None, :])
        return out / weight

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        """(b, y, x) normalised frames -> (b, y, x) output, averaged over flips with tta."""
        if not self.tta:
            return self._network_once(x)
        h, w = x.shape[-2:]
        # transposing transforms (odd k) would change a non-square frame's shape
        ks = range(8) if h == w else range(0, 8, 2)
        total = None
        for k in ks:
            y = inverse_dihedral(self._network_once(dihedral(x, k)), k)
            total = y if total is None else total + y
        assert total is not None
        return total / len(ks)

    def _network_once(self, x: torch.Tensor) -> torch.Tensor:
        """(b, y, x) normalised frames -> (b, y, x) network output, padded/tiled as needed."""
        h, w = x.shape[-2:]
        xp = pad_to_multiple(x.unsqueeze(1), self.multiple)
        if max(xp.shape[-2:]) > self.tile_size:
            y = self._run_tiled(xp)
        else:
            y = self._forward(xp)
        return y[:, 0, :h, :w]

    # --- public ----------------------------------------------------------------------------

    def warmup(self, shape: Sequence[int]) -> None:
        """Select the execution path and run the network once at this frame shape.

        Call it before the first real frame so that path selection, cuDNN autotuning and
        (with ``compile=True``) compilation do not delay it.

        Parameters
        ----------
        shape
            ``(y, x)`` or ``(n, y, x)``: the frames (and batch) that will come.
        """
        import torch

        shape = tuple(int(s) for s in shape)
        if len(shape) not in (2, 3) or min(shape) < 1:
            raise TemAcqError(f"warmup shape must be (y, x) or (n, y, x), got {shape}")
        n, h, w = (1, *shape) if len(shape) == 2 else shape
        net_shape = self._net_shape(h, w, n)
        if not self._selected:
            self._select(net_shape)
        if net_shape not in self._warm_shapes:
            with torch.inference_mode():
                self._forward(torch.zeros(net_shape, device=self.device))
            self._warm_shapes.add(net_shape)

    def check_pixel_size(self, pixel_size_A: float | None) -> str | None:
        """Warn when frames of ``pixel_size_A`` (A/px) are outside the card's trained range.

        Logs and warns (:class:`~tem_acq.errors.PixelSizeWarning`) each call: call it once per
        run. Returns the warning line, or None when inside the range (or either is unknown).
        """
        from tem_acq.denoise.pixel_size import warn_pixel_size

        return warn_pixel_size(self.card, pixel_size_A)

    def denoise_batch(
        self,
        frames: Any,
        counts_per_electron: float | Sequence[float] | np.ndarray = 1.0,
        *,
        detector: DetectorModel | str | None = None,
        binning: int = 1,
    ) -> np.ndarray:
        """Denoise frames that are waiting, in one pass; the live pipeline's per-batch call.

        Parameters
        ----------
        frames
            An ``(n, y, x)`` array or a sequence of equally shaped ``(y, x)`` frames of raw
            counts (any integer or float dtype).
        counts_per_electron
            One number, or one per frame.
        detector, binning
            The camera's detector and binning, as for :meth:`denoise`.

        Returns
        -------
        ``(n, y, x)`` float32 expected electrons per pixel.
        """
        if isinstance(frames, (list, tuple)):
            if not frames:
                raise TemAcqError("frames are empty (an empty batch)")
            shapes = {np.shape(f) for f in frames}
            if len(shapes) > 1:
                raise TemAcqError(
                    f"frames in one batch must share one shape, got {sorted(shapes)}; "
                    "denoise frames of other sizes in separate calls"
                )
            frames = np.stack([np.asarray(f) for f in frames])
        arr = check_frames(frames)
        if arr.ndim == 2:
            arr = arr[None]
        camera = self.camera_detector(detector, binning)
        return self._denoise(arr, _check_cpe(counts_per_electron, arr.shape[0]), camera)

    def denoise(
        self,
        frames: Any,
        *,
        counts_per_electron: float | Sequence[float] | np.ndarray = 1.0,
        progress: Callable[[int], None] | None = None,
        detector: DetectorModel | str | None = None,
        binning: int = 1,
    ) -> np.ndarray:
        """Denoise one frame or a stack of raw camera frames.

        Parameters
        ----------
        frames
            ``(y, x)`` or ``(n, y, x)`` raw counts, any integer or float dtype.
        counts_per_electron
            The camera's conversion factor (one number, or one per frame). With the default 1
            the output is in counts rather than electrons.
        progress
            Called with the number of frames finished after each batch.
        detector
            The camera's detector: a :class:`~tem_acq.detector.DetectorModel` (from the
            camera's settings), a kind (``"counting"``, ``"integrating"``: the card's model for
            that kind, else :data:`tem_acq.detector.DEFAULT_MODELS`), or None (the mean of the
            input is kept, the counting rule). Used when the card's normalisation is
            ``detector_aware``; then on a nonlinear detector each denoised frame's mean is the
            frame's corrected dose (see :func:`~tem_acq.denoise.normalization.keep_input_mean`).
        binning
            The camera's binning (for the detector's read noise and light spread).

        Returns
        -------
        float32 array of the input's shape: the expected electrons per pixel at each frame's
        dose (mean preserved per frame when the card's normalisation says so).

        Raises
        ------
        TemAcqError
            Wrong dimensionality or dtype, empty input, NaN/inf values or values beyond
            :data:`MAX_ABS_COUNTS`, bad counts_per_electron.

        Warns
        -----
        NegativeCountsWarning
            When frames hold negative values: they are denoised as they are and each frame
            keeps its mean, so a frame whose mean is negative gives negative electrons.
        """
        arr = check_frames(frames)
        if (note := negative_counts_note(arr)) is not None:
            warnings.warn(note, NegativeCountsWarning, stacklevel=2)
        single = arr.ndim == 2
        stack = arr[None] if single else arr
        cpe = _check_cpe(counts_per_electron, stack.shape[0])
        camera = self.camera_detector(detector, binning)
        out = np.empty(stack.shape, dtype=np.float32)
        step = self.batch_size
        for i in range(0, stack.shape[0], step):
            out[i : i + step] = self._denoise(stack[i : i + step], cpe[i : i + step], camera)
            if progress is not None:
                progress(min(i + step, stack.shape[0]))
        return out[0] if single else out

    def camera_detector(
        self, detector: DetectorModel | str | None, binning: int = 1
    ) -> tuple[DetectorModel | None, int]:
        """The detector model and binning the normalisation corrects for (see :meth:`denoise`).

        Raises
        ------
        ConfigError
            An unknown detector kind or a binning that is not a positive integer.
        """
        if isinstance(binning, bool) or not isinstance(binning, int | np.integer) or binning < 1:
            raise ConfigError(f"binning must be a positive integer, got {binning!r}")
        if detector is None or isinstance(detector, DetectorModel):
            return detector, int(binning)
        if detector not in DEFAULT_MODELS:
            raise ConfigError(
                f"unknown detector {detector!r}; give 'counting', 'integrating' or a "
                "tem_acq.detector.DetectorModel"
            )
        return self.card.detector_model(detector), int(binning)

    def _denoise(
        self,
        stack: np.ndarray,
        cpe: np.ndarray,
        camera: tuple[DetectorModel | None, int] = (None, 1),
    ) -> np.ndarray:
        import torch

        n, h, w = stack.shape
        if not self._selected:
            self.warmup((n, h, w))
        norm = self.normalization
        # Integer counts become float32 on the host; normalisation runs on the device.
        counts = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))
        with torch.inference_mode():
            counts = counts.to(self.device, non_blocking=True)
            electrons = counts / torch.from_numpy(cpe).to(self.device)[:, None, None]
            scale = dose_scale(electrons, norm)
            x = to_network(electrons, scale)
            outs = [self._network(x[i : i + self.batch_size]) for i in range(0, n, self.batch_size)]
            y = torch.cat(outs)
            detector, binning = camera
            d = from_network(y, scale, norm, network_input=x, detector=detector, binning=binning)
            return d.float().cpu().numpy()

    def __repr__(self) -> str:
        tta = ", tta=True" if self.tta else ""
        return f"Denoiser({self.card.name!r}, {self.card.summary()}, path={self.path_name!r}{tta})"
